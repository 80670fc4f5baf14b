"""pixcon.auxiliary_labels (spherical k-means, docs/design.md section 4b) and
pixcon.auxiliary_label_quality: planted clusters are recovered, the outliers counted exactly, the
labels independent of threads, tiers and memory layout, the quality measures equal pair counting.
The kernels' bit-for-bit agreement with the C reference is tests/c/test_kmeans.c; with the CUDA
kernels under emulation, tests/emulation."""

from __future__ import annotations

import math

import pytest
import torch

import pixcon

IGNORE = 255


def planted(seed: int, n: int = 4000, dim: int = 32, centres: int = 8, outliers: float = 0.05):
    """Unit vectors around `centres` random directions, plus a fraction of far outliers (uniform
    on the sphere), and the true cluster of each (IGNORE for the outliers)."""
    g = torch.Generator().manual_seed(1000 + seed)
    centre = torch.nn.functional.normalize(torch.randn(centres, dim, generator=g), dim=1)
    truth = torch.randint(0, centres, (n,), generator=g)
    x = centre[truth] + 0.08 * torch.randn(n, dim, generator=g)
    far = torch.rand(n, generator=g) < outliers
    x[far] = torch.randn(int(far.sum()), dim, generator=g)
    truth[far] = IGNORE
    return torch.nn.functional.normalize(x, dim=1), truth


def test_planted_clusters_are_recovered_for_at_least_nine_of_ten_seeds():
    good = 0
    for seed in range(10):
        x, truth = planted(seed)
        labels, _ = pixcon.auxiliary_labels(x, 8, seed=seed)
        good += pixcon.auxiliary_label_quality(labels, truth)["purity"] >= 0.99
    assert good >= 9


def test_exactly_floor_of_the_outlier_fraction_is_ignored():
    x, _ = planted(0, n=3333)
    for fraction in (0.0, 0.05, 0.3):
        labels, _ = pixcon.auxiliary_labels(x, 8, outlier_fraction=fraction)
        assert int((labels == IGNORE).sum()) == math.floor(fraction * 3333)


def test_outliers_are_the_pixels_farthest_from_their_centroid():
    x, _ = planted(1)
    kept, centroids = pixcon.auxiliary_labels(x, 8, outlier_fraction=0.0)
    labels, _ = pixcon.auxiliary_labels(x, 8, outlier_fraction=0.1)
    cos = (x * centroids[kept]).sum(1)
    dropped = labels == IGNORE
    assert torch.equal(labels[~dropped], kept[~dropped])
    assert cos[dropped].max() <= cos[~dropped].min() + 1e-6


