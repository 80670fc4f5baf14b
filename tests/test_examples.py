"""The examples run end to end (a few steps, small images)."""

import importlib.util
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_step_example_runs_and_updates_the_projection_head(capsys):
    example = _load("train_step")
    assert example.main(["--steps", "2", "--size", "32", "--batch", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert len(lines) == 2
    values = [float(line.split()[-1]) for line in lines]
    assert all(torch.isfinite(torch.tensor(values)))
