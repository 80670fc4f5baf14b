"""The Python half of scripts/gpu_check.sh: the environment probe and the report writer.

    python3 scripts/gpu_check_report.py env OUT.json [--no-gpu REASON]
    python3 scripts/gpu_check_report.py get ENV.json KEY
    python3 scripts/gpu_check_report.py write --steps STEPS.tsv --env ENV.json --out-dir DIR
        --started EPOCH --budget-s SECONDS [--bench GRID.json] [--logs ARCHIVE]

Standard library only at import, so that it runs, and reports, where torch or a GPU is missing:
torch is asked in a child process with a timeout, since a broken driver can hang it. ``write``
turns the steps the shell script recorded (one tab-separated line each: index, name, status,
seconds, exit code, limit in seconds, log file, command) and the GPU grid's JSON
(benchmarks/loss_suite.py --gpu-grid) into ``gpu_check.json`` and ``gpu_check.md`` in the output
directory, and exits with the check's status: 1 when a step failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the benchmark harness describes the host and draws the GPU grid's table; its modules import
# torch only inside the functions that measure, so this runs where torch is missing
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))
from harness.cases import nominal_flops  # noqa: E402
from harness.machine import cpu_model  # noqa: E402
from harness.report import gpu_grid_markdown  # noqa: E402
STATUSES = ("pass", "fail", "skip")
#: exit status of a step command that decided to skip itself (automake's convention)
SKIP_EXIT = 77
#: exit statuses of `timeout`: the limit was reached (124), or the command needed SIGKILL (137)
TIMEOUT_EXITS = (124, 137)
TAIL_LINES, TAIL_CHARS = 40, 4000
#: a failed step's first lines that look like errors: a build's tail is only its wrapper's
ERROR_LINE = re.compile(r"\berror\b|\bFAILED\b|Assertion|Traceback", re.IGNORECASE)
ERROR_LINES = 12
_GIB = 1024.0 ** 3

# asked in a child interpreter: import torch and describe the CUDA device it sees
_TORCH_PROBE = r"""
import json, sys
import torch
out = {"version": torch.__version__, "cuda_version": torch.version.cuda,
       "cuda_available": torch.cuda.is_available(), "python": sys.version.split()[0]}
if out["cuda_available"]:
    p = torch.cuda.get_device_properties(0)
    out.update(device_count=torch.cuda.device_count(), gpu_name=p.name,
               sms=p.multi_processor_count, memory_bytes=p.total_memory,
               capability=f"{p.major}.{p.minor}", cuda_arch=f"{p.major}{p.minor}")
print(json.dumps(out))
"""


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------

def _run(cmd: Sequence[str], timeout: float = 60.0) -> Dict[str, Any]:
    """``cmd``'s exit code and output, or the reason it could not run."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return {"ok": False, "error": f"{cmd[0]} not found"}
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"{cmd[0]} did not answer within {timeout:g} s"}
    return {"ok": proc.returncode == 0, "exit_code": proc.returncode,
            "stdout": proc.stdout.strip(), "stderr": proc.stderr.strip()[-1000:]}


