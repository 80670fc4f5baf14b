"""The CUDA ops against the CPU ops on the same inputs, and the contracts only a GPU can show:
TF32 only when torch allows it, gradcheck and opcheck on CUDA, a training step captured in a
CUDA graph, a bitwise reproducible backward, no host synchronisation, O(N D) memory for one bag
of 262 144 rows, device-side asserts for bad labels and offsets, and the k-means equal to the
CPU bit for bit. They run where a GPU exists
(scripts/gpu_check.sh runs them); everywhere else they are skipped."""

import contextlib
import copy
import itertools
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import pixcon
from conftest import make_problem, upstream

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU on this machine (scripts/gpu_check.sh runs these on one)")

OPTIONS = [
    dict(denominator=d, self_positive=sp, masked=m)
    for d in ("all", "pair") for sp in (False, True) for m in (False, True)
]


def _problem(n, d, dtype, seed, masked, bags=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)
    y = torch.randint(0, 5, (n,), generator=g)
    y[torch.rand(n, generator=g) < 0.1] = 255
    cuts = torch.sort(torch.randint(0, n + 1, (bags - 1,), generator=g)).values
    offsets = torch.cat([torch.tensor([0]), cuts, torch.tensor([n])])
    extra = {}
    if masked:
        extra = dict(anchor_mask=torch.rand(n, generator=g) < 0.8, contrast_mask=torch.rand(n, generator=g) < 0.8,
                     image_ids=torch.randint(0, 2, (n,), generator=g))
    return z, y, offsets, extra


def _run(device, z, y, offsets, extra, g, **options):
    to = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t
    zd = z.detach().to(device).requires_grad_()
    loss, valid = pixcon.contrastive_loss(zd, to(y), to(offsets), **{k: to(v) for k, v in extra.items()}, **options)
    (grad,) = torch.autograd.grad((loss * to(g)).sum(), zd)
    return loss.cpu(), valid.cpu(), grad.cpu()


