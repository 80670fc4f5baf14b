"""pixcon.nn.PixelMemoryBank (ContrastiveSeg's per-class memory) and PixelContrastiveLoss with a
bank: FIFO order, pointer arithmetic and capacity against a one-row-at-a-time model, the
segment (mean) queue, buffers, and the loss with the bank's rows as contrast-only rows against
the reference composed by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64
from pixcon import reference
from pixcon.nn import PixelMemoryBank


class FifoModel:
    """The obvious FIFO: one row at a time, at ptr, then ptr + 1 (mod size)."""

    def __init__(self, num_classes: int, size: int) -> None:
        self.size = size
        self.slots = [[None] * size for _ in range(num_classes)]
        self.ptr = [0] * num_classes
        self.count = [0] * num_classes

    def push(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        for row, c in zip(rows, labels.tolist()):
            if c == IGNORE:
                continue
            self.slots[c][self.ptr[c]] = row
            self.ptr[c] = (self.ptr[c] + 1) % self.size
            self.count[c] = min(self.count[c] + 1, self.size)

    def check(self, bank: PixelMemoryBank) -> None:
        assert bank.ptr.tolist() == self.ptr
        assert bank.count.tolist() == self.count
        for c, slots in enumerate(self.slots):
            for k in range(self.count[c]):
                assert torch.equal(bank.queue[c, k], slots[k]), (c, k)


def rows_of(n: int, dim: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def bank(num_classes=3, size=4, dim=3, **kw) -> PixelMemoryBank:
    return PixelMemoryBank(num_classes, size, dim, dtype=torch.float64, **kw)


# ============================================================================ the queue


def test_enqueue_writes_each_class_in_row_order_from_slot_zero():
    b = bank()
    x = rows_of(5)
    b.enqueue(x, torch.tensor([1, 0, 1, 1, 0]))
    assert torch.equal(b.queue[1, :3], x[[0, 2, 3]])
    assert torch.equal(b.queue[0, :2], x[[1, 4]])
    assert b.ptr.tolist() == [2, 3, 0]
    assert b.count.tolist() == [2, 3, 0]


def test_pointer_advances_by_the_number_written_and_wraps():
    b = bank(size=5)
    b.enqueue(rows_of(3, seed=1), torch.zeros(3, dtype=torch.int64))
    second = rows_of(4, seed=2)
    b.enqueue(second, torch.zeros(4, dtype=torch.int64))
    assert b.ptr.tolist()[0] == (3 + 4) % 5
    assert torch.equal(b.queue[0, [3, 4, 0, 1]], second)


def test_oldest_entry_is_overwritten_first():
    b = bank(size=3)
    first = rows_of(3, seed=3)
    b.enqueue(first, torch.zeros(3, dtype=torch.int64))
    newest = rows_of(1, seed=4)
    b.enqueue(newest, torch.zeros(1, dtype=torch.int64))
    assert torch.equal(b.queue[0, 0], newest[0])  # slot of first[0], the oldest
    assert torch.equal(b.queue[0, 1:], first[1:])
    assert b.ptr.tolist()[0] == 1


def test_more_rows_than_capacity_at_once_keeps_the_last_ones():
    b = bank(size=4)
    b.enqueue(rows_of(1, seed=5), torch.zeros(1, dtype=torch.int64))  # ptr 1
    x = rows_of(10, seed=6)
    b.enqueue(x, torch.zeros(10, dtype=torch.int64))
    model = FifoModel(3, 4)
    model.push(rows_of(1, seed=5), torch.zeros(1, dtype=torch.int64))
    model.push(x, torch.zeros(10, dtype=torch.int64))
    model.check(b)
    assert set(map(tuple, b.queue[0].tolist())) == set(map(tuple, x[-4:].tolist()))


def test_fill_count_is_capped_at_the_per_class_capacity():
    b = bank(num_classes=2, size=3)
    for step in range(4):
        b.enqueue(rows_of(2, seed=step), torch.tensor([0, 0]))
    b.enqueue(rows_of(1, seed=9), torch.tensor([1]))
    assert b.count.tolist() == [3, 1]
    _, labels = b.rows()
    assert labels.tolist() == [0, 0, 0, 1]


def test_random_enqueues_match_one_row_at_a_time_fifo():
    g = torch.Generator().manual_seed(7)
    b, model = bank(num_classes=4, size=5), FifoModel(4, 5)
    for step in range(25):
        n = int(torch.randint(0, 13, (1,), generator=g))
        labels = torch.randint(0, 4, (n,), generator=g)
        labels[torch.rand(n, generator=g) < 0.2] = IGNORE
        x = rows_of(n, seed=100 + step)
        b.enqueue(x, labels)
        model.push(x, labels)
        model.check(b)


def test_rows_returns_only_filled_entries_class_by_class():
    b = bank(num_classes=3, size=4)
    x = rows_of(3, seed=8)
    b.enqueue(x, torch.tensor([2, 0, 2]))
    rows, labels = b.rows()
    assert labels.tolist() == [0, 2, 2]
    assert torch.equal(rows, x[[1, 0, 2]])
    assert labels.dtype == torch.int64


def test_empty_bank_has_no_rows():
    rows, labels = bank().rows()
    assert rows.shape == (0, 3) and labels.shape == (0,)


def test_rows_labelled_ignore_index_are_not_enqueued():
    b = bank()
    b.enqueue(rows_of(3, seed=9), torch.tensor([IGNORE, 1, IGNORE]))
    assert b.count.tolist() == [0, 1, 0]


def test_labels_outside_the_classes_raise():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        bank().enqueue(rows_of(2), torch.tensor([0, 3]))


def test_wrong_embedding_width_raises():
    with pytest.raises(ValueError, match="embeddings must be"):
        bank(dim=3).enqueue(rows_of(2, dim=4), torch.tensor([0, 1]))


@pytest.mark.parametrize("kw", [dict(size_per_class=0), dict(num_classes=0), dict(dim=0),
                                dict(segment_size_per_class=-1)])
def test_bad_sizes_raise(kw):
    args = dict(num_classes=2, size_per_class=2, dim=2) | kw
    with pytest.raises(ValueError, match="PixelMemoryBank"):
        PixelMemoryBank(**args)


def test_enqueued_entries_are_detached():
    b = bank()
    x = rows_of(4).requires_grad_(True)
    b.enqueue(x * 2, torch.tensor([0, 1, 2, 0]))
    rows, _ = b.rows()
    assert not b.queue.requires_grad and not rows.requires_grad
    assert torch.equal(rows[0], (x[0] * 2).detach())


def test_segment_queue_holds_the_normalised_mean_per_class_per_image_in_image_order():
    b = bank(num_classes=2, size=8, segment_size_per_class=3)
    x = rows_of(6, seed=10)
    labels = torch.tensor([0, 1, 0, 0, 1, IGNORE])
    images = torch.tensor([4, 4, 4, 1, 1, 1])
    b.enqueue(x, labels, images)
    # class 0: image 1 (row 3), then image 4 (rows 0, 2); class 1: image 1 (row 4), then image 4 (row 1)
    assert_close_f64(b.segment_queue[0, 0], F.normalize(x[3], dim=0))
    assert_close_f64(b.segment_queue[0, 1], F.normalize((x[0] + x[2]) / 2, dim=0))
    assert_close_f64(b.segment_queue[1, 0], F.normalize(x[4], dim=0))
    assert_close_f64(b.segment_queue[1, 1], F.normalize(x[1], dim=0))
    assert b.segment_ptr.tolist() == [2, 2] and b.segment_count.tolist() == [2, 2]
    rows, row_labels = b.rows()
    assert row_labels.tolist() == [0, 0, 0, 1, 1] + [0, 0, 1, 1]  # pixel entries, then segment entries


def test_segment_queue_needs_image_ids():
    with pytest.raises(ValueError, match="image_ids"):
        bank(segment_size_per_class=2).enqueue(rows_of(2), torch.tensor([0, 1]))


def test_buffers_are_in_the_state_dict_and_follow_to():
    b = PixelMemoryBank(2, 3, 4, segment_size_per_class=2)
    assert set(b.state_dict()) == {"queue", "ptr", "count", "segment_queue", "segment_ptr", "segment_count"}
    assert b.queue.dtype == torch.get_default_dtype()
    b64 = b.to(torch.float64)
    assert b64.queue.dtype == torch.float64 and b64.ptr.dtype == torch.int64
    b.enqueue(torch.ones(1, 4, dtype=torch.float64), torch.tensor([1]), torch.tensor([0]))
    restored = PixelMemoryBank(2, 3, 4, segment_size_per_class=2, dtype=torch.float64)
    restored.load_state_dict(b.state_dict())
    assert restored.count.tolist() == [0, 1] and restored.segment_count.tolist() == [0, 1]


def test_reset_empties_the_bank():
    b = bank()
    b.enqueue(rows_of(3), torch.tensor([0, 1, 2]))
    b.reset()
    assert b.count.tolist() == [0, 0, 0] and b.ptr.tolist() == [0, 0, 0]
    assert b.rows()[0].shape[0] == 0


# ============================================================================ with the loss


def seg_inputs(seed=0, b=2, d=3, h=3, w=4, num_classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    y = torch.randint(0, num_classes, (b, h, w), generator=g)
    y[torch.rand(y.shape, generator=g) < 0.15] = IGNORE
    return x, y


def reference_with_bank(x, y, bank_rows, bank_labels, *, variant="image", reduction="mean",
                        denominator="all", temperature=0.07):
    """The loss spelled out: normalise, one bag per image (or for the batch), the bank's rows
    appended to every bag as contrast-only rows (anchor_mask False), the reference loss."""
    b, d, h, w = x.shape
    rows = F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, d)
    labels = y.reshape(-1)
    groups = [slice(i * h * w, (i + 1) * h * w) for i in range(b)] if variant == "image" else [slice(0, b * h * w)]
    parts, part_labels, anchors, offsets, own = [], [], [], [0], []
    for g in groups:
        n, m = g.stop - g.start, bank_rows.shape[0]
        own.append(torch.arange(offsets[-1], offsets[-1] + n))
        parts += [rows[g], bank_rows]
        part_labels += [labels[g], bank_labels]
        anchors += [torch.ones(n, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)]
        offsets.append(offsets[-1] + n + m)
    offsets = torch.tensor(offsets)
    loss, valid = reference.contrastive_loss(
        torch.cat(parts), torch.cat(part_labels), offsets, temperature=temperature,
        denominator=denominator, anchor_mask=torch.cat(anchors))
    if reduction == "none":
        return loss[torch.cat(own)]
    return reference.reduce(loss, valid, offsets, reduction)


def filled_bank(seed=11, num_classes=3, size=5, dim=3):
    b = bank(num_classes=num_classes, size=size, dim=dim)
    b.enqueue(F.normalize(rows_of(12, dim=dim, seed=seed), dim=1),
              torch.randint(0, num_classes, (12,), generator=torch.Generator().manual_seed(seed)))
    return b


@pytest.mark.parametrize("reduction", ["mean", "anchor_mean", "sum", "none"])
@pytest.mark.parametrize("variant", ["image", "batch"])
@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_loss_with_bank_equals_reference_with_bank_rows_as_contrast_only(variant, reduction, denominator):
    x, y = seg_inputs(seed=1)
    b = filled_bank()
    bank_rows, bank_labels = b.rows()
    module = pixcon.nn.PixelContrastiveLoss(variant=variant, reduction=reduction, denominator=denominator,
                                            memory_bank=b).eval()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = module(x1, y)
    expected = reference_with_bank(x2, y, bank_rows, bank_labels, variant=variant, reduction=reduction,
                                   denominator=denominator)
    assert_close_f64(out, expected)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (out * g).sum().backward()
    (expected * g).sum().backward()
    assert_close_f64(x1.grad, x2.grad)


def test_bank_rows_never_receive_gradient():
    x, y = seg_inputs(seed=3)
    b = filled_bank()
    module = pixcon.nn.PixelContrastiveLoss(variant="batch", memory_bank=b)
    x = x.requires_grad_(True)
    module(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, buffer in b.named_buffers():
        assert not buffer.requires_grad and buffer.grad is None, name
    assert not any(p.requires_grad for p in module.parameters())


def test_module_enqueues_the_current_rows_after_computing_the_loss():
    x, y = seg_inputs(seed=4)
    b = bank(num_classes=3, size=100)
    module = pixcon.nn.PixelContrastiveLoss(variant="batch", memory_bank=b)
    first = module(x, y)
    assert_close_f64(first, pixcon.nn.PixelContrastiveLoss(variant="batch")(x, y))  # bank was empty
    valid = y.reshape(-1) != IGNORE
    rows = F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, 3)[valid]
    expected = bank(num_classes=3, size=100)
    expected.enqueue(rows, y.reshape(-1)[valid])
    for key, value in expected.state_dict().items():
        assert_close_f64(b.state_dict()[key].double(), value.double())
    second = module(x, y)  # now contrasts with the rows of the first call
    bank_rows, bank_labels = expected.rows()
    assert_close_f64(second, reference_with_bank(x, y, bank_rows, bank_labels, variant="batch"))


def test_module_in_eval_mode_does_not_enqueue():
    x, y = seg_inputs(seed=5)
    b = bank()
    pixcon.nn.PixelContrastiveLoss(memory_bank=b).eval()(x, y)
    assert b.count.sum() == 0


def test_module_enqueues_sampled_rows_with_their_image_for_the_segment_queue():
    x, y = seg_inputs(seed=6, b=3, h=6, w=6)
    sampler = pixcon.PixelSampler("class_balanced", seed=12, min_views=2, max_views=4)
    b = bank(num_classes=3, size=50, segment_size_per_class=10)
    pixcon.nn.PixelContrastiveLoss(sampler=sampler, memory_bank=b)(x, y)
    indices, _ = pixcon.sample_pixels(y, "class_balanced", seed=12, min_views=2, max_views=4)
    rows = F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(-1, 3)[indices]
    expected = bank(num_classes=3, size=50, segment_size_per_class=10)
    expected.enqueue(rows, y.reshape(-1)[indices], indices // 36)
    for key, value in expected.state_dict().items():
        assert_close_f64(b.state_dict()[key].double(), value.double())


def test_module_with_bank_of_other_width_raises():
    x, y = seg_inputs()
    with pytest.raises(ValueError, match="memory bank holds 5-dimensional"):
        pixcon.nn.PixelContrastiveLoss(memory_bank=bank(dim=5))(x, y)


def test_memory_bank_must_be_a_pixel_memory_bank():
    with pytest.raises(ValueError, match="memory_bank must be"):
        pixcon.nn.PixelContrastiveLoss(memory_bank=torch.zeros(3))


def test_bank_is_part_of_the_loss_state_dict():
    module = pixcon.nn.PixelContrastiveLoss(memory_bank=bank())
    assert {"memory_bank.queue", "memory_bank.ptr", "memory_bank.count"} <= set(module.state_dict())


def test_join_keeps_a_contrast_mask_and_makes_bank_rows_contrast_only():
    from pixcon.bags import Bags
    bank = PixelMemoryBank(3, 2, 4)
    bank.enqueue(torch.nn.functional.normalize(torch.randn(3, 4), dim=1), torch.tensor([0, 1, 2]))
    bags = Bags(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 2, 5]),
                contrast=torch.tensor([True, False, True, True, False]))
    joined = bank.join(bags)
    assert joined.offsets.tolist() == [0, 5, 11]
    assert joined.contrast.tolist() == [True, False, True, True, True,
                                        True, True, False, True, True, True]
    assert joined.anchor.tolist() == [True, True, False, False, False,
                                      True, True, True, False, False, False]
    assert joined.origin.tolist() == [0, 1, -1, -1, -1, 2, 3, 4, -1, -1, -1]


def test_join_refuses_bags_restricted_by_image_ids():
    from pixcon.bags import Bags
    bags = Bags(torch.randn(2, 4), torch.tensor([0, 1]), torch.tensor([0, 2]), image_ids=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_ids"):
        PixelMemoryBank(3, 2, 4).join(bags)
