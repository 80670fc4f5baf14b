"""The CUDA emulation's cuBLAS stand-in (tests/emulation/pixcon_emu.cpp) against torch.matmul.

tests/emulation runs ops/cuda/*.cu on the CPU; its verdicts are only worth something if the
stand-in computes what cuBLAS computes. Here cublasGemmEx of the stand-in, called through
build/emulation/libcublas_standin_capi.so (tests/emulation/cublas_standin_capi.cpp, which passes the
operands through emulated device memory), is compared with torch.matmul on the column-major
interpretation of the same buffers, for every transpose pair, sizes 1 and non-multiples of 8, tight
and padded leading dimensions, alpha/beta, and each operand/compute type ops/cuda/contrastive.cu uses.

Tolerances are the standard error bound of a k-term dot product in the compute type, relative to
|alpha| |op(A)| |op(B)| + |beta| |C| (plus the input rounding of TF32). The padding of A and B is
NaN (never read), C is NaN when beta = 0 (never read then) and the padding of C must come back
unchanged.

Needs the emulation build (scripts/test.sh does it first); without it the tests skip, or fail when
the CI environment variable is set.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "build" / "emulation" / "libcublas_standin_capi.so"

# values of the real CUDA headers (and of the stand-ins in tests/emulation/include)
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUDA_R_32F, CUDA_R_64F, CUDA_R_16F, CUDA_R_16BF = 0, 1, 2, 14
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_64F = 68, 69, 77, 70
CUBLAS_STATUS_SUCCESS, CUBLAS_STATUS_INVALID_VALUE = 0, 7

OPS = {"N": CUBLAS_OP_N, "T": CUBLAS_OP_T}
CUDA_TYPES = {torch.float64: CUDA_R_64F, torch.float32: CUDA_R_32F, torch.float16: CUDA_R_16F,
              torch.bfloat16: CUDA_R_16BF}


@dataclasses.dataclass(frozen=True)
class GemmType:
    """Operand (A, B) type, output (C) type and compute type of one cublasGemmEx call."""

    name: str
    inputs: torch.dtype
    output: torch.dtype
    compute: int
    unit_roundoff: float  # of the accumulation
    input_rounding: float = 0.0  # relative error per operand before the products (TF32)


# Each combination ops/cuda/contrastive.cu passes to cublasGemmEx (similarity_gemm, gradient_gemm).
GEMM_TYPES = [
    GemmType("float64", torch.float64, torch.float64, CUBLAS_COMPUTE_64F, 2.0**-53),
    GemmType("float32-pedantic", torch.float32, torch.float32, CUBLAS_COMPUTE_32F_PEDANTIC, 2.0**-24),
    GemmType("float32-tf32", torch.float32, torch.float32, CUBLAS_COMPUTE_32F_FAST_TF32, 2.0**-24, 2.0**-11),
    GemmType("float16-into-float32", torch.float16, torch.float32, CUBLAS_COMPUTE_32F, 2.0**-24),
    GemmType("bfloat16-into-float32", torch.bfloat16, torch.float32, CUBLAS_COMPUTE_32F, 2.0**-24),
]

SIZES = (1, 7, 16, 33)  # 1, odd, a multiple of 8, and neither
# (alpha, beta): the kernels' 1/temperature (not a float32 value) with beta = 0, and general scalings
SCALINGS = ((1.0, 0.0), (1.0 / 0.07, 0.0), (-0.5, 1.0), (1.25, -0.75))
C_PADDING = 12345.0


@pytest.fixture(scope="module", autouse=True)
def single_threaded_torch():
    """The reference matmuls are tiny: thread-pool hand-offs would cost more than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def standin_gemm():
    if not LIBRARY.exists():
        message = (f"{LIBRARY.relative_to(ROOT)} is missing: run scripts/test.sh, or build tests/emulation "
                   "(cmake -S tests/emulation -B build/emulation -G Ninja && cmake --build build/emulation)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    fn = ctypes.CDLL(str(LIBRARY)).pixcon_emu_gemm
    i, d, p = ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    fn.argtypes = [i, i, i, i, i, d, p, i, p, i, d, p, i, i, i, i]
    fn.restype = ctypes.c_int
    return fn


def column_major(matrix: torch.Tensor, ld: int, padding: float) -> torch.Tensor:
    """The flat column-major buffer (ld * cols elements) of a rows x cols matrix, padding rows >= rows."""
    rows, cols = matrix.shape
    buffer = torch.full((cols, ld), padding, dtype=matrix.dtype)
    buffer[:, :rows] = matrix.T
    return buffer.reshape(-1)


def from_column_major(buffer: torch.Tensor, rows: int, cols: int, ld: int) -> torch.Tensor:
    """The rows x cols matrix that a column-major buffer with leading dimension ld holds."""
    return buffer.view(cols, ld)[:, :rows].T


def gemm(standin_gemm, gemm_type: GemmType, transa: str, transb: str, m: int, n: int, k: int, alpha: float,
         beta: float, lda: int, ldb: int, ldc: int, seed: int):
    """Runs one stand-in GEMM on random operands and returns (status, got C, reference C, error bound)."""
    g = torch.Generator().manual_seed(seed)
    # the stored A is m x k (N) or k x m (T); B is k x n (N) or n x k (T)
    a_shape = (m, k) if transa == "N" else (k, m)
    b_shape = (k, n) if transb == "N" else (n, k)
    a = torch.randn(a_shape, generator=g, dtype=torch.float64).to(gemm_type.inputs)
    b = torch.randn(b_shape, generator=g, dtype=torch.float64).to(gemm_type.inputs)
    c0 = torch.randn((m, n), generator=g, dtype=torch.float64).to(gemm_type.output)
    a_buffer = column_major(a, lda, float("nan"))
    b_buffer = column_major(b, ldb, float("nan"))
    c_buffer = column_major(c0 if beta != 0 else torch.full_like(c0, float("nan")), ldc, C_PADDING)
    c_before = c_buffer.clone()

    status = standin_gemm(OPS[transa], OPS[transb], m, n, k, alpha, a_buffer.data_ptr(), lda,
                          b_buffer.data_ptr(), ldb, beta, c_buffer.data_ptr(), ldc,
                          CUDA_TYPES[gemm_type.inputs], CUDA_TYPES[gemm_type.output], gemm_type.compute)

    # torch.matmul on the column-major interpretation of the buffers, in float64
    op_a = from_column_major(a_buffer, *a_shape, lda).double()
    op_b = from_column_major(b_buffer, *b_shape, ldb).double()
    if transa == "T":
        op_a = op_a.T
    if transb == "T":
        op_b = op_b.T
    want = alpha * torch.matmul(op_a, op_b)
    scale = abs(alpha) * torch.matmul(op_a.abs(), op_b.abs())
    if beta != 0:
        c_in = from_column_major(c_before, m, n, ldc).double()
        want = want + beta * c_in
        scale = scale + abs(beta) * c_in.abs()
    # k products summed, alpha (rounded to float32 for 32F compute), beta * C and the final addition
    tolerance = 2 * ((k + 3) * gemm_type.unit_roundoff + 2 * gemm_type.input_rounding)
    got = from_column_major(c_buffer, m, n, ldc).double()
    c_padding_kept = torch.equal(c_buffer.view(n, ldc)[:, m:], c_before.view(n, ldc)[:, m:])
    return status, got, want, tolerance * scale, c_padding_kept


def assert_close(got, want, bound, what):
    error = (got - want).abs()
    ok = error <= bound  # NaN (a read of the NaN padding, or of C when beta = 0) fails
    if not bool(ok.all()):
        i, j = [int(x) for x in (~ok).nonzero()[0]]
        raise AssertionError(f"{what}: C[{i}, {j}] = {got[i, j].item()!r}, torch.matmul gives "
                             f"{want[i, j].item()!r} (allowed error {bound[i, j].item():.3g}); "
                             f"{int((~ok).sum())} of {ok.numel()} entries off")


@pytest.mark.parametrize("padded", [False, True], ids=["tight-ld", "padded-ld"])
@pytest.mark.parametrize("transa,transb", list(itertools.product("NT", repeat=2)), ids=lambda t: t)
@pytest.mark.parametrize("gemm_type", GEMM_TYPES, ids=lambda t: t.name)
def test_standin_gemm_matches_torch_matmul_for_every_transpose_size_leading_dimension_and_scaling(
        standin_gemm, gemm_type, transa, transb, padded):
    seed = 0
    for m, n, k in itertools.product(SIZES, repeat=3):
        a_rows = m if transa == "N" else k
        b_rows = k if transb == "N" else n
        # tight: the minimum leading dimension; padded: larger, and different for A, B and C
        lda, ldb, ldc = (a_rows + 3, b_rows + 1, m + 5) if padded else (a_rows, b_rows, m)
        for alpha, beta in SCALINGS:
            seed += 1
            status, got, want, bound, c_padding_kept = gemm(standin_gemm, gemm_type, transa, transb, m, n, k,
                                                            alpha, beta, lda, ldb, ldc, seed)
            what = (f"{gemm_type.name} op(A)={transa} op(B)={transb} m={m} n={n} k={k} lda={lda} ldb={ldb} "
                    f"ldc={ldc} alpha={alpha} beta={beta}")
            assert status == CUBLAS_STATUS_SUCCESS, f"{what}: status {status}"
            assert_close(got, want, bound, what)
            assert c_padding_kept, f"{what}: the padding rows of C were written"


@pytest.mark.parametrize("gemm_type", GEMM_TYPES, ids=lambda t: t.name)
def test_the_kernels_similarity_and_gradient_gemm_calls_match_torch_matmul(standin_gemm, gemm_type):
    """The calls of contrastive.cu as they are made: ld is the bag size rounded up to 4 (max_bag)."""
    dim, max_bag = 13, 10
    ld = (max_bag + 3) // 4 * 4
    alpha = 1.0 / 0.07
    for bag, rows in ((max_bag, max_bag), (max_bag, 3), (1, 1), (5, 2)):
        # similarity_gemm: S^T (bag x rows, ld) = op_T(Zc_J) (bag x dim) * Zc_I (dim x rows)
        calls = [("similarity", "T", "N", bag, rows, dim, dim, dim, ld)]
        if gemm_type.inputs in (torch.float64, torch.float32):  # 16-bit input: backward GEMM in float32
            # gradient_gemm: dz^T (dim x rows) = Zf_J (dim x bag, ld dim) * W^T (bag x rows, ld)
            calls.append(("gradient", "N", "N", dim, rows, bag, dim, ld, dim))
        for name, transa, transb, m, n, k, lda, ldb, ldc in calls:
            status, got, want, bound, c_padding_kept = gemm(standin_gemm, gemm_type, transa, transb, m, n, k,
                                                            alpha, 0.0, lda, ldb, ldc, seed=bag * 100 + rows)
            what = f"{name} GEMM {gemm_type.name} bag={bag} rows={rows}"
            assert status == CUBLAS_STATUS_SUCCESS, f"{what}: status {status}"
            assert_close(got, want, bound, what)
            assert c_padding_kept, f"{what}: the padding rows of C were written"


@pytest.mark.parametrize("transa,transb", list(itertools.product("NT", repeat=2)), ids=lambda t: t)
def test_standin_rejects_leading_dimensions_below_the_minimum_like_cublas(standin_gemm, transa, transb):
    m, n, k = 5, 4, 3
    lda = m if transa == "N" else k
    ldb = k if transb == "N" else n
    a = torch.zeros(lda * (k if transa == "N" else m))
    b = torch.zeros(ldb * (n if transb == "N" else k))
    c = torch.zeros(m * n)

    def call(lda_, ldb_, ldc_):
        return standin_gemm(OPS[transa], OPS[transb], m, n, k, 1.0, a.data_ptr(), lda_, b.data_ptr(), ldb_,
                            0.0, c.data_ptr(), ldc_, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC)

    assert call(lda, ldb, m) == CUBLAS_STATUS_SUCCESS
    assert call(lda - 1, ldb, m) == CUBLAS_STATUS_INVALID_VALUE
    assert call(lda, ldb - 1, m) == CUBLAS_STATUS_INVALID_VALUE
    assert call(lda, ldb, m - 1) == CUBLAS_STATUS_INVALID_VALUE
