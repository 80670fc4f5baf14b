"""The benchmarks and their harness: a smoke run of the loss suite (benchmarks/loss_suite.py)
writes the JSON and the PNGs with rows for every implementation, the one-bag preset writes its
own files, and the baselines compute the same loss as pixcon (float64, small N); the k-means
benchmark (benchmarks/kmeans_baselines.py) draws its features and scores every method the same
way, and its quick run writes its JSON, markdown and plot."""

import importlib.util
import json
import os
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


def test_kmeans_features_are_unit_rows_drawn_the_same_way_every_time():
    from harness import kmeans_cases

    x = kmeans_cases.make_features(2, 9, 16, seed=4)
    assert x.shape == (2 * 9 * 9, 16) and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(x.shape[0]), atol=1e-6)
    assert torch.equal(x, kmeans_cases.make_features(2, 9, 16, seed=4))
    assert not torch.equal(x, kmeans_cases.make_features(2, 9, 16, seed=5))


def test_kmeans_mean_cosine_normalises_the_centroids():
    from harness import kmeans_cases

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(70000, 5, generator=g), dim=1)
    labels = torch.randint(0, 3, (70000,), generator=g)
    centroids = torch.randn(3, 5, generator=g) * torch.tensor([[1.0], [7.0], [0.2]])
    unit = torch.nn.functional.normalize(centroids.double(), dim=1)
    want = float((x.double() * unit[labels]).sum(1).mean())
    got = kmeans_cases.mean_cosine(x.numpy(), labels.int().numpy(), centroids.numpy())
    assert abs(got - want) < 1e-12


def test_kmeans_baselines_quick_writes_json_markdown_and_plot(tmp_path):
    # the quick grid on smaller maps: every method runs in its own process and reports
    pytest.importorskip("matplotlib")
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu): "
                        "the k-means benchmark compares against faiss.Kmeans")
    cmd = [sys.executable, str(BENCH / "kmeans_baselines.py"), "--quick", "--side", "17",
           "--out-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((tmp_path / "kmeans_baselines_cpu.json").read_text())
    quick = presets.KMEANS_PRESETS["quick"]
    rows = report["rows"]
    assert sorted((r["dim"], r["k"], r["method"]) for r in rows) == sorted(
        (d, k, m) for d in quick.dims for k in quick.ks for m in ("pixcon", "faiss",
                                                                   "faiss_sampled", "sklearn"))
    for r in rows:
        assert r["status"] == "ok", r
        assert r["n"] == quick.images * 17 * 17 and r["per_iter_s"] is not None
        assert 0 < r["mean_cos"] <= 1 and r["peak_bytes"] >= 0
        assert 2 <= r["n_iter"] <= 20
        assert r["memory_method"] == "VmHWM growth after malloc_trim + clear_refs"
    assert all(r["n_iter"] == 20 for r in rows if r["method"] == "pixcon")
    assert report["config"]["threads"] == os.cpu_count()
    assert report["machine"]["loadavg_start"] is not None
    md = (tmp_path / "kmeans_baselines_cpu.md").read_text()
    assert "| D | K | ms/iter pixcon | ms/iter faiss |" in md
    png = tmp_path / "kmeans_baselines_cpu.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernel_flops_count_the_pair_sweep_over_positives_only():
    labels = [0, 0, 0, 1, 1, cases.IGNORE_INDEX]  # classes of 3 and 2 rows; one ignored row
    assert cases.kernel_flops("pixcon_all", 6, 4, 1, labels) == 4 * 36 * 4
    assert cases.kernel_flops("pixcon_pair", 6, 4, 1, labels) == 4 * 36 * 4 + (9 + 4) * 4
    assert cases.kernel_flops("pixcon_pair", 6, 4) == 5 * 36 * 4  # no labels: the whole matrix
    assert cases.kernel_flops("reference", 6, 4) is None


def test_plot_efficiency_recounts_rows_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    n, d = 200, 16
    _, labels = cases.make_inputs(n, d, "float32", 0, classes=5)
    rows = [{"status": "ok", "device": "cpu", "impl": impl, "n": n, "dim": d, "bags": 1,
             "median_s": 0.01, "cpu_peak_gflops": 100.0} for impl in ("pixcon_all", "pixcon_pair")]
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"config": {"classes": 5, "seed": 0}, "rows": rows}))
    out = tmp_path / "efficiency.png"
    proc = subprocess.run([sys.executable, str(BENCH / "plot_efficiency.py"), str(run), "--before", str(run),
                           "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=BENCH)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = 100 * cases.kernel_flops("pixcon_pair", n, d, 1, labels.tolist()) / 0.01 / 1e9 / 100.0
    assert f"D = {d}, pair: N = {n}: {expected:.0f} %" in proc.stdout


def test_efficiency_is_the_fastest_step_against_the_peak_with_the_median_beside_it(monkeypatch):
    import pixcon
    from harness import measure

    monkeypatch.setattr(pixcon, "cpu_peak_gflops", lambda threads, seconds: 100.0)
    n, d = 200, 16
    _, labels = cases.make_inputs(n, d, "float32", 0, classes=5)
    spec = {"impl": "pixcon_all", "n": n, "dim": d, "bags": 1, "device": "cpu"}
    got = measure._efficiency(spec, [0.04, 0.01, 0.02], labels)
    flops = cases.kernel_flops("pixcon_all", n, d, 1, labels.tolist())
    assert got["gflops_kernel"] == pytest.approx(flops / 0.01 / 1e9)
    assert got["peak_fraction"] == pytest.approx(flops / 0.01 / 1e9 / 100.0)
    assert got["peak_fraction_median"] == pytest.approx(flops / 0.02 / 1e9 / 100.0)


def test_cpu_steal_seconds_reads_proc_stat_where_it_exists():
    from harness import machine

    steal = machine.cpu_steal_seconds()
    if not os.path.exists("/proc/stat"):
        assert steal is None
    else:
        assert steal is not None and steal >= 0


def test_rows_are_compared_with_the_highest_peak_of_their_tier_and_threads():
    from harness.report import use_run_peak

    def row(peak, threads=2, isa="avx512"):
        return {"status": "ok", "cpu_isa": isa, "num_threads": threads, "cpu_peak_gflops": peak,
                "gflops_kernel": 80.0, "gflops_kernel_median": 60.0}

    rows = [row(100.0), row(50.0), row(40.0, threads=1), {"status": "oom"}]
    use_run_peak(rows)
    assert [r["cpu_peak_gflops"] for r in rows[:3]] == [100.0, 100.0, 40.0]
    assert rows[1]["cpu_peak_gflops_row"] == 50.0
    assert rows[1]["peak_fraction"] == pytest.approx(0.8)
    assert rows[1]["peak_fraction_median"] == pytest.approx(0.6)
    assert rows[2]["peak_fraction"] == pytest.approx(2.0)