@pytest.mark.parametrize("option", OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(option, dtype):
    option = dict(option)
    masked = option.pop("masked")
    z, y, offsets, extra = _problem(700, 64, dtype, 0, masked)
    g = torch.randn(700, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    cpu = _run("cpu", z, y, offsets, extra, g, **option)
    cuda = _run("cuda", z, y, offsets, extra, g, **option)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cuda[0], cpu[0], **tol)
    assert torch.equal(cuda[1], cpu[1])
    torch.testing.assert_close(cuda[2], cpu[2], **tol)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_gradcheck(denominator):
    z = torch.randn(20, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    y = torch.randint(0, 3, (20,), device="cuda")
    f = lambda x: pixcon.contrastive_loss(x, y, temperature=0.5, denominator=denominator, self_positive=True)[0]
    assert torch.autograd.gradcheck(f, (z,))


def test_cuda_opcheck():
    z = torch.randn(30, 8, device="cuda", requires_grad=True)
    y = torch.randint(0, 3, (30,), device="cuda")
    offsets = torch.tensor([0, 12, 30], device="cuda")
    args = (z, y, offsets, None, None, None, 0.1, 255, "pair", False)
    torch.library.opcheck(torch.ops.pixcon.contrastive_loss.default, args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_matches_float32(dtype):
    z, y, offsets, extra = _problem(500, 32, torch.float32, 1, False)
    z16 = z.to(dtype)
    ref, _ = pixcon.contrastive_loss(z16.float().cuda(), y.cuda(), offsets.cuda())
    zd = z16.cuda().requires_grad_()
    loss, _ = pixcon.contrastive_loss(zd, y.cuda(), offsets.cuda())
    torch.testing.assert_close(loss, ref, rtol=1e-2, atol=1e-2)
    (grad,) = torch.autograd.grad(loss.sum(), zd)
    assert grad.dtype == dtype


def test_cuda_sixteen_65x65_images_as_one_bag_fit_in_memory():
    n = 16 * 65 * 65  # 67600 rows: the N x N float matrix alone would be 18 GB
    z = torch.nn.functional.normalize(torch.randn(n, 256, device="cuda"), dim=1).requires_grad_()
    y = torch.randint(0, 19, (n,), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    loss, valid = pixcon.contrastive_loss(z, y)
    loss.sum().backward()
    torch.cuda.synchronize()
    assert torch.isfinite(z.grad).all()
    assert torch.cuda.max_memory_allocated() < 4 * 2**30


def test_cuda_float32_uses_tf32_only_when_torch_allows_it():
    z, y, offsets, _ = _problem(700, 64, torch.float32, 3, False)
    cpu = pixcon.contrastive_loss(z, y, offsets)[0]
    previous = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        strict = pixcon.contrastive_loss(z.cuda(), y.cuda(), offsets.cuda())[0].cpu()
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        fast = pixcon.contrastive_loss(z.cuda(), y.cuda(), offsets.cuda())[0].cpu()
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous
    torch.testing.assert_close(strict, cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast, cpu, rtol=2e-2, atol=2e-2)  # TF32 keeps 10 mantissa bits


# ---- the whole option matrix against the CPU ----

@contextlib.contextmanager
def matmul_precision(precision):
    """torch's float32 matmul precision ("ieee" or "tf32"), which pixcon follows on CUDA."""
    previous = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = precision
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous


#: name -> (input dtype, torch's float32 matmul precision, relative tolerance)
PRECISIONS = {
    "float64": (torch.float64, "ieee", 1e-10),
    "float32": (torch.float32, "ieee", 1e-5),
    "float32_tf32": (torch.float32, "tf32", 1e-2),
    "float16": (torch.float16, "ieee", 1e-2),
    "bfloat16": (torch.bfloat16, "ieee", 1e-2),
}
#: bag sizes: one bag and two, spanning several 64-row tiles; and 37 bags, empty and one-row
#: bags among them
BAG_LAYOUTS = {
    "1_bag": [150],
    "2_bags": [70, 131],
    "37_bags": [0, 1, 130, 0, 1, 65, 1, 0] + [3 + (7 * i) % 12 for i in range(29)],
}
DIMS = [1, 3, 16, 64, 256, 300]  # 300: more than one 256-column gradient chunk
#: denominator x self_positive x anchor/contrast masks x image ids
MATRIX_OPTIONS = list(itertools.product(("all", "pair"), (False, True), (False, True), (False, True)))


def assert_matches(actual, expected, rtol):
    """Each entry within ``rtol`` of the expected value and of the tensor's largest magnitude,
    so that entries that cancel to ~0 are judged against the scale of the tensor."""
    expected = expected.to(torch.float64)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual.to(torch.float64), expected, rtol=rtol, atol=rtol * scale)


def _loss_and_grad(p, z, g, denominator, self_positive, device):
    to = lambda t: None if t is None else t.to(device)
    zd = z.detach().to(device).requires_grad_()
    loss, valid = pixcon.contrastive_loss(
        zd, to(p.labels), to(p.bag_offsets), denominator=denominator, self_positive=self_positive,
        anchor_mask=to(p.anchor_mask), contrast_mask=to(p.contrast_mask),
        image_ids=to(p.image_ids))
    (grad,) = torch.autograd.grad((loss * g.to(device, loss.dtype)).sum(), zd)
    return loss.detach().cpu(), valid.cpu(), grad.cpu()


@pytest.mark.parametrize("d", DIMS, ids=lambda d: f"D{d}")
@pytest.mark.parametrize("layout", list(BAG_LAYOUTS))
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_cuda_matches_the_cpu_on_every_option(precision, layout, d):
    dtype, matmul, rtol = PRECISIONS[precision]
    for seed, (denominator, self_positive, masks, image_ids) in enumerate(MATRIX_OPTIONS):
        p = make_problem(bag_sizes=BAG_LAYOUTS[layout], d=d, num_classes=4, ignore_frac=0.1,
                         seed=seed, masks=masks, num_images=2 if image_ids else 0)
        z = p.embeddings.to(dtype)
        g = upstream(p.n, seed)
        # the CPU in float64 on the very values the GPU gets: the difference is the GPU's error
        cpu = _loss_and_grad(p, z.to(torch.float64), g, denominator, self_positive, "cpu")
        with matmul_precision(matmul):
            cuda = _loss_and_grad(p, z, g, denominator, self_positive, "cuda")
        case = (f"denominator={denominator} self_positive={self_positive} masks={masks} "
                f"image_ids={image_ids}")
        assert torch.equal(cuda[1], cpu[1]), case
        assert cuda[2].dtype == dtype, case
        try:
            assert_matches(cuda[0], cpu[0], rtol)
            assert_matches(cuda[2], cpu[2], rtol)
        except AssertionError as e:
            raise AssertionError(f"{case}: {e}") from None


# ---- autograd and op registration on CUDA ----

@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_gradcheck_with_masks_image_ids_and_bags(denominator):
    p = make_problem(bag_sizes=[9, 0, 1, 14], d=3, num_classes=3, ignore_frac=0.1, seed=7,
                     masks=True, num_images=2)
    z = p.embeddings.cuda().requires_grad_()
    kwargs = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in p.kwargs().items()}
    f = lambda x: pixcon.contrastive_loss(x, p.labels.cuda(), p.bag_offsets.cuda(), temperature=0.5,
                                          denominator=denominator, self_positive=True, **kwargs)[0]
    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_cuda_gradcheck_beyond_one_gradient_chunk():
    # D = 260: the backward splits the gradient's columns into chunks of at most 256
    p = make_problem(n=10, d=260, num_classes=2, seed=8)
    z = p.embeddings.cuda().requires_grad_()
    f = lambda x: pixcon.contrastive_loss(x, p.labels.cuda(), temperature=0.5, denominator="pair")[0]
    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


def _raw_args(p, dtype, denominator, self_positive, requires_grad):
    z = p.embeddings.to(dtype).cuda().requires_grad_(requires_grad)
    cuda = lambda t: None if t is None else t.cuda()
    return (z, p.labels.cuda(), p.bag_offsets.cuda(), cuda(p.anchor_mask), cuda(p.contrast_mask),
            cuda(p.image_ids), 0.1, p.ignore_index, denominator, self_positive)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_opcheck_forward_with_masks_image_ids_and_bags(denominator, dtype):
    p = make_problem(bag_sizes=[7, 0, 1, 70], d=5, num_classes=3, seed=9, masks=True, num_images=2)
    torch.library.opcheck(torch.ops.pixcon.contrastive_loss.default,
                          _raw_args(p, dtype, denominator, True, requires_grad=True))


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_opcheck_backward(denominator):
    p = make_problem(bag_sizes=[7, 0, 1, 70], d=5, num_classes=3, seed=10, masks=True,
                     num_images=2)
    args = _raw_args(p, torch.float32, denominator, False, requires_grad=False)
    loss, valid, stats = torch.ops.pixcon.contrastive_loss(*args)
    grad_loss = upstream(p.n).to(device="cuda", dtype=loss.dtype)
    backward_args = (grad_loss, *args[:6], stats, *args[6:])
    torch.library.opcheck(torch.ops.pixcon.contrastive_loss_backward.default, backward_args)


# ---- training-step contracts ----

def test_a_training_step_captured_in_a_cuda_graph_replays_like_eager():
    torch.manual_seed(0)
    n, channels, d = 600, 16, 32
    offsets = torch.tensor([0, 250, 600], device="cuda")
    model = torch.nn.Sequential(torch.nn.Linear(channels, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, d)).cuda()
    eager_model = copy.deepcopy(model)
    batches = [(torch.randn(n, channels, device="cuda"), torch.randint(0, 5, (n,), device="cuda"))
               for _ in range(6)]

    def loss_of(m, x, y):
        loss, valid = pixcon.contrastive_loss(F.normalize(m(x), dim=1), y, offsets, temperature=0.1)
        return pixcon.reduce_loss(loss, valid, offsets)

    def train_step(m, opt, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(m, x, y)
        loss.backward()
        opt.step()
        return loss

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    eager_opt = torch.optim.SGD(eager_model.parameters(), lr=0.1)
    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            train_step(model, opt, static_x, static_y)
    torch.cuda.current_stream().wait_stream(side)
    for _ in range(3):
        train_step(eager_model, eager_opt, *batches[0])

    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = loss_of(model, static_x, static_y)
        static_loss.backward()
        opt.step()

    for x, y in batches[1:]:
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        eager_loss = train_step(eager_model, eager_opt, x, y)
        torch.testing.assert_close(static_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for p_graph, p_eager in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(p_graph, p_eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_is_bitwise_reproducible(dtype):
    p = make_problem(bag_sizes=[300, 0, 1, 700], d=300, num_classes=5, ignore_frac=0.1, seed=11,
                     masks=True, num_images=2)
    g = upstream(p.n)
    runs = [_loss_and_grad(p, p.embeddings.to(dtype), g, "pair", False, "cuda")[2]
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("offsets", ["tensor", "none"], ids=["bag_offsets", "one_bag_default"])
@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_forward_and_backward_never_synchronise_with_the_host(denominator, offsets):
    p = make_problem(bag_sizes=[200, 0, 1, 500], d=64, num_classes=5, ignore_frac=0.1, seed=12,
                     masks=True, num_images=2)
    z = p.embeddings.float().cuda().requires_grad_()
    labels, bag_offsets = p.labels.cuda(), p.bag_offsets.cuda() if offsets == "tensor" else None
    masks = {k: v.cuda() for k, v in p.kwargs().items() if isinstance(v, torch.Tensor)}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, valid = pixcon.contrastive_loss(z, labels, bag_offsets, denominator=denominator,
                                              **masks)
        (grad,) = torch.autograd.grad(loss.sum(), z)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_one_bag_of_262144_rows_at_d256_runs_in_o_n_d_memory(dtype):
    n, d = 262144, 256  # a 512 x 512 feature map in one bag
    z = F.normalize(torch.randn(n, d, device="cuda"), dim=1).to(dtype).requires_grad_()
    y = torch.randint(0, 19, (n,), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with matmul_precision("ieee"):
        loss, valid = pixcon.contrastive_loss(z, y)
        loss.sum().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert bool(valid.all()) and bool(torch.isfinite(loss).all())
    assert bool(torch.isfinite(z.grad).all())
    # a few [N, D] float32 copies (1 GiB); the N x N float32 matrix would be 256 GiB
    assert peak < 4 * n * d * 4, f"peak {peak / 2**30:.2f} GiB"


BAD_INPUTS = {
    "negative_label": "labels[17] = -3",
    "decreasing_bag_offsets": "offsets = torch.tensor([0, 200, 100, 300], device='cuda')",
    "bag_offsets_short_of_n": "offsets = torch.tensor([0, 100, 250], device='cuda')",
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
def test_bad_labels_or_offsets_raise_a_device_side_assert(bad):
    # in a child process: a device-side assert leaves its CUDA context unusable
    script = textwrap.dedent(f"""
        import torch, pixcon
        z = torch.randn(300, 8, device="cuda")
        labels = torch.randint(0, 3, (300,), device="cuda")
        offsets = torch.tensor([0, 120, 300], device="cuda")
        {BAD_INPUTS[bad]}
        loss, valid = pixcon.contrastive_loss(z, labels, offsets)
        torch.cuda.synchronize()
        print("no error")
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no error" not in output, output[-2000:]
    assert "device-side assert" in output.lower(), output[-2000:]


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_cuda_auxiliary_labels_equal_the_cpu_bit_for_bit(init):
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(4, 24, 17, 19, generator=g)
    mask = torch.rand(4, 17, 19, generator=g) > 0.1
    cpu = pixcon.auxiliary_labels(maps, 12, valid_mask=mask, seed=5, init=init)
    gpu = pixcon.auxiliary_labels(maps.cuda(), 12, valid_mask=mask.cuda(), seed=5, init=init)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


def test_cuda_auxiliary_labels_never_synchronise_with_the_host():
    maps = torch.randn(2, 16, 33, 33, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        labels, centroids = pixcon.auxiliary_labels(maps, 8)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert labels.shape == (2, 33, 33) and centroids.shape == (8, 16)


def test_cuda_auxiliary_labels_of_266256_rows_d256_k256_fit_in_o_n_d_memory():
    features = torch.randn(16, 256, 129, 129, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    pixcon.auxiliary_labels(features, 256, iterations=2, restarts=1, ignore_index=-1)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base < 1.5 * features.numel() * 4


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_cuda_non_finite_values_propagate_as_on_the_cpu(denominator):
    p = make_problem(bag_sizes=[20, 20, 20], d=8, num_classes=3, seed=3)
    z = p.embeddings.float().clone()
    z[25, 3] = float("nan")
    z[45, 1] = float("inf")
    labels = p.labels.clone()
    labels[45] = p.ignore_index  # an ignored row changes nothing, whatever its values
    runs = []
    for device in ("cpu", "cuda"):
        zd = z.to(device).requires_grad_()
        loss, valid = pixcon.contrastive_loss(zd, labels.to(device), p.bag_offsets.to(device), denominator=denominator)
        (grad,) = torch.autograd.grad(loss.sum(), zd)
        runs.append((loss.cpu(), grad.cpu()))
    (cpu_loss, cpu_grad), (gpu_loss, gpu_grad) = runs
    assert torch.equal(cpu_loss.isnan(), gpu_loss.isnan()) and torch.equal(cpu_grad.isfinite(), gpu_grad.isfinite())
    assert torch.isfinite(gpu_loss[40:]).all() and torch.isfinite(gpu_grad[40:]).all()