def find_compute_sanitizer() -> Optional[str]:
    """compute-sanitizer on PATH or in the CUDA toolkit beside nvcc (it is often off PATH)."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    roots = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in filter(None, roots):
        for rel in ("bin/compute-sanitizer", "compute-sanitizer/compute-sanitizer"):
            path = os.path.join(root, rel)
            if os.access(path, os.X_OK):
                return path
    return None


def probe_environment(force_no_gpu: Optional[str] = None) -> Dict[str, Any]:
    """What the check runs on: nvidia-smi, nvcc, compute-sanitizer, torch and its GPU, the host;
    ``gpu_available`` says whether the GPU steps can run, ``no_gpu_reason`` why not."""
    env: Dict[str, Any] = {"host": {"platform": platform.platform(), "cpu": cpu_model(),
                                    "logical_cores": os.cpu_count(),
                                    "python": sys.executable}}
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap,"
                "clocks.max.sm", "--format=csv,noheader,nounits"])
    if smi["ok"] and smi["stdout"]:
        fields = [f.strip() for f in smi["stdout"].splitlines()[0].split(",")]
        keys = ("name", "driver", "memory_mib", "compute_cap", "max_sm_clock_mhz")
        env["nvidia_smi"] = dict(zip(keys, fields))
    else:
        env["nvidia_smi"] = {"error": smi.get("error") or smi.get("stderr") or "no GPU listed"}
    nvcc = _run(["nvcc", "--version"])
    if nvcc["ok"]:
        release = [l for l in nvcc["stdout"].splitlines() if "release" in l]
        env["nvcc"] = {"path": shutil.which("nvcc"),
                       "version": (release or nvcc["stdout"].splitlines())[-1]}
    else:
        env["nvcc"] = {"error": nvcc.get("error") or nvcc.get("stderr")}
    sanitizer = find_compute_sanitizer()
    env["compute_sanitizer"] = {"path": sanitizer}
    if sanitizer:
        lines = (_run([sanitizer, "--version"]).get("stdout") or "").splitlines()
        env["compute_sanitizer"]["version"] = lines[-1] if lines else None
    torch_probe = _run([sys.executable, "-c", _TORCH_PROBE], timeout=180)
    if torch_probe["ok"]:
        env["torch"] = json.loads(torch_probe["stdout"].splitlines()[-1])
    else:
        stderr = (torch_probe.get("stderr") or "").splitlines()
        env["torch"] = {"error": torch_probe.get("error") or (stderr[-1] if stderr else "failed")}
    torch_info = env["torch"]
    if force_no_gpu:
        reason = force_no_gpu
    elif "error" in env["nvidia_smi"]:
        reason = f"nvidia-smi: {env['nvidia_smi']['error']}"
    elif "error" in torch_info:
        reason = f"torch cannot be imported by {sys.executable}: {torch_info['error']}"
    elif not torch_info.get("cuda_available"):
        reason = "torch.cuda.is_available() is False"
    else:
        reason = None
    env["gpu_available"] = reason is None
    env["no_gpu_reason"] = reason
    env["cuda_arch"] = torch_info.get("cuda_arch") if reason is None else None
    return env


# --------------------------------------------------------------------------------------------
# steps and report
# --------------------------------------------------------------------------------------------

def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def _step_note(status: str, exit_code: int, limit: float, output: str) -> str:
    """One line on the outcome: a skip's reason (its 'skip: ...' line), a timeout, an exit
    status; and pytest's summary line when the output has one."""
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    if status == "skip":
        reasons = [l for l in lines if l.lower().startswith("skip:")]
        return reasons[-1][5:].strip() if reasons else "skipped"
    summary = [l.strip("= ") for l in lines
               if re.search(r"\d+ (passed|failed|errors?)\b", l) and " in " in l]
    parts = []
    if status == "fail":
        parts.append(f"timed out after {limit:g} s" if exit_code in TIMEOUT_EXITS
                     else f"exit status {exit_code}")
    if summary:
        parts.append(summary[-1])
    return ": ".join(parts)


def read_steps(path: str) -> List[Dict[str, Any]]:
    """The steps recorded by gpu_check.sh, by index, each with its note and output tail."""
    steps = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            index, name, status, seconds, exit_code, limit, log, command = \
                line.rstrip("\n").split("\t", 7)
            try:
                with open(log, errors="replace") as g:
                    output = g.read()
            except OSError:
                output = ""
            steps.append(make_step(int(index), name, status, float(seconds), int(exit_code),
                                   float(limit), command, output))
    return sorted(steps, key=lambda s: s["index"])


def make_step(index: int, name: str, status: str, seconds: float, exit_code: int,
              limit: float, command: str, output: str) -> Dict[str, Any]:
    """One step's record as gpu_check.json holds it."""
    if status not in STATUSES:
        raise ValueError(f"step {name}: unknown status {status!r}")
    errors = [l.rstrip() for l in output.splitlines() if ERROR_LINE.search(l)][:ERROR_LINES]
    return {"index": index, "name": name, "command": command, "status": status,
            "seconds": round(seconds, 1), "timeout_s": limit, "exit_code": exit_code,
            "note": _step_note(status, exit_code, limit, output),
            "error_lines": errors if status == "fail" else [], "output_tail": _tail(output)}


