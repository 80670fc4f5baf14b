"""The CPU kernels follow torch.set_num_threads, and the result does not depend on it
(tiles of one round never share rows, so every row accumulates in the same order)."""

import pytest
import torch

import pixcon
import pixcon.reference


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_loss_and_gradient_are_bitwise_equal_for_one_and_two_threads(denominator, restore_threads):
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(700, 32, generator=g), dim=1)
    y = torch.randint(0, 5, (700,), generator=g)
    offsets = torch.tensor([0, 300, 700])
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        zz = z.clone().requires_grad_()
        loss, valid = pixcon.contrastive_loss(zz, y, offsets, denominator=denominator)
        loss.sum().backward()
        results.append((loss, valid, zz.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_grouped_schedule_is_bitwise_equal_for_one_and_two_threads(denominator, restore_threads):
    """3 200 rows make 34 blocks, which the schedule runs in 16 groups of 2 and 3 blocks, two row
    blocks at a time (schedule.h): a group of 3 ends in a single row block."""
    g = torch.Generator().manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(3200, 8, generator=g), dim=1)
    y = torch.randint(0, 7, (3200,), generator=g)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        zz = z.clone().requires_grad_()
        loss, valid = pixcon.contrastive_loss(zz, y, denominator=denominator)
        loss.sum().backward()
        results.append((loss, valid, zz.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_grouped_schedule_visits_every_tile_pair_once(denominator):
    """Groups of unequal sizes and row blocks taken two at a time still cover each tile pair
    I <= J exactly once: loss and gradient match the float64 reference that builds the matrix."""
    g = torch.Generator().manual_seed(2)
    z = torch.nn.functional.normalize(torch.randn(3200, 8, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 7, (3200,), generator=g)
    got_z, want_z = z.clone().requires_grad_(), z.clone().requires_grad_()
    got, got_valid = pixcon.contrastive_loss(got_z, y, denominator=denominator)
    want, want_valid = pixcon.reference.contrastive_loss(want_z, y, denominator=denominator)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(got_valid, want_valid)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_z.grad, want_z.grad, rtol=1e-10, atol=1e-12)


def test_pair_sweep_over_several_bags_and_images_matches_the_reference_on_any_thread_count(restore_threads):
    """"pair"'s second sweep runs over the tile pairs of every bag together, in phases by J - I:
    bags of several blocks, each with two images (rows sorted by image, then label, so a label's
    positives sit in blocks far apart), agree with the float64 reference, bitwise on 1 and 2
    threads."""
    g = torch.Generator().manual_seed(3)
    n = 2100
    z = torch.nn.functional.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 5, (n,), generator=g)
    offsets = torch.tensor([0, 700, 1500, n])
    images = (torch.arange(n) % 2) + 10 * (torch.arange(n) >= 700)
    want_z = z.clone().requires_grad_()
    want, want_valid = pixcon.reference.contrastive_loss(want_z, y, offsets, denominator="pair",
                                                         image_ids=images)
    want.sum().backward()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        zz = z.clone().requires_grad_()
        loss, valid = pixcon.contrastive_loss(zz, y, offsets, denominator="pair", image_ids=images)
        loss.sum().backward()
        results.append((loss, valid, zz.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert torch.equal(results[0][1], want_valid)
    torch.testing.assert_close(results[0][0], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results[0][2], want_z.grad, rtol=1e-10, atol=1e-12)


def _bags_of_odd_and_even_group_counts():
    """Bags of 5, 7, 16 and 34 blocks of 96 rows (the last ones partly filled): 5 and 7 groups
    have a round in which each group sits out, 16 and 34 blocks have 16 groups; one bag holds
    two images."""
    g = torch.Generator().manual_seed(4)
    sizes = [480, 662, 1536, 3214]
    n = sum(sizes)
    z = torch.nn.functional.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 6, (n,), generator=g)
    offsets = torch.tensor([0] + sizes).cumsum(0)
    images = torch.zeros(n, dtype=torch.int64)
    images[480:1142] = torch.arange(662) % 2
    return z, y, offsets, images


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_rounds_without_barriers_give_the_same_bits_on_any_thread_count(denominator, restore_threads):
    """Items of later rounds start while earlier ones run, each waiting only for its two groups:
    1, 2, 3 and 8 threads (more than the cores of a small machine) give the same bits."""
    z, y, offsets, images = _bags_of_odd_and_even_group_counts()
    results = []
    for threads in (1, 2, 3, 8):
        torch.set_num_threads(threads)
        zz = z.float().requires_grad_()
        loss, valid = pixcon.contrastive_loss(zz, y, offsets, denominator=denominator,
                                              image_ids=images)
        loss.sum().backward()
        results.append((loss, valid, zz.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("denominator", ["all", "pair"])
def test_rounds_without_barriers_visit_every_tile_pair_once(denominator, restore_threads):
    """The same bags on 3 threads match the float64 reference that builds the matrices."""
    z, y, offsets, images = _bags_of_odd_and_even_group_counts()
    torch.set_num_threads(3)
    got_z, want_z = z.clone().requires_grad_(), z.clone().requires_grad_()
    got, got_valid = pixcon.contrastive_loss(got_z, y, offsets, denominator=denominator,
                                             image_ids=images)
    want, want_valid = pixcon.reference.contrastive_loss(want_z, y, offsets,
                                                         denominator=denominator, image_ids=images)
    got.sum().backward()
    want.sum().backward()
    assert torch.equal(got_valid, want_valid)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_z.grad, want_z.grad, rtol=1e-10, atol=1e-12)
