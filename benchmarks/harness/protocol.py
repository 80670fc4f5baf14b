"""How a measuring process hands its result back: one JSON line behind a marker on its stdout
(its libraries may print anything before it), or, from a fork, the same dict through a pipe."""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, Dict, Iterable, Optional, Tuple

MARKER = "PIXCON_BENCH_RESULT "


def emit_result(result: Dict[str, Any]) -> None:
    """Writes ``result`` as the line :func:`find_result` looks for."""
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def find_result(lines: Iterable[str]) -> Optional[Dict[str, Any]]:
    """The last result line among ``lines``, decoded; None when there is none."""
    found = None
    for line in lines:
        if line.startswith(MARKER):
            try:
                found = json.loads(line[len(MARKER):])
            except json.JSONDecodeError:
                found = None
    return found


def describe_exit(returncode: Optional[int]) -> Tuple[str, str]:
    """``(status, note)`` for a process that ended with ``returncode`` (negative: killed by that
    signal) without a result."""
    if not returncode:
        return "error", "no exit status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGKILL:
            # the kernel's OOM killer sends SIGKILL: under a memory benchmark, most likely that
            return "oom", f"killed by {name} (the kernel's OOM killer?)"
        return "error", f"killed by {name}"
    return "error", f"exited with status {returncode} without a result"


def classify_exception(e: BaseException) -> Dict[str, Any]:
    """``{"status": "oom" | "error", "note": ...}`` for an exception raised by a measurement."""
    first = (f"{type(e).__name__}: {e}".strip().splitlines() or [type(e).__name__])[0]
    low = first.lower()
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
            s in low for s in ("out of memory", "can't allocate memory", "cannot allocate memory")):
        return {"status": "oom", "note": "out of memory: " + first[:160]}
    return {"status": "error", "note": "failed: " + first[:200]}
