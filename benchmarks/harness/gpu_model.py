"""The performance model of the fused CUDA kernels: their predicted forward + backward time on
one bag, from the peak rates of an H100 SXM or an H200 (benchmarks/README.md, "Performance
model"). The GPU grid plans with it and prints it next to each measured pixcon row."""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence, Tuple

from .cases import nominal_flops
from .presets import GPU_DTYPES, GPU_GRID_DIMS, GPU_GRID_SIZES
from .formats import fmt_ms

#: the matrix rate of each benchmark dtype's similarities
RATE_OF = {"bfloat16": "bf16", "tf32": "tf32", "float32": "fp32"}

#: The GPUs of the performance model (benchmarks/README.md, "Performance model"). Tensor-core
#: and FMA rates are NVIDIA's datasheet numbers without sparsity; exp2 runs on the SFU at 16 per
#: SM per clock; 132 SMs at the 1.98 GHz boost clock; a CTA may opt in to 227 KiB of shared
#: memory. The L2-to-SM bandwidth is not in the datasheet: 7 TB/s is an assumption until a
#: measurement replaces it.
GPU_SPECS = {
    "H100 SXM": {"bf16": 990e12, "tf32": 495e12, "fp32": 67e12, "sms": 132, "clock_hz": 1.98e9,
                 "hbm": 3.35e12, "l2": 7e12, "smem_optin": 232448},
    "H200": {"bf16": 990e12, "tf32": 495e12, "fp32": 67e12, "sms": 132, "clock_hz": 1.98e9,
             "hbm": 4.8e12, "l2": 7e12, "smem_optin": 232448},
}
#: achievable fractions of the peak rates: FlashAttention-2 reaches ~35 % of an H100 with the
#: same tile shape on mma.sync-class instructions (WMMA here), FlashAttention-3 ~75 % with wgmma
MODEL_FRACTIONS = {"expected": 0.35, "best": 0.75}
#: the fused kernels' shape (docs/design.md section 3b.5): rows per CTA, columns per tile, the k-chunk D is
#: padded to, the widest gradient chunk of a backward CTA; CTAs resident per SM is an assumption
TILE_ROWS, TILE_COLS, K_CHUNK, GRAD_CHUNK, CTAS_PER_SM = 64, 64, 32, 256, 2


