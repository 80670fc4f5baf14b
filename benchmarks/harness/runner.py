"""Where a measurement runs: always in a process of its own, so that a peak belongs to one
configuration and a crash or an out-of-memory kill costs one row.

* :func:`run_forked`: a fork of the driver (Linux, CPU). The driver imports torch, pixcon and
  the baselines once and runs no torch op before forking, so each child starts its OpenMP pools
  fresh and pays no import time.
* :func:`run_subprocess`: a fresh interpreter, ``python -m harness.worker SPEC`` (any CUDA row,
  or ``--isolation subprocess``).
* :class:`PersistentWorker`: one ``python -m harness.worker --serve`` process that answers rows
  one at a time (the GPU grid: the CUDA context is made once per implementation), replaced when
  it dies, overruns a row's limit or loses its CUDA context.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from .protocol import MARKER, describe_exit, find_result

_BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_command(*args: str) -> List[str]:
    """The command line of a measuring process."""
    return [sys.executable, "-m", "harness.worker", *args]


def worker_env() -> Dict[str, str]:
    """This process's environment, with benchmarks/ (the harness and the baselines) and the
    folder this process imported pixcon from first on PYTHONPATH, so the worker measures the
    same code."""
    paths = [_BENCHMARKS]
    pixcon = sys.modules.get("pixcon")
    if pixcon is not None and getattr(pixcon, "__file__", None):
        paths.append(os.path.dirname(os.path.dirname(os.path.abspath(pixcon.__file__))))
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))


def set_omp_wait_policy(choice: str) -> Optional[str]:
    """Sets OMP_WAIT_POLICY ("passive" or "active") for this process and the measuring ones
    (an OpenMP runtime reads it when it loads, so before torch is imported); "inherit" leaves
    the environment as it is. Returns what the run used."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    if choice == "inherit":
        return policy
    if "torch" in sys.modules:
        return f"{policy} (torch was imported before; --omp-wait-policy ignored)"
    os.environ["OMP_WAIT_POLICY"] = choice.upper()
    return choice.upper()


def _last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else ""


def _failure(returncode: Optional[int], stderr: str, prefix: str = "") -> Dict[str, Any]:
    """The result of a process that gave none: why it ended and the last line of its stderr,
    usually the exception that ended it."""
    status, note = describe_exit(returncode)
    tail = _last_line(stderr)
    return {"status": status, "note": prefix + note + (f": {tail}" if tail else "")}


def _fork_entry(spec: Dict[str, Any], conn) -> None:
    from .worker import answer

    conn.send(answer(spec))
    conn.close()


def run_forked(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Runs ``spec`` in a forked child of this (torch-idle) process."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    sys.stdout.flush()
    sys.stderr.flush()
    proc = ctx.Process(target=_fork_entry, args=(spec, child_conn), daemon=True)
    proc.start()
    child_conn.close()
    result = None
    if parent_conn.poll(timeout):
        try:
            result = parent_conn.recv()
        except (EOFError, OSError):
            result = None
    if result is None and proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": "timeout", "note": f"timed out after {timeout:g} s"}
    proc.join()
    return result if result is not None else _failure(proc.exitcode, "")


def run_subprocess(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Runs ``spec`` in a fresh interpreter."""
    try:
        proc = subprocess.run(worker_command(json.dumps(spec)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout,
                              env=worker_env())
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"timed out after {timeout:g} s"}
    result = find_result(proc.stdout.splitlines())
    return result if result is not None else _failure(proc.returncode, proc.stderr)


class PersistentWorker:
    """One ``--serve`` worker: :meth:`request` sends it a spec and waits for the answer; a
    worker that died or overran is replaced at the next request."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.stderr = None
        self.buffer = b""

    def _start(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(worker_command("--serve"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=worker_env())
        self.buffer = b""

    def _readline(self, deadline: float) -> Optional[str]:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")

    def _read_result(self, deadline: float) -> Optional[Dict[str, Any]]:
        line = ""
        while line is not None and not line.startswith(MARKER):
            line = self._readline(deadline)
        return None if line is None else find_result([line])

    def _lost(self, timeout: float) -> Dict[str, Any]:
        """The result of a worker that did not answer: stopped when it overran, else why it
        ended."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            result = {"status": "timeout", "note": f"timed out after {timeout:.0f} s"}
        else:
            self.stderr.seek(0)
            result = _failure(self.proc.returncode, self.stderr.read().decode(errors="replace"),
                              "worker ")
        self.proc = None
        return result

    def request(self, spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        """The worker's answer to ``spec`` within ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write((json.dumps(spec) + "\n").encode())
            self.proc.stdin.flush()
            result = self._read_result(deadline)
        except (BrokenPipeError, OSError):
            result = None
        if result is None:
            return self._lost(timeout)
        if result.get("cuda_context_lost"):
            self.close()
        return result

    def close(self) -> None:
        """Ends the worker (it leaves when its stdin closes)."""
        if self.proc is None:
            return
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