def test_labels_are_the_nearest_centroid_and_centroids_the_normalised_means():
    x, _ = planted(2)
    labels, centroids = pixcon.auxiliary_labels(x, 8, outlier_fraction=0.0)
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(8))
    cos = x @ centroids.T
    assert torch.equal(labels, cos.argmax(1))
    # the centroids of the last update, before the final assignment: equal to the means of that
    # assignment whenever it did not move any pixel, which converged planted clusters satisfy
    means = torch.zeros(8, 32).index_add(0, labels, x)
    torch.testing.assert_close(centroids, torch.nn.functional.normalize(means, dim=1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_one_seed_gives_the_same_labels_for_one_and_two_threads(init):
    x, _ = planted(3, n=5000)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pixcon.auxiliary_labels(x, 12, seed=7, init=init)
        torch.set_num_threads(2)
        two = pixcon.auxiliary_labels(x, 12, seed=7, init=init)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_every_cpu_tier_gives_the_same_labels():
    x, _ = planted(4, n=3000, dim=40)
    results = []
    for isa in pixcon.available_cpu_isas():
        with pixcon.use_cpu_isa(isa):
            results.append(pixcon.auxiliary_labels(x, 9, seed=3))
    assert len(results) >= 1
    for labels, centroids in results[1:]:
        assert torch.equal(labels, results[0][0]) and torch.equal(centroids, results[0][1])


def test_other_seeds_give_other_initialisations():
    x, _ = planted(5, outliers=0.0)
    a, _ = pixcon.auxiliary_labels(x, 20, seed=0, iterations=0, restarts=1)
    b, _ = pixcon.auxiliary_labels(x, 20, seed=1, iterations=0, restarts=1)
    assert not torch.equal(a, b)


def test_a_feature_map_is_clustered_as_its_pixel_rows():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 16, 7, 9, generator=g)
    labels, centroids = pixcon.auxiliary_labels(maps, 5, seed=2)
    rows, row_centroids = pixcon.auxiliary_labels(maps.permute(0, 2, 3, 1).reshape(-1, 16), 5, seed=2)
    assert labels.shape == (3, 7, 9) and labels.dtype == torch.int64
    assert torch.equal(labels.reshape(-1), rows) and torch.equal(centroids, row_centroids)


def test_channels_last_and_sliced_maps_give_the_labels_of_a_contiguous_copy():
    g = torch.Generator().manual_seed(1)
    big = torch.randn(2, 8, 12, 14, generator=g)
    for view in (big.to(memory_format=torch.channels_last), big[:, :, 2:9, 1:12], big[:, ::2]):
        assert torch.equal(pixcon.auxiliary_labels(view, 4)[0], pixcon.auxiliary_labels(view.contiguous(), 4)[0])


def test_valid_mask_and_degenerate_features_are_ignored():
    x, _ = planted(6, n=1000)
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(0)) > 0.3
    x[5] = 0.0
    x[6, 0] = float("nan")
    x[7, 3] = float("inf")
    labels, _ = pixcon.auxiliary_labels(x, 8, valid_mask=mask, outlier_fraction=0.0)
    excluded = ~mask
    excluded[5:8] = True
    assert bool((labels[excluded] == IGNORE).all())
    assert bool((labels[~excluded] < 8).all())


def test_fewer_valid_pixels_than_clusters_leave_undrawn_centroids_zero_until_reseeded():
    x = torch.nn.functional.normalize(torch.randn(5, 6), dim=1)
    labels, centroids = pixcon.auxiliary_labels(x, 8, iterations=0, outlier_fraction=0.0)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]  # each pixel its own cluster
    assert int((centroids.norm(dim=1) == 0).sum()) == 3
    labels, centroids = pixcon.auxiliary_labels(x, 8, outlier_fraction=0.0)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]  # copies lose ties to the smaller cluster
    assert int((centroids.norm(dim=1) == 0).sum()) == 0  # empty clusters took a pixel each


def test_no_valid_pixel_gives_all_ignored():
    labels, centroids = pixcon.auxiliary_labels(torch.zeros(10, 4), 3)
    assert bool((labels == IGNORE).all()) and bool((centroids == 0).all())


def test_half_precision_features_are_clustered_as_their_float32_values():
    x, _ = planted(7, n=2000)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        low = x.to(dtype)
        assert torch.equal(pixcon.auxiliary_labels(low, 8)[0], pixcon.auxiliary_labels(low.float(), 8)[0])


def test_features_that_require_grad_give_labels_without_a_graph():
    x, _ = planted(8, n=500)
    labels, centroids = pixcon.auxiliary_labels(x.requires_grad_(True), 4)
    assert not centroids.requires_grad and labels.dtype == torch.int64


def test_the_kmeans_op_passes_opcheck():
    x = torch.randn(40, 5)
    mask = torch.rand(40) > 0.2
    torch.library.opcheck(torch.ops.pixcon.kmeans.default, (x, mask, 3, 4, 2, 0.1, "k-means++", 5, IGNORE))
    torch.library.opcheck(torch.ops.pixcon.kmeans.default, (torch.randn(2, 5, 3, 4), None, 3, 2, 1, 0.0, "random", 0, -1))


def test_auxiliary_labels_compile_with_fullgraph():
    x = torch.randn(2, 6, 5, 5)

    @torch.compile(fullgraph=True, backend="eager")
    def label(features):
        return pixcon.auxiliary_labels(features, 4, seed=1)

    compiled = label(x)
    eager = pixcon.auxiliary_labels(x, 4, seed=1)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])


