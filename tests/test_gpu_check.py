"""The parts of the GPU check that run without a GPU: scripts/gpu_check.sh's no-GPU path, its
report writer (scripts/gpu_check_report.py), and the GPU grid of benchmarks/loss_suite.py in
benchmarks/harness (the row plan against a GPU memory size, the performance model's arithmetic,
the worker loop run on the CPU)."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
GIB = 1024.0 ** 3
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import gpu_grid, gpu_model, presets, runner  # noqa: E402
from harness.report import add_ratios  # noqa: E402


def _load(path: Path, name: str):
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report_writer():
    return _load(ROOT / "scripts" / "gpu_check_report.py", "gpu_check_report")


# ---- the script ----

def test_the_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_without_a_gpu_the_script_says_so_runs_the_cpu_checks_and_exits_0(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PIXCON_PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--no-gpu"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NO GPU" in proc.stdout

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["gpu"] is False and "--no-gpu" in report["no_gpu_reason"]
    assert report["result"] == "pass" and report["exit_status"] == 0
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["environment", "shell_syntax", "python_helpers", "nvcc_sm90"]
    assert all(s["status"] == "pass" for name, s in steps.items() if name != "nvcc_sm90")
    # without nvcc the compile check skips itself, saying why
    nvcc = steps["nvcc_sm90"]
    assert nvcc["status"] == "pass" or (nvcc["status"] == "skip" and "nvcc" in nvcc["note"])
    assert "pixcon_all" in steps["python_helpers"]["output_tail"]  # the GPU grid's plan

    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "**No GPU: forced by --no-gpu.**" in markdown and "**Result: PASS**" in markdown
    with tarfile.open(tmp_path / "gpu_check_logs.tar.gz") as logs:
        assert "steps.tsv" in logs.getnames()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu_check.json", "gpu_check.md", "gpu_check_logs.tar.gz"]


# ---- the report writer ----

def _grid_rows():
    """A GPU grid's rows: pixcon measured at N = 4225 and 16641, the reference measured at 4225
    and skipped at 16641 for memory."""
    def row(impl, n, status, median_s=None, note=None, **extra):
        return dict(device="cuda", dim=256, variant="single", dtype="bfloat16", bags=1, impl=impl,
                    n=n, status=status, median_s=median_s, peak_bytes=None if median_s is None
                    else 64 * 2 ** 20, note=note, **extra)
    return [
        row("pixcon_all", 4225, "ok", 0.002, model_s=0.0003),
        row("pixcon_all", 16641, "ok", 0.025, model_s=0.0045),
        row("reference", 4225, "ok", 0.010, speedup=5.0),
        row("reference", 16641, "oom", note="not run: predicted peak 130.0 GiB > 72.0 GiB usable "
            "on the GPU", predicted=True),
    ]


def _steps(report_writer):
    make = report_writer.make_step
    return [
        make(1, "environment", "pass", 2.0, 0, 120, "python3 env", "GPU: yes, sm_90\n"),
        make(2, "wheels", "skip", 0.1, 77, 60, "pip install .whl",
             "skip: no .whl/ in the checkout\n"),
        make(3, "build", "fail", 61.0, 1, 240, "pip install .",
             "ninja: compiling\nfused.cuh(69): error: identifier undefined\nmore\n"),
        make(4, "cuda_tests", "fail", 180.0, 124, 180, "pytest tests/test_cuda.py", "....\n"),
        make(5, "selfcheck", "fail", 9.0, 1, 60, "python -m pixcon.selfcheck",
             "E   assert 1 == 2\n======= 1 failed, 52 passed in 8.10s =======\n"),
    ]


def _report(report_writer, steps, grid):
    environment = {"gpu_available": True, "no_gpu_reason": None,
                   "nvidia_smi": {"name": "NVIDIA H100 80GB HBM3", "driver": "580.1"},
                   "torch": {"version": "2.11.0+cu130", "cuda_version": "13.0", "python": "3.12.3",
                             "cuda_available": True, "gpu_name": "NVIDIA H100 80GB HBM3",
                             "sms": 132, "memory_bytes": 80 * GIB, "cuda_arch": "90"}}
    return report_writer.build_report(steps, environment, grid, started=time.time() - 300,
                                      finished=time.time(), budget_s=480, grid_path="grid.json")


def test_the_report_shows_failed_steps_as_failed_with_their_output(report_writer, tmp_path):
    grid = {"rows": _grid_rows(), "machine": {"gpu_name": "NVIDIA H100 80GB HBM3"}, "notes": []}
    report = _report(report_writer, _steps(report_writer), grid)
    json_path, md_path = report_writer.write_reports(report, str(tmp_path), grid)

    saved = json.loads(Path(json_path).read_text())
    assert saved["result"] == "fail" and saved["exit_status"] == 1
    assert saved["failed_steps"] == ["build", "cuda_tests", "selfcheck"]
    assert saved["summary"] == {"pass": 1, "fail": 3, "skip": 1}
    notes = {s["name"]: s["note"] for s in saved["steps"]}
    assert notes["wheels"] == "no .whl/ in the checkout"
    assert notes["cuda_tests"] == "timed out after 180 s"
    assert notes["selfcheck"] == "exit status 1: 1 failed, 52 passed in 8.10s"

    markdown = Path(md_path).read_text()
    assert "**Result: FAIL** (3 of 5 steps failed: build, cuda_tests, selfcheck)" in markdown
    assert "| 3 | build | **FAIL** | 61.0 | 240 | exit status 1 |" in markdown
    assert "| 2 | wheels | skip |" in markdown and "| 1 | environment | pass |" in markdown
    # the build's error line is shown, not only its wrapper's last lines
    failed_section = markdown.split("## Output of the failed steps")[1]
    assert "fused.cuh(69): error: identifier undefined" in failed_section
    assert "### 4. cuda_tests (timed out after 180 s)" in failed_section


def test_the_report_counts_tflops_as_6_n2_d_over_the_median_and_keeps_skipped_rows_with_their_note(
        report_writer, tmp_path):
    grid = {"rows": _grid_rows(), "machine": {"gpu_name": "NVIDIA H100 80GB HBM3"}, "notes": [
        "not run: pytorch-metric-learning is not installed"]}
    report = _report(report_writer, _steps(report_writer)[:1], grid)
    json_path, md_path = report_writer.write_reports(report, str(tmp_path), grid)

    rows = {(r["impl"], r["n"]): r for r in json.loads(Path(json_path).read_text())["benchmark"]["rows"]}
    assert rows[("pixcon_all", 16641)]["tflops"] == pytest.approx(6 * 16641 ** 2 * 256 / 0.025 / 1e12)
    assert rows[("reference", 4225)]["tflops"] == pytest.approx(6 * 4225 ** 2 * 256 / 0.010 / 1e12)
    assert rows[("reference", 16641)]["tflops"] is None
    assert rows[("reference", 16641)]["status"] == "oom"

    markdown = Path(md_path).read_text()
    table = markdown.split("## Benchmark")[1]
    assert "**Result: PASS** (1 steps passed, 0 skipped)" in markdown
    # 6 * 16641^2 * 256 / 0.025 s = 17.0 TFLOP/s; 6 * 4225^2 * 256 / 0.010 s = 2.7
    assert "| 256 | bfloat16 | 16641 | pixcon \"all\" | 25.0 | 17.0 | 64 | - | 4.50 | ok |" in table
    assert "| 256 | bfloat16 | 4225 | pixcon.reference (all) | 10.0 | 2.7 | 64 | 5.00x | - | ok |" \
        in table
    assert ("| 256 | bfloat16 | 16641 | pixcon.reference (all) | - | - | - | - | - | oom: not run: "
            "predicted peak 130.0 GiB > 72.0 GiB usable on the GPU |") in table
    assert "- not run: pytorch-metric-learning is not installed" in table


def test_the_report_reads_the_steps_the_script_records(report_writer, tmp_path):
    logs = []
    for name, text in (("build", "compiling\nok\n"), ("racecheck", "skip: compute-sanitizer "
                                                                  "refused the device\n")):
        log = tmp_path / f"{name}.log"
        log.write_text(text)
        logs.append(log)
    tsv = tmp_path / "steps.tsv"
    # as run_step writes them: index, name, status, seconds, exit code, limit, log, command;
    # a background step may land first
    tsv.write_text(f"9\tracecheck\tskip\t1.5\t77\t90\t{logs[1]}\tcompute-sanitizer --tool racecheck\n"
                   f"4\tbuild\tpass\t88.2\t0\t240\t{logs[0]}\tpip install .\n")
    steps = report_writer.read_steps(str(tsv))
    assert [s["index"] for s in steps] == [4, 9]
    assert steps[0]["status"] == "pass" and steps[0]["seconds"] == 88.2
    assert steps[0]["output_tail"] == "compiling\nok"
    assert steps[1]["note"] == "compute-sanitizer refused the device"


def test_a_report_whose_steps_all_passed_exits_0(report_writer, tmp_path):
    steps = _steps(report_writer)[:2]
    report = _report(report_writer, steps, None)
    assert report["exit_status"] == 0 and report["result"] == "pass"
    markdown = report_writer.render_markdown(report)
    assert "**Result: PASS** (1 steps passed, 1 skipped)" in markdown
    assert "## Output of the failed steps" not in markdown


# ---- the GPU grid of the loss suite ----

def _plan(memory_gib, **kw):
    args = dict(sizes=presets.GPU_GRID_SIZES, dims=(128, 256), dtypes=presets.GPU_DTYPES,
                impls=presets.GPU_GRID_IMPLS, usable_bytes=memory_gib * GIB,
                spec=gpu_model.GPU_SPECS["H100 SXM"], row_timeout=60.0)
    args.update(kw)
    return gpu_grid.plan_gpu_grid(**args)


def test_the_gpu_grid_skips_the_baselines_rows_that_would_not_fit_in_memory():
    rows = _plan(72.0)  # an 80 GiB GPU, 90 % usable
    assert len(rows) == 3 * 2 * 3 * 4
    for r in rows:
        if r["impl"] == "pixcon_all":
            assert r["status"] is None, r  # O(N D): every row runs
        elif r["n"] <= 16641:
            assert r["status"] is None, r
        else:
            # the reference needs ~43 B per N^2: 174 GiB at N = 66049
            assert r["status"] == "oom" and r["predicted"], r
            assert "GiB usable on the GPU" in r["note"]
    small = _plan(8.0)  # 11 GiB predicted for the reference at N = 16641
    assert {r["n"] for r in small if r["impl"] == "reference" and r["status"] == "oom"} == {
        16641, 66049, 262144}


def test_the_gpu_grid_runs_the_baselines_first_and_each_implementation_by_predicted_time():
    rows = _plan(72.0)
    order = [r["impl"] for r in rows]
    assert order == sorted(order, key=presets.GPU_GRID_IMPLS.index)
    pixcon = [r["predicted_s"] for r in rows if r["impl"] == "pixcon_all"]
    assert pixcon == sorted(pixcon)


def test_the_gpu_grid_marks_an_unavailable_implementation_not_run():
    rows = _plan(72.0, unavailable={"supcon": "not run: pytorch-metric-learning is not "
                                                     "installed"})
    supcon = [r for r in rows if r["impl"] == "supcon"]
    assert supcon and all(r["status"] == "not_run" and "pytorch-metric-learning" in r["note"]
                          for r in supcon)


def test_the_model_of_the_fused_kernels_is_the_documented_arithmetic():
    # benchmarks/README.md's worked example: N = 66049, D = 256, bfloat16, H100 SXM
    n, d = 66049, 256
    spec = gpu_model.GPU_SPECS["H100 SXM"]
    m = gpu_model.fused_model(n, d, "bfloat16", spec)
    fwd, bwd = m["forward"], m["backward"]
    assert fwd["flops"] == 2 * n * n * d and bwd["flops"] == 4 * n * n * d
    assert fwd["exps"] == n * n and bwd["exps"] == 2 * n * n
    # the anchor rows stay resident (33.8 KB of them fit): each tile streams its 64 column rows,
    # plus each CTA's anchor rows once; the backward also streams the column rows for W Z
    z_bytes = n * 256 * 2
    assert fwd["l2_bytes"] == pytest.approx(n * n / 4096 * 64 * 256 * 2 + z_bytes)
    assert bwd["l2_bytes"] == pytest.approx(n * n / 4096 * 128 * 256 * 2 + z_bytes)
    assert fwd["times_s"]["tensor"] == pytest.approx(2 * n * n * d / 990e12)
    assert fwd["times_s"]["sfu"] == pytest.approx(n * n / (16 * 132 * 1.98e9))
    assert fwd["bound"] == bwd["bound"] == "l2"
    assert m["seconds"] == pytest.approx((fwd["l2_bytes"] + bwd["l2_bytes"]) / 7e12 / 0.35)
    # anchor rows too large for shared memory are streamed with every tile
    wide = gpu_model.fused_model(n, 4096, "bfloat16", spec)
    assert wide["forward"]["l2_bytes"] == pytest.approx(n * n / 4096 * 128 * 4096 * 2 + n * 4096 * 2)
    # strict float32 runs on the FMA pipe: 6 N^2 D at 67 TFLOP/s
    strict = gpu_model.fused_model(n, d, "float32", spec)
    assert strict["forward"]["bound"] == strict["backward"]["bound"] == "tensor"
    assert strict["seconds"] == pytest.approx(6 * n * n * d / 67e12 / 0.35)


def test_the_gpu_grid_loop_runs_one_worker_per_implementation():
    # the GPU loop on the CPU (device="cpu"): every row measured, pixcon's speed-up per baseline row
    rows = _plan(8.0, sizes=(64, 128), dims=(8,), dtypes=("float32",),
                 impls=("pixcon_all", "reference"))
    gpu_grid.run_gpu_rows(rows, spec=gpu_model.GPU_SPECS["H100 SXM"], usable_bytes=8 * GIB,
                       row_timeout=120.0, deadline=time.monotonic() + 300, repeats=2, warmup=1,
                       time_budget=2.0, long_step=10.0, seed=0, threads=1,
                       worker=runner.PersistentWorker(), device="cpu")
    add_ratios(rows)
    assert [r["status"] for r in rows] == ["ok"] * 4, [r.get("note") for r in rows]
    assert all(r["median_s"] > 0 and r["tflops"] > 0 and r["valid_anchors"] > 0 for r in rows)
    assert all(r["speedup"] > 0 for r in rows if r["impl"] == "reference")


def test_the_gpu_grid_skips_the_larger_n_of_a_failed_series_and_rows_past_the_budget():
    rows = _plan(8.0, sizes=(64, 128), dims=(8,), dtypes=("float32",),
                 impls=("reference", "pixcon_all"))
    for r in rows:
        if r["impl"] == "reference":
            r["dtype"] = "no_such_dtype"  # fails in the worker when it makes the inputs
    common = dict(spec=gpu_model.GPU_SPECS["H100 SXM"], usable_bytes=8 * GIB, row_timeout=120.0,
                  repeats=1, warmup=0, time_budget=1.0, long_step=10.0, seed=0, threads=1,
                  worker=runner.PersistentWorker(), device="cpu")
    gpu_grid.run_gpu_rows(rows[:2], deadline=time.monotonic() + 300, **common)
    assert rows[0]["status"] == "error" and "no_such_dtype" in rows[0]["note"]
    assert rows[1]["status"] == "error" and rows[1]["note"] == "not run: error at N=64"
    gpu_grid.run_gpu_rows(rows[2:], deadline=time.monotonic() - 1, **common)
    assert all(r["status"] == "not_run" and "left of the budget" in r["note"] for r in rows[2:])