def benchmark_rows(grid: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The GPU grid's rows as gpu_check.json keeps them, with TFLOP/s = 6 N^2 D / median."""
    keys = ("impl", "dim", "dtype", "n", "bags", "status", "median_s", "min_s", "runs",
            "peak_bytes", "speedup", "model_s", "note")
    rows = []
    for r in grid.get("rows", []):
        row = {k: r.get(k) for k in keys}
        ok = r.get("status") == "ok" and r.get("median_s")
        row["tflops"] = (nominal_flops(r["n"], r["dim"], r.get("bags") or 1)
                         / r["median_s"] / 1e12) if ok else None
        rows.append(row)
    return rows


def build_report(steps: Sequence[Dict[str, Any]], environment: Dict[str, Any],
                 grid: Optional[Dict[str, Any]] = None, *, started: float, finished: float,
                 budget_s: float, grid_path: Optional[str] = None,
                 logs: Optional[str] = None) -> Dict[str, Any]:
    """gpu_check.json: the environment, every step, the benchmark rows, the verdict."""
    counts = {s: sum(1 for st in steps if st["status"] == s) for s in STATUSES}
    failed = [st["name"] for st in steps if st["status"] == "fail"]
    benchmark = None
    if grid is not None:
        benchmark = {"json": grid_path, "machine": grid.get("machine"),
                     "model_gpu": grid.get("model_gpu"), "notes": grid.get("notes") or [],
                     "rows": benchmark_rows(grid)}
    return {
        "tool": "scripts/gpu_check.sh",
        "gpu": bool(environment.get("gpu_available")),
        "no_gpu_reason": environment.get("no_gpu_reason"),
        "result": "fail" if failed else "pass",
        "failed_steps": failed,
        "summary": counts,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(finished - started, 1),
        "budget_s": budget_s,
        "environment": environment,
        "steps": list(steps),
        "benchmark": benchmark,
        "logs": logs,
        "exit_status": 1 if failed else 0,
    }


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "/").replace("\n", " ")


def _environment_rows(env: Dict[str, Any]) -> List[List[str]]:
    smi, torch_info = env.get("nvidia_smi") or {}, env.get("torch") or {}
    rows = []
    if "name" in smi:
        rows.append(["GPU (nvidia-smi)", f"{smi['name']}, {smi.get('memory_mib')} MiB, compute "
                     f"capability {smi.get('compute_cap')}, max SM clock "
                     f"{smi.get('max_sm_clock_mhz')} MHz"])
        rows.append(["driver", smi.get("driver")])
    else:
        rows.append(["nvidia-smi", smi.get("error")])
    if "error" in torch_info:
        rows.append(["torch", f"not importable: {torch_info['error']}"])
    else:
        rows.append(["torch", f"{torch_info.get('version')} (CUDA {torch_info.get('cuda_version')}"
                     f"), Python {torch_info.get('python')}"])
        if torch_info.get("cuda_available"):
            rows.append(["GPU (torch)", f"{torch_info.get('gpu_name')}, {torch_info.get('sms')} "
                         f"SMs, {(torch_info.get('memory_bytes') or 0) / _GIB:.1f} GiB, "
                         f"sm_{torch_info.get('cuda_arch')}"])
    nvcc, cs = env.get("nvcc") or {}, env.get("compute_sanitizer") or {}
    rows.append(["nvcc", nvcc.get("version") or nvcc.get("error")])
    rows.append(["compute-sanitizer", (f"{cs['path']} ({cs.get('version')})" if cs.get("path")
                                       else "not found")])
    host = env.get("host") or {}
    rows.append(["host", f"{host.get('cpu')}, {host.get('logical_cores')} logical cores, "
                 f"{host.get('platform')}"])
    return rows


