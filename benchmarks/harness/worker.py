"""The measuring process: ``python -m harness.worker SPEC`` answers one spec (JSON) and exits;
``python -m harness.worker --serve`` answers one spec per stdin line until stdin closes (the GPU
grid's worker: torch, pixcon and the CUDA context load once, not per row). A fork of the driver
calls :func:`answer` directly. A spec's ``kind`` says what it asks: "checks", "device",
"kmeans" (``kmeans_measure``), or by default one configuration of the loss (``measure``)."""

from __future__ import annotations

import gc
import json
import sys
from typing import Any, Dict, Optional, Sequence

from .protocol import classify_exception, emit_result


def _device_info() -> Dict[str, Any]:
    """The GPU this process sees, with the machine it is in."""
    import torch

    from .machine import machine_info

    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    info = machine_info(["cuda"])
    info.update(gpu_name=props.name, gpu_sms=props.multi_processor_count,
                gpu_capability=f"{props.major}.{props.minor}", gpu_memory_bytes=total,
                gpu_free_bytes=free)
    return {"status": "ok", "machine": info}


def answer(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The result of ``spec``: the agreement checks (kind "checks"), the GPU's description (kind
    "device"), one k-means measurement (kind "kmeans") or one measurement of the loss; an
    exception becomes the result's status and note."""
    try:
        if spec.get("kind") == "checks":
            from .checks import run_checks

            return {"status": "ok", "checks": run_checks()}
        if spec.get("kind") == "device":
            return _device_info()
        if spec.get("kind") == "kmeans":
            from .kmeans_measure import measure_kmeans

            return measure_kmeans(spec)
        from .measure import measure

        return measure(spec)
    except BaseException as e:  # noqa: BLE001 - reported to the driver
        return classify_exception(e)


def release_cuda_memory() -> bool:
    """Frees the last row's cached blocks; False when the CUDA context is unusable (a kernel
    fault is sticky: every later CUDA call fails in this process)."""
    import torch

    if not torch.cuda.is_initialized():
        return True
    try:
        gc.collect()
        torch.cuda.empty_cache()
        torch.zeros(1, device="cuda").add_(1)
        torch.cuda.synchronize()
        return True
    except Exception:  # noqa: BLE001 - whatever CUDA raised, this process cannot use it
        return False


def serve() -> int:
    """Answers the driver's specs until stdin closes; leaves when a failed row left the CUDA
    context unusable, saying so first, so that the driver sends the next row to a fresh one."""
    for line in sys.stdin:
        result = answer(json.loads(line))
        lost = not release_cuda_memory()
        if lost:
            result["cuda_context_lost"] = True
        emit_result(result)
        if lost:
            return 3
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--serve"]:
        return serve()
    if len(args) != 1:
        sys.stderr.write("usage: python -m harness.worker SPEC_JSON | --serve\n")
        return 2
    emit_result(answer(json.loads(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