def _round128(x: int) -> int:
    return -(-x // 128) * 128


def anchors_resident(dp: int, esize: int, smem_optin: float) -> bool:
    """Whether a CTA keeps its anchor rows in shared memory (ops/cuda/tile_math.cuh, Layout):
    the rows themselves, two stage buffers of J slices (or W Z pieces), the S tile and the rows'
    and columns' saved statistics (48 B each) must fit the device's opt-in limit."""
    pad = 16 // esize
    stream = max(2 * TILE_COLS * (K_CHUNK + pad) * esize, 2 * 8 * (GRAD_CHUNK + 4) * 4)
    total = (_round128(TILE_ROWS * (dp + pad) * esize) + _round128(stream) + _round128(TILE_ROWS * (TILE_COLS + 4) * 4)
             + _round128(TILE_ROWS * 48) + _round128(TILE_COLS * 48))
    return total <= smem_optin



def gpu_spec_for(name: str) -> Tuple[str, Dict[str, float]]:
    """The model's GPU for a device name: the H200 for an H200, else the H100 SXM (whose rates
    then stand in for another GPU, so its predictions are rough there)."""
    key = "H200" if "H200" in name.upper() else "H100 SXM"
    return key, GPU_SPECS[key]


def fused_model(n: int, d: int, dtype: str, spec: Dict[str, float],
                fraction: float = MODEL_FRACTIONS["expected"]) -> Dict[str, Any]:
    """Predicted forward + backward of the fused kernels on one bag of ``n`` rows.

    Each pass takes as long as the slowest of four resources at its peak rate: the tensor cores
    or FMA pipe (similarities at the input's rate; the backward's W Z at the TF32 rate, FMA for
    strict float32), the SFU's exp2, L2-to-SM traffic (every CTA streams each column tile through
    shared memory in k-chunks, and its own anchor rows too unless they stay resident; the
    backward also streams the column tile's rows for W Z), and HBM (one read of the packed Z per
    wave of resident CTAs). The two passes' sum is divided by ``fraction``.
    """
    dp = -(-d // K_CHUNK) * K_CHUNK
    esize = 2 if dtype == "bfloat16" else 4
    chunks = -(-d // GRAD_CHUNK)
    rate_s = spec[RATE_OF[dtype]]
    rate_w = spec["fp32"] if dtype == "float32" else spec["tf32"]
    exp_rate = 16.0 * spec["sms"] * spec["clock_hz"]
    n2 = float(n) * n
    tiles = n2 / (TILE_ROWS * TILE_COLS)
    waves = math.ceil(math.ceil(n / TILE_ROWS) / (CTAS_PER_SM * spec["sms"]))
    z_bytes = float(n) * dp * esize

    def phase(tensor_s, flops, exps, l2_bytes, hbm_bytes):
        times = {"tensor": tensor_s, "sfu": exps / exp_rate, "l2": l2_bytes / spec["l2"],
                 "hbm": hbm_bytes / spec["hbm"]}
        bound = max(times, key=times.get)
        return {"flops": flops, "exps": exps, "l2_bytes": l2_bytes, "hbm_bytes": hbm_bytes,
                "times_s": times, "bound": bound, "seconds": times[bound]}

    # rows streamed per tile pair for S: the column tile's, plus the anchors' unless resident
    streamed = TILE_COLS if anchors_resident(dp, esize, spec["smem_optin"]) else TILE_ROWS + TILE_COLS
    fwd = phase(2 * n2 * d / rate_s, 2 * n2 * d, n2, tiles * streamed * dp * esize + z_bytes,
                (2 + waves) * z_bytes)
    bwd = phase(chunks * 2 * n2 * d / rate_s + 2 * n2 * d / rate_w, (chunks + 1) * 2 * n2 * d,
                2 * n2 * chunks,
                tiles * (chunks * streamed + TILE_COLS) * dp * esize + chunks * z_bytes,
                (2 + waves * chunks) * z_bytes)
    seconds = (fwd["seconds"] + bwd["seconds"]) / fraction
    return {"forward": fwd, "backward": bwd, "fraction": fraction, "seconds": seconds,
            "tflops_nominal": nominal_flops(n, d) / seconds / 1e12}


def model_markdown(sizes: Sequence[int] = GPU_GRID_SIZES, dims: Sequence[int] = GPU_GRID_DIMS,
                   dtypes: Sequence[str] = GPU_DTYPES) -> str:
    """The performance model's table (benchmarks/README.md): predicted forward + backward time
    on the H100 SXM and the H200 at both fractions, the bound of each pass, TFLOP/s (6 N^2 D)."""
    names = list(GPU_SPECS)
    head = ["N", "D", "dtype", "bound fwd / bwd"]
    for name in names:
        head += [f"{name} ms at {int(f * 100)} %" for f in MODEL_FRACTIONS.values()]
    head += [f"TFLOP/s at {int(MODEL_FRACTIONS['expected'] * 100)} %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---|" + "---:|" * (len(head) - 4)]
    for dtype in dtypes:
        for d in dims:
            for n in sizes:
                first = fused_model(n, d, dtype, GPU_SPECS[names[0]])
                cells = [f"{n:,}".replace(",", " "), str(d), "float32 TF32" if dtype == "tf32"
                         else dtype, f"{first['forward']['bound']} / {first['backward']['bound']}"]
                for name in names:
                    cells += [fmt_ms(fused_model(n, d, dtype, GPU_SPECS[name], f)["seconds"])
                              for f in MODEL_FRACTIONS.values()]
                cells.append(f"{first['tflops_nominal']:.0f}")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