def _pairs_by_brute_force(aux: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Pair precision and recall counting every ordered pair (i, j), i = j included."""
    same_aux = aux[:, None] == aux[None, :]
    same_class = truth[:, None] == truth[None, :]
    both = (same_aux & same_class).sum().item()
    return both / same_aux.sum().item(), both / same_class.sum().item()


@pytest.mark.parametrize("seed", range(5))
def test_quality_equals_brute_force_pair_counting(seed):
    g = torch.Generator().manual_seed(seed)
    aux = torch.randint(0, 6, (300,), generator=g)
    truth = torch.randint(0, 4, (300,), generator=g)
    aux[torch.rand(300, generator=g) < 0.1] = IGNORE
    truth[torch.rand(300, generator=g) < 0.1] = IGNORE
    quality = pixcon.auxiliary_label_quality(aux.reshape(3, 10, 10), truth.reshape(3, 10, 10))
    both = (aux != IGNORE) & (truth != IGNORE)
    precision, recall = _pairs_by_brute_force(aux[both], truth[both])
    assert quality["pair_precision"] == pytest.approx(precision, abs=1e-12)
    assert quality["pair_recall"] == pytest.approx(recall, abs=1e-12)
    majority = sum(torch.bincount(truth[both][aux[both] == k]).max().item() for k in aux[both].unique())
    assert quality["purity"] == pytest.approx(majority / int(both.sum()), abs=1e-12)
    assert quality["pixels"] == int(both.sum())


def test_a_perfect_labelling_has_quality_one_and_a_constant_one_has_recall_one():
    truth = torch.randint(0, 5, (4, 8, 8))
    assert pixcon.auxiliary_label_quality((truth + 3) % 5, truth) == {
        "pair_precision": 1.0, "pair_recall": 1.0, "purity": 1.0, "pixels": 256}
    constant = pixcon.auxiliary_label_quality(torch.zeros_like(truth), truth)
    assert constant["pair_recall"] == 1.0 and constant["pair_precision"] < 1.0


BAD = {
    "features_list": (lambda: pixcon.auxiliary_labels([[1.0]], 2), TypeError, "features"),
    "features_3d": (lambda: pixcon.auxiliary_labels(torch.randn(2, 3, 4), 2), ValueError, "features"),
    "features_int": (lambda: pixcon.auxiliary_labels(torch.ones(4, 3, dtype=torch.int64), 2), TypeError, "features"),
    "num_clusters_zero": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 0), ValueError, "num_clusters"),
    "num_clusters_float": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2.0), TypeError, "num_clusters"),
    "iterations_negative": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, iterations=-1), ValueError,
                            "iterations"),
    "restarts_zero": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, restarts=0), ValueError, "restarts"),
    "outlier_fraction_one": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, outlier_fraction=1.0),
                             ValueError, "outlier_fraction"),
    "ignore_index_a_cluster": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 4, ignore_index=3), ValueError,
                               "ignore_index"),
    "init": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, init="kmeans"), ValueError, "init"),
    "seed_float": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, seed=1.5), TypeError, "seed"),
    "valid_mask_shape": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, valid_mask=torch.ones(5, dtype=torch.bool)),
                         ValueError, "valid_mask"),
    "valid_mask_dtype": (lambda: pixcon.auxiliary_labels(torch.randn(4, 3), 2, valid_mask=torch.ones(4)),
                         TypeError, "valid_mask"),
    "quality_shapes": (lambda: pixcon.auxiliary_label_quality(torch.zeros(4, dtype=torch.int64),
                                                              torch.zeros(5, dtype=torch.int64)), ValueError, "labels"),
    "quality_float": (lambda: pixcon.auxiliary_label_quality(torch.zeros(4), torch.zeros(4, dtype=torch.int64)),
                      TypeError, "aux_labels"),
    "quality_nothing_labelled": (lambda: pixcon.auxiliary_label_quality(torch.full((4,), IGNORE),
                                                                        torch.zeros(4, dtype=torch.int64)),
                                 ValueError, "ignore_index"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_argument_raises_a_python_error_naming_it(case):
    call, kind, name = BAD[case]
    with pytest.raises(kind, match=name) as error:
        call()
    assert ".cpp:" not in str(error.value)