def render_markdown(report: Dict[str, Any], grid: Optional[Dict[str, Any]] = None) -> str:
    """gpu_check.md: the verdict first, then the environment, the steps, the benchmark table
    and the output of each failed step."""
    steps, counts = report["steps"], report["summary"]
    out = ["# pixcon GPU check", ""]
    if not report["gpu"]:
        out.append(f"**No GPU: {report['no_gpu_reason']}.** The GPU steps (build, CUDA tests, "
                   "agreement test and sanitizers, benchmark) did not run; only the checks that "
                   "need no GPU did.")
        out.append("")
    if report["result"] == "fail":
        out.append(f"**Result: FAIL** ({counts['fail']} of {len(steps)} steps failed: "
                   f"{', '.join(report['failed_steps'])}).")
    else:
        out.append(f"**Result: PASS** ({counts['pass']} steps passed, {counts['skip']} "
                   "skipped).")
    out += ["", f"Started {report['started']}; {report['wall_s']:.0f} s of a "
            f"{report['budget_s']:g} s budget."
            + (f" Step logs: `{os.path.basename(report['logs'])}`." if report.get("logs") else ""),
            "", "## Environment", "", "| | |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in _environment_rows(report["environment"])]
    out += ["", "## Steps", "", "| # | step | status | seconds | limit s | note | command |",
            "|---:|---|---|---:|---:|---|---|"]
    for st in steps:
        status = "**FAIL**" if st["status"] == "fail" else st["status"]
        out.append(f"| {st['index']} | {_cell(st['name'])} | {status} | {st['seconds']:.1f} | "
                   f"{st['timeout_s']:g} | {_cell(st['note'])} | `{_cell(st['command'])}` |")
    if grid is not None:
        out += ["", "## Benchmark: the GPU grid (`benchmarks/loss_suite.py --gpu-grid`)", ""]
        try:
            out.append(gpu_grid_markdown(grid).rstrip())
        except Exception as e:  # noqa: BLE001 - the report is written whatever the suite's state
            out.append(f"The table could not be drawn: {type(e).__name__}: {e}")
    elif report["gpu"]:
        out += ["", "## Benchmark", "", "No benchmark rows: see the benchmark step."]
    failed = [st for st in steps if st["status"] == "fail"]
    if failed:
        out += ["", "## Output of the failed steps"]
        for st in failed:
            out += ["", f"### {st['index']}. {st['name']} ({st['note']})", ""]
            if st["error_lines"]:
                out += ["First lines that look like errors:", "", "```", *st["error_lines"],
                        "```", "", "Last lines:", ""]
            out += ["```", st["output_tail"], "```"]
    return "\n".join(out) + "\n"


def write_reports(report: Dict[str, Any], out_dir: str,
                  grid: Optional[Dict[str, Any]] = None) -> List[str]:
    """Writes gpu_check.json and gpu_check.md into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, "gpu_check.json")
    md_path = os.path.join(out_dir, "gpu_check.md")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(render_markdown(report, grid))
    return [json_path, md_path]


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check_report.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="probe the environment into a JSON file")
    env.add_argument("out")
    env.add_argument("--no-gpu", default=None, metavar="REASON",
                     help="take the no-GPU path whatever is found, for this reason")
    get = sub.add_parser("get", help="print one key of a JSON file ('' for null)")
    get.add_argument("path")
    get.add_argument("key")
    write = sub.add_parser("write", help="write gpu_check.json and gpu_check.md")
    write.add_argument("--steps", required=True)
    write.add_argument("--env", required=True)
    write.add_argument("--out-dir", required=True)
    write.add_argument("--started", type=float, required=True, help="epoch seconds")
    write.add_argument("--budget-s", type=float, required=True)
    write.add_argument("--bench", default=None, help="the GPU grid's JSON, when it ran")
    write.add_argument("--logs", default=None, help="the archive of the step logs")
    args = p.parse_args(argv)

    if args.command == "env":
        environment = probe_environment(args.no_gpu)
        with open(args.out, "w") as f:
            json.dump(environment, f, indent=2)
        print("GPU: " + ("yes, sm_" + str(environment["cuda_arch"]) if environment["gpu_available"]
                         else f"no ({environment['no_gpu_reason']})"))
        print(json.dumps(environment, indent=2))
        return 0
    if args.command == "get":
        with open(args.path) as f:
            value = json.load(f).get(args.key)
        print("" if value is None else value)
        return 0

    try:
        with open(args.env) as f:
            environment = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        environment = {"gpu_available": False, "no_gpu_reason": f"no environment probe ({e})"}
    grid = None
    if args.bench and os.path.isfile(args.bench):
        with open(args.bench) as f:
            grid = json.load(f)
    report = build_report(read_steps(args.steps), environment, grid, started=args.started,
                          finished=time.time(), budget_s=args.budget_s, grid_path=args.bench,
                          logs=args.logs)
    for path in write_reports(report, args.out_dir, grid):
        print(f"written: {path}")
    return report["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
