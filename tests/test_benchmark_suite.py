"""The loss benchmark suite (benchmarks/loss_suite.py and its harness): a smoke run writes the
JSON and the PNGs with rows for every implementation, the one-bag preset writes its own files,
and the baselines compute the same loss as pixcon (float64, small N)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from harness import cases, checks, presets  # noqa: E402


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bags", [1, 3])
def test_pair_baseline_agrees_with_pixcon_pair_per_anchor(bags):
    baseline = _load("pair_loss_baseline")
    assert baseline.check_against_pixcon(n=200, d=16, classes=4, bags=bags, seed=3) < 1e-9


def test_pair_baseline_values_match_the_formula():
    # l_i = mean_{p in P(i)} [log(exp(s_ip) + sum_{n in N(i)} exp(s_in)) - s_ip], by hand
    baseline = _load("pair_loss_baseline")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 4, generator=g, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 255, 2, 1, 0, 3, 1])
    loss, valid = baseline.pair_contrastive_loss(z, y, temperature=0.5)
    s = z @ z.t() / 0.5
    for i in range(12):
        pos = [j for j in range(12) if j != i and y[j] == y[i] and y[i] != 255]
        neg = [j for j in range(12) if y[j] != y[i] and y[j] != 255]
        assert bool(valid[i]) == bool(pos)
        if not pos:
            assert loss[i] == 0
            continue
        neg_sum = sum(torch.exp(s[i, j]) for j in neg)
        want = sum(torch.log(torch.exp(s[i, p]) + neg_sum) - s[i, p] for p in pos) / len(pos)
        assert torch.allclose(loss[i], want, rtol=0, atol=1e-12)


def test_supcon_agrees_with_pixcon_all():
    pytest.importorskip("pytorch_metric_learning")
    assert checks.check_supcon_against_pixcon(n=200, d=16, classes=4, seed=5) < 1e-9


def test_batch_offsets_split_evenly():
    assert cases.bag_offsets(4225, 8) == [0, 528, 1056, 1584, 2112, 2640, 3168, 3696, 4225]
    assert cases.bag_offsets(10, 1) == [0, 10]


def test_quick_suite_writes_json_table_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pytorch_metric_learning")
    cmd = [sys.executable, str(BENCH / "loss_suite.py"), "--quick", "--out-dir", str(tmp_path),
           "--sizes", "96,192", "--dtypes", "float32", "--repeats", "1", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Headline" in proc.stdout and "pixel sampling" in proc.stdout

    report = json.loads((tmp_path / "loss_suite_cpu.json").read_text())
    rows = report["rows"]
    for variant in ("single", "batch"):
        for impl in cases.IMPLS:
            got = [r for r in rows if r["impl"] == impl and r["variant"] == variant]
            assert sorted(r["n"] for r in got) == [96, 192], (impl, variant)
            assert all(r["status"] == "ok" for r in got), got
            assert all(r["median_s"] > 0 and r["peak_bytes"] >= 0 for r in got)
    assert {r["bags"] for r in rows if r["variant"] == "batch"} == {presets.BATCH_IMAGES}
    # every baseline row has its ratio against the matching pixcon denominator
    for r in rows:
        if r["impl"] in cases.BASELINE_OF:
            assert r["vs"] == cases.BASELINE_OF[r["impl"]] and r["speedup"] > 0
    assert {(h["variant"], h["baseline"]) for h in report["headline"]} == {
        (v, b) for v in ("single", "batch") for b in cases.BASELINE_OF}
    assert all(c["ok"] for c in report["checks"].values()), report["checks"]
    assert report["config"]["threads"] == 2
    assert report["machine"]["loadavg_start"] is not None

    for name in ("loss_suite_cpu_time.png", "loss_suite_cpu_memory.png",
                 "loss_suite_cpu_D128_single_float32.png", "loss_suite_cpu_D128_batch_float32.png",
                 "sampling_throughput_cpu.png"):
        path = tmp_path / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert report["sampling"]["exit_status"] == 0
    assert {r["impl"] for r in report["sampling"]["rows"]} == {"pixcon", "baseline"}


def test_one_bag_preset_writes_its_own_json_and_plots(tmp_path):
    # the quick one-bag benchmark: pixcon "all" against the reference, one bag, D = 256
    pytest.importorskip("matplotlib")
    cmd = [sys.executable, str(BENCH / "loss_suite.py"), "--preset", "one-bag", "--quick",
           "--sizes", "64,128", "--repeats", "1", "--out-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((tmp_path / "loss_one_bag_cpu.json").read_text())
    assert report["config"]["preset"] == "one-bag-quick" and report["checks"] is None
    assert report["sampling"] is None
    rows = report["rows"]
    assert sorted((r["impl"], r["n"]) for r in rows) == [
        ("pixcon_all", 64), ("pixcon_all", 128), ("reference", 64), ("reference", 128)]
    assert all(r["status"] == "ok" and r["dim"] == 256 and r["bags"] == 1 for r in rows), rows
    assert all(r["memory_method"] == "VmHWM growth after malloc_trim + clear_refs" for r in rows)
    assert [h["baseline"] for h in report["headline"]] == ["reference"]
    assert (tmp_path / "loss_one_bag_cpu_D256_single_float32.png").is_file()
    assert not (tmp_path / "sampling_throughput_cpu.json").exists()
