"""pixcon.sample_pixels: which pixels enter the contrastive loss.

The expected numbers of pixels come from an independent oracle (:func:`rule_quotas`), the issue's
rules spelled out in numpy from the label maps; the tests then check that the selected pixels of
every (image, class[, hard/easy]) group and every bag are exactly that many, that the choice
within a group is uniformly random (chi-square over many seeds), reproducible (seed, thread
count, device) and safe (no ignored pixel, no duplicate, sorted), and that
PixelContrastiveLoss(sampler=...) is the loss on exactly those rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

import pixcon
import pixcon.nn
from conftest import IGNORE, assert_close_f64

STRATEGIES = ("uniform", "class_balanced", "hard_easy")
ERRORS = (RuntimeError, ValueError, TypeError)
DEFAULTS = {
    "uniform": {"num_samples": 10000},
    "class_balanced": {"min_views": 5, "max_views": 2500, "max_total": 10000},
    "hard_easy": {"max_samples": 1024, "max_views": 100},
}
SEEDS_FOR_UNIFORMITY = 2000
P_MIN = 1e-3

Key = Tuple


# ============================================================================ the oracle (numpy)


def hard_easy_split(n: int, hard: int, easy: int) -> Tuple[int, int]:
    """The issue's split of n views between the hard and easy pixels of a pair, in the words of
    the rule ("has >= n/2" in real division, i.e. 2 * count >= n)."""
    hard_enough, easy_enough = 2 * hard >= n, 2 * easy >= n
    if hard_enough and easy_enough:
        return n // 2, n - n // 2
    if hard_enough:
        return n - easy, easy
    return hard, n - hard


def group_of(strategy: str, labels: np.ndarray, predictions: Optional[np.ndarray], per_image: bool,
             flat_index: int) -> Key:
    """The group a valid pixel belongs to: ("image", b) / ("batch",) for uniform, (b, c) for
    class_balanced, (b, c, "hard"|"easy") for hard_easy."""
    _, h, w = labels.shape
    b = int(flat_index) // (h * w)
    y = int(labels.reshape(-1)[flat_index])
    if strategy == "uniform":
        return ("image", b) if per_image else ("batch",)
    if strategy == "class_balanced":
        return (b, y)
    return (b, y, "hard" if int(predictions.reshape(-1)[flat_index]) != y else "easy")


def rule_quotas(strategy: str, labels: torch.Tensor, predictions: Optional[torch.Tensor] = None, *,
                ignore_index: int = IGNORE, per_image: bool = True, **params: int
                ) -> Tuple[Dict[Key, int], List[int]]:
    """The issue's rules: how many pixels each group must give, and the bag sizes.

    Returns ``(quotas, bag_sizes)``; ``quotas`` maps every non-empty group (see :func:`group_of`)
    to its number of selected pixels (0 included)."""
    params = {**DEFAULTS[strategy], **params}
    lab = labels.cpu().numpy().astype(np.int64)
    pred = None if predictions is None else predictions.cpu().numpy().astype(np.int64)
    num_images = lab.shape[0]
    valid = lab != ignore_index
    if strategy == "uniform":
        k = params["num_samples"]
        if per_image:
            quotas = {("image", b): min(int(valid[b].sum()), k) for b in range(num_images)}
            return quotas, [quotas[("image", b)] for b in range(num_images)]
        quotas = {("batch",): min(int(valid.sum()), k)}
        return quotas, [quotas[("batch",)]]

    pair_counts: Dict[Tuple[int, int], int] = {}
    for b in range(num_images):
        classes, counts = np.unique(lab[b][valid[b]], return_counts=True)
        pair_counts.update({(b, int(c)): int(n) for c, n in zip(classes, counts)})

    if strategy == "class_balanced":
        qualifying = [p for p, n in pair_counts.items() if n >= params["min_views"]]
        v = 0
        if qualifying:
            v = min(min(pair_counts[p] for p in qualifying), params["max_views"],
                    params["max_total"] // len(qualifying))
        quotas = {p: (v if p in qualifying else 0) for p in pair_counts}
        return quotas, [sum(quotas.values())]

    assert strategy == "hard_easy"
    qualifying = [p for p, n in pair_counts.items() if n > params["max_views"]]
    n_views = min(params["max_samples"] // len(qualifying), params["max_views"]) if qualifying else 0
    quotas = {}
    for (b, c), _ in pair_counts.items():
        in_pair = valid[b] & (lab[b] == c)
        hard = int((in_pair & (pred[b] != c)).sum())
        easy = int((in_pair & (pred[b] == c)).sum())
        take_hard, take_easy = hard_easy_split(n_views, hard, easy) if (b, c) in qualifying else (0, 0)
        if hard:
            quotas[(b, c, "hard")] = take_hard
        if easy:
            quotas[(b, c, "easy")] = take_easy
    return quotas, [sum(quotas.values())]


# ============================================================================ helpers


def sample(labels, strategy, predictions=None, **kw):
    return pixcon.sample_pixels(labels, strategy, predictions=predictions, **kw)


def random_case(rng: np.random.Generator, ignore_frac: Optional[float] = None):
    """A random batch of label maps (skewed class frequencies, random size and ignore fraction)
    and predictions that are right for a random fraction of the pixels."""
    b = int(rng.integers(1, 4))
    h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    c = int(rng.integers(1, 7))
    if ignore_frac is None:
        ignore_frac = float(rng.choice([0.0, 1.0, rng.uniform(0, 0.6)], p=[0.3, 0.1, 0.6]))
    probs = rng.dirichlet(np.full(c, 0.7))
    labels = rng.choice(c, size=(b, h, w), p=probs)
    labels[rng.random((b, h, w)) < ignore_frac] = IGNORE
    wrong = rng.random((b, h, w)) < rng.uniform(0, 1)
    predictions = np.where(wrong, (labels + rng.integers(1, max(c, 2), (b, h, w))) % max(c, 1), labels)
    predictions[labels == IGNORE] = rng.integers(0, c, (b, h, w))[labels == IGNORE]
    return torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(predictions.astype(np.int64))


def random_params(rng: np.random.Generator, strategy: str) -> dict:
    if strategy == "uniform":
        return dict(num_samples=int(rng.integers(0, 60)), per_image=bool(rng.integers(0, 2)))
    if strategy == "class_balanced":
        return dict(min_views=int(rng.integers(1, 12)), max_views=int(rng.integers(1, 40)),
                    max_total=int(rng.integers(0, 150)), per_image=bool(rng.integers(0, 2)))
    return dict(max_samples=int(rng.integers(0, 80)), max_views=int(rng.integers(1, 20)))


def check_structure(indices: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor, num_bags: int,
                    ignore_index: int = IGNORE) -> None:
    """Output format: int64, ascending without duplicates, in range, no ignored pixel, CSR bag
    offsets from 0 to M."""
    assert indices.dtype == torch.int64 and offsets.dtype == torch.int64
    assert indices.dim() == 1 and offsets.shape == (num_bags + 1,)
    assert indices.device == labels.device and offsets.device == labels.device
    idx = indices.cpu()
    assert bool((idx[1:] > idx[:-1]).all()), "indices must be strictly ascending (no duplicates)"
    if idx.numel():
        assert 0 <= int(idx[0]) and int(idx[-1]) < labels.numel()
        assert not bool((labels.reshape(-1).cpu()[idx] == ignore_index).any()), "an ignored pixel was selected"
    off = offsets.cpu()
    assert int(off[0]) == 0 and int(off[-1]) == idx.numel()
    assert bool((off[1:] >= off[:-1]).all())


def check_follows_rule(strategy: str, labels, predictions=None, *, seed=0, per_image=True,
                       num_classes=None, **params) -> Tuple[torch.Tensor, torch.Tensor]:
    """Samples and checks structure, the per-group counts and the bag sizes against the oracle."""
    indices, offsets = sample(labels, strategy, predictions if strategy == "hard_easy" else None,
                              seed=seed, per_image=per_image, num_classes=num_classes, **params)
    quotas, bag_sizes = rule_quotas(strategy, labels, predictions, per_image=per_image, **params)
    check_structure(indices, offsets, labels, len(bag_sizes))
    lab = labels.cpu().numpy()
    pred = None if predictions is None else predictions.cpu().numpy()
    got = Counter(group_of(strategy, lab, pred, per_image, i) for i in indices.cpu().tolist())
    expected = {g: q for g, q in quotas.items() if q}
    assert dict(got) == expected, f"per-group counts differ from the rule: got {dict(got)}, expected {expected}"
    assert offsets.diff().cpu().tolist() == bag_sizes
    if strategy == "uniform" and per_image:
        hw = labels.shape[1] * labels.shape[2]
        for b in range(labels.shape[0]):
            bag = indices.cpu()[int(offsets[b]):int(offsets[b + 1])]
            assert bool(((bag // hw) == b).all()), f"bag {b} holds pixels of another image"
    return indices, offsets


def selection_p_value(frequencies: np.ndarray, draws: int, k: int) -> float:
    """Chi-square p-value that ``frequencies[i]`` (times member i of a group of n was selected
    over ``draws`` independent draws of k of the n members without replacement) are uniform.

    One draw's selection indicators have covariance p(1-p) n/(n-1) (I - 11^T/n), p = k/n, so
    sum_i (f_i - draws p)^2 / (draws p (1-p) n/(n-1)) is asymptotically chi-square with n - 1
    degrees of freedom (the plain Pearson statistic would be too lenient by the factor 1-p)."""
    n = len(frequencies)
    assert 0 < k < n, "the group must be sampled partially for the test to mean anything"
    p = k / n
    assert int(frequencies.sum()) == draws * k
    stat = float(((frequencies - draws * p) ** 2).sum()) / (draws * p * (1 - p) * n / (n - 1))
    return float(scipy.stats.chi2.sf(stat, n - 1))


def selection_frequencies(labels, strategy, predictions=None, *, seeds=SEEDS_FOR_UNIFORMITY, **kw) -> np.ndarray:
    freq = np.zeros(labels.numel(), dtype=np.int64)
    for seed in range(seeds):
        indices, _ = sample(labels, strategy, predictions, seed=seed, **kw)
        freq[indices.numpy()] += 1
    return freq


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def big_case(seed: int = 0, b: int = 4, size: int = 97, classes: int = 19):
    """Blob-like label maps (an 8x8 grid of classes upsampled) with 10 % ignored and predictions
    30 % wrong: large enough for several threads to share the work."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (b, 1, 8, 8), generator=g).float()
    labels = F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
    wrong = torch.rand(labels.shape, generator=g) < 0.3
    predictions = torch.where(wrong, (labels + torch.randint(1, classes, labels.shape, generator=g)) % classes, labels)
    labels[torch.rand(labels.shape, generator=g) < 0.1] = IGNORE
    return labels, predictions


# "small" parameters that make every strategy select a strict subset of the big case's pixels
BIG_PARAMS = {
    "uniform": dict(num_samples=500),
    "class_balanced": dict(min_views=5, max_views=200, max_total=4000),
    "hard_easy": dict(max_samples=1024, max_views=100),
}


# ============================================================================ counts follow the rules


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_counts_per_group_and_bag_follow_the_rule_on_random_label_maps(strategy):
    rng = np.random.default_rng(1000 + STRATEGIES.index(strategy))
    for case in range(300):
        labels, predictions = random_case(rng)
        params = random_params(rng, strategy)
        check_follows_rule(strategy, labels, predictions, seed=case, **params)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_counts_follow_the_rule_with_default_parameters_on_large_maps(strategy):
    for seed in range(3):
        labels, predictions = big_case(seed)
        check_follows_rule(strategy, labels, predictions, seed=seed)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("ignore_frac", [0.0, 1.0], ids=["nothing_ignored", "everything_ignored"])
def test_counts_follow_the_rule_at_ignore_fraction_extremes(strategy, ignore_frac):
    rng = np.random.default_rng(7 + int(ignore_frac))
    for case in range(40):
        labels, predictions = random_case(rng, ignore_frac=ignore_frac)
        check_follows_rule(strategy, labels, predictions, seed=case, **random_params(rng, strategy))


def test_uniform_takes_num_samples_per_image_or_all_valid_pixels_when_fewer():
    labels = torch.full((3, 4, 5), IGNORE)
    labels[0].view(-1)[:20] = 1  # 20 valid
    labels[1].view(-1)[:7] = 2  # 7 valid
    # image 2: none valid
    indices, offsets = sample(labels, "uniform", num_samples=10, seed=0)
    assert offsets.tolist() == [0, 10, 17, 17]


def test_uniform_without_per_image_takes_num_samples_from_the_whole_batch_in_one_bag():
    labels = torch.zeros(3, 4, 5, dtype=torch.int64)
    labels[1] = IGNORE
    indices, offsets = check_follows_rule("uniform", labels, per_image=False, num_samples=25)
    assert offsets.tolist() == [0, 25]


@pytest.mark.parametrize(("counts", "params", "v"), [
    ([8, 12, 30], dict(min_views=5, max_views=100, max_total=1000), 8),   # smallest qualifying count
    ([8, 12, 30], dict(min_views=10, max_views=100, max_total=1000), 12),  # 8 does not qualify
    ([8, 12, 30], dict(min_views=5, max_views=6, max_total=1000), 6),     # max_views
    ([8, 12, 30], dict(min_views=5, max_views=100, max_total=20), 6),     # max_total // 3
    ([8, 12, 30], dict(min_views=8, max_views=100, max_total=1000), 8),   # exactly min_views qualifies
    ([8, 12, 30], dict(min_views=31, max_views=100, max_total=1000), 0),  # nothing qualifies
], ids=["smallest_count", "min_views_excludes", "max_views", "max_total", "min_views_inclusive", "none"])
def test_class_balanced_takes_the_same_number_v_from_every_qualifying_class(counts, params, v):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))].reshape(1, 1, -1)
    indices, offsets = check_follows_rule("class_balanced", labels, **params)
    per_class = Counter(labels.reshape(-1)[indices].tolist())
    assert dict(per_class) == {c: v for c, n in enumerate(counts) if n >= params["min_views"] and v}


def test_class_balanced_pairs_are_per_image_and_the_result_is_one_bag():
    labels = torch.zeros(2, 4, 4, dtype=torch.int64)
    labels[0, :2] = 1  # image 0: class 0 x8, class 1 x8
    labels[1, 0, 0] = 1  # image 1: class 0 x15, class 1 x1 (below min_views)
    for per_image in (True, False):
        indices, offsets = check_follows_rule("class_balanced", labels, per_image=per_image, min_views=2)
        assert offsets.tolist() == [0, 24]  # V = min(8, 8, 15) = 8 from each of the 3 pairs


def test_hard_easy_qualifies_classes_with_more_than_max_views_pixels():
    labels = torch.cat([torch.zeros(10), torch.ones(11), torch.full((4,), IGNORE)]).long().reshape(1, 1, 25)
    predictions = torch.zeros_like(labels)
    indices, offsets = check_follows_rule("hard_easy", labels, predictions, max_views=10, max_samples=100)
    assert set(labels.reshape(-1)[indices].tolist()) == {1}  # 10 pixels of class 0: not more than 10
    assert offsets.tolist() == [0, 10]


def test_hard_easy_shares_max_samples_between_the_qualifying_pairs():
    labels = torch.arange(4).repeat_interleave(30).reshape(2, 2, 30)  # 4 pairs of 30 pixels
    predictions = labels.clone()
    predictions[..., ::2] = 9
    _, offsets = check_follows_rule("hard_easy", labels, predictions, max_views=20, max_samples=50)
    assert offsets.tolist() == [0, 4 * 12]  # n = min(50 // 4, 20) = 12


def _pair(hard: int, easy: int):
    """One image, one class: ``hard`` mispredicted and ``easy`` right pixels, shuffled."""
    labels = torch.zeros(1, 1, hard + easy, dtype=torch.int64)
    predictions = torch.cat([torch.ones(hard), torch.zeros(easy)]).long()
    predictions = predictions[torch.randperm(hard + easy, generator=torch.Generator().manual_seed(hard))]
    return labels, predictions.reshape(1, 1, -1)


@pytest.mark.parametrize(("hard", "easy", "n", "want_hard", "want_easy"), [
    (12, 18, 10, 5, 5),   # both sides have >= n/2: n//2 hard, the rest easy
    (12, 18, 11, 5, 6),   # odd n: the extra view goes to the easy side
    (5, 20, 10, 5, 5),    # 2 * hard == n counts as enough
    (3, 27, 10, 3, 7),    # hard short: all hard, n - hard easy
    (0, 30, 10, 0, 10),   # no hard pixel at all
    (27, 3, 10, 7, 3),    # easy short: all easy, n - easy hard
    (25, 5, 11, 6, 5),    # easy short by half a view (2 * 5 < 11): 6 hard, not n//2 = 5
    (30, 0, 10, 10, 0),   # no easy pixel at all
], ids=["balanced", "odd_n", "hard_exactly_half", "hard_short", "no_hard", "easy_short",
        "easy_short_by_half", "no_easy"])
def test_hard_easy_split_follows_the_rule_including_fallbacks(hard, easy, n, want_hard, want_easy):
    labels, predictions = _pair(hard, easy)
    assert hard_easy_split(n, hard, easy) == (want_hard, want_easy)  # the oracle agrees with the table
    for seed in range(5):
        indices, offsets = check_follows_rule("hard_easy", labels, predictions, seed=seed, max_views=n,
                                              max_samples=1000)
        is_hard = (predictions.reshape(-1)[indices] != labels.reshape(-1)[indices])
        assert (int(is_hard.sum()), int((~is_hard).sum())) == (want_hard, want_easy)


def test_hard_easy_split_follows_the_rule_on_random_hard_fractions():
    rng = np.random.default_rng(5)
    for case in range(150):
        total = int(rng.integers(2, 60))
        hard = int(rng.integers(0, total + 1))
        labels, predictions = _pair(hard, total - hard)
        check_follows_rule("hard_easy", labels, predictions, seed=case, max_views=int(rng.integers(1, total)),
                           max_samples=int(rng.integers(0, 80)))


def test_num_classes_larger_than_the_labels_changes_nothing():
    labels, predictions = big_case(3, b=2, size=33, classes=5)
    for strategy in STRATEGIES:
        pred = predictions if strategy == "hard_easy" else None
        a = sample(labels, strategy, pred, seed=4, **BIG_PARAMS[strategy])
        b = sample(labels, strategy, pred, seed=4, num_classes=40, **BIG_PARAMS[strategy])
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8], ids=str)
def test_any_integer_label_dtype_gives_the_same_pixels_as_int64(dtype):
    labels, predictions = big_case(4, b=2, size=33, classes=5)
    for strategy in STRATEGIES:
        pred = predictions if strategy == "hard_easy" else None
        a = sample(labels, strategy, pred, seed=2, **BIG_PARAMS[strategy])
        b = sample(labels.to(dtype), strategy, None if pred is None else pred.to(dtype), seed=2,
                   **BIG_PARAMS[strategy])
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_non_contiguous_labels_give_the_same_pixels_as_contiguous():
    labels, predictions = big_case(5, b=2, size=33, classes=5)
    lt, pt = labels.transpose(1, 2).contiguous().transpose(1, 2), predictions.transpose(1, 2).contiguous().transpose(1, 2)
    assert not lt.is_contiguous()
    for strategy in STRATEGIES:
        a = sample(labels, strategy, predictions if strategy == "hard_easy" else None, seed=1, **BIG_PARAMS[strategy])
        b = sample(lt, strategy, pt if strategy == "hard_easy" else None, seed=1, **BIG_PARAMS[strategy])
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_custom_ignore_index_is_never_sampled_and_255_becomes_an_ordinary_class():
    labels = torch.tensor([[[0, 0, 255, 255, -1, -1, 0, 255]]])
    indices, offsets = sample(labels, "uniform", ignore_index=-1, num_samples=100)
    assert indices.tolist() == [0, 1, 2, 3, 6, 7]


# ============================================================================ uniformity


def test_uniform_selection_is_uniform_over_the_valid_pixels_of_each_image():
    labels = torch.zeros(2, 5, 6, dtype=torch.int64)
    labels[0, 0, :4] = IGNORE  # image 0: 26 valid; image 1: 30 valid
    labels[1, 2] = 3
    freq = selection_frequencies(labels, "uniform", num_samples=7)
    valid = (labels.reshape(-1) != IGNORE).numpy()
    assert freq[~valid].sum() == 0
    for b in range(2):
        members = np.flatnonzero(valid & (np.arange(60) // 30 == b))
        assert selection_p_value(freq[members], SEEDS_FOR_UNIFORMITY, 7) > P_MIN


def test_uniform_selection_over_the_batch_is_uniform_over_all_valid_pixels():
    labels = torch.zeros(2, 4, 5, dtype=torch.int64)
    labels[1, 0] = IGNORE
    freq = selection_frequencies(labels, "uniform", num_samples=9, per_image=False)
    members = np.flatnonzero((labels.reshape(-1) != IGNORE).numpy())
    assert selection_p_value(freq[members], SEEDS_FOR_UNIFORMITY, 9) > P_MIN


def test_class_balanced_selection_is_uniform_within_each_class():
    counts = [12, 7, 20]  # V = 7: class 1 always whole, classes 0 and 2 sampled
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))].reshape(1, 3, 13)
    freq = selection_frequencies(labels, "class_balanced", min_views=5)
    flat = labels.reshape(-1).numpy()
    assert (freq[flat == 1] == SEEDS_FOR_UNIFORMITY).all()
    for c in (0, 2):
        assert selection_p_value(freq[flat == c], SEEDS_FOR_UNIFORMITY, 7) > P_MIN


def test_hard_easy_selection_is_uniform_within_each_side_of_each_pair():
    labels, predictions = _pair(12, 18)  # n = 10: 5 hard of 12, 5 easy of 18
    labels = torch.cat([labels, torch.ones_like(labels)], 2)  # a second class, mirrored: 18 hard, 12 easy
    predictions = torch.cat([predictions, 1 - predictions], 2)
    freq = selection_frequencies(labels, "hard_easy", predictions, max_views=10)
    flat, pred = labels.reshape(-1).numpy(), predictions.reshape(-1).numpy()
    for c in (0, 1):
        for hard in (True, False):
            members = np.flatnonzero((flat == c) & ((pred != flat) == hard))
            assert selection_p_value(freq[members], SEEDS_FOR_UNIFORMITY, 5) > P_MIN


# ============================================================================ reproducibility


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_gives_the_same_pixels_with_one_and_two_threads(strategy, restore_threads):
    labels, predictions = big_case(6)
    results = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        results.append(sample(labels, strategy, predictions if strategy == "hard_easy" else None, seed=11,
                              **BIG_PARAMS[strategy]))
    for indices, offsets in results[1:]:
        assert torch.equal(indices, results[0][0]) and torch.equal(offsets, results[0][1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_gives_the_same_pixels_on_repeated_calls(strategy):
    labels, predictions = big_case(7)
    pred = predictions if strategy == "hard_easy" else None
    first = sample(labels, strategy, pred, seed=5, **BIG_PARAMS[strategy])
    for _ in range(3):
        again = sample(labels, strategy, pred, seed=5, **BIG_PARAMS[strategy])
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_different_seeds_give_different_pixels(strategy):
    labels, predictions = big_case(8)
    pred = predictions if strategy == "hard_easy" else None
    picks = [sample(labels, strategy, pred, seed=s, **BIG_PARAMS[strategy]) for s in (0, 1, 2**40 + 1)]
    for i in range(len(picks)):
        for j in range(i + 1, len(picks)):
            assert torch.equal(picks[i][1], picks[j][1])  # same counts (the rule) ...
            assert not torch.equal(picks[i][0], picks[j][0])  # ... different pixels


def test_the_seed_keys_the_pixel_not_the_call_so_an_image_alone_gets_the_same_pixels():
    """Counter-based randomness keyed by (seed, flat pixel index): uniform sampling of one
    image of a per-image batch depends only on that image's pixels and their flat indices."""
    labels, _ = big_case(9, b=2, size=40)
    both, offsets = sample(labels, "uniform", seed=3, num_samples=100)
    alone, _ = sample(labels[:1], "uniform", seed=3, num_samples=100)
    assert torch.equal(both[:int(offsets[1])], alone)


# ============================================================================ nothing qualifies


@pytest.mark.parametrize(("strategy", "params", "labels_kind"), [
    ("uniform", {}, "all_ignored"),
    ("uniform", dict(num_samples=0), "random"),
    ("class_balanced", {}, "all_ignored"),
    ("class_balanced", dict(min_views=10**6), "random"),
    ("class_balanced", dict(max_total=0), "random"),
    ("hard_easy", {}, "all_ignored"),
    ("hard_easy", dict(max_views=10**6), "random"),
    ("hard_easy", dict(max_samples=0), "random"),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()) or "defaults")
@pytest.mark.parametrize("per_image", [True, False], ids=["per_image", "batch"])
def test_nothing_qualifies_gives_empty_indices_and_zero_offsets(strategy, params, labels_kind, per_image):
    labels, predictions = big_case(10, b=3, size=17, classes=4)
    if labels_kind == "all_ignored":
        labels = torch.full_like(labels, IGNORE)
    indices, offsets = sample(labels, strategy, predictions if strategy == "hard_easy" else None,
                              per_image=per_image, **params)
    num_bags = 3 if strategy == "uniform" and per_image else 1
    assert indices.shape == (0,) and indices.dtype == torch.int64
    assert offsets.tolist() == [0] * (num_bags + 1)


def test_empty_batch_gives_empty_indices():
    for strategy in STRATEGIES:
        labels = torch.zeros(0, 4, 4, dtype=torch.int64)
        indices, offsets = sample(labels, strategy, labels if strategy == "hard_easy" else None)
        assert indices.numel() == 0 and int(offsets[-1]) == 0


def test_loss_on_an_empty_selection_is_attached_zero_with_zero_gradient():
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 5, 5), IGNORE, dtype=torch.int64)
    indices, offsets = pixcon.sample_pixels(labels, "class_balanced")
    rows = x.permute(0, 2, 3, 1).reshape(-1, 4)[indices]
    loss, valid = pixcon.contrastive_loss(rows, labels.reshape(-1)[indices], offsets)
    out = pixcon.reduce_loss(loss, valid, offsets)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert (x.grad == 0).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_module_with_a_sampler_that_selects_nothing_returns_attached_zero_with_zero_gradient(strategy):
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    labels = torch.full((2, 5, 5), IGNORE, dtype=torch.int64)
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler(strategy, seed=0))
    out = loss_fn(x, labels, labels if strategy == "hard_easy" else None)
    assert out.dim() == 0 and out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


# ============================================================================ errors


@pytest.fixture
def small():
    labels, predictions = big_case(12, b=2, size=9, classes=3)
    return labels, predictions


def test_unknown_strategy_is_rejected(small):
    with pytest.raises(ERRORS, match="strategy"):
        sample(small[0], "stratified")


def test_hard_easy_without_predictions_is_rejected(small):
    with pytest.raises(ERRORS, match="predictions"):
        sample(small[0], "hard_easy")


@pytest.mark.parametrize(("strategy", "name"), [
    ("uniform", "num_sample"), ("class_balanced", "min_view"), ("hard_easy", "max_sample"),
    ("uniform", "max_views"), ("class_balanced", "num_samples"), ("hard_easy", "max_total"),
], ids=["uniform-typo", "class_balanced-typo", "hard_easy-typo", "uniform-other_rule",
        "class_balanced-other_rule", "hard_easy-other_rule"])
def test_unknown_rule_parameter_names_are_rejected_by_name(small, strategy, name):
    labels, predictions = small
    with pytest.raises(ERRORS, match=name):
        sample(labels, strategy, predictions if strategy == "hard_easy" else None, **{name: 5})


@pytest.mark.parametrize(("strategy", "name", "value"), [
    ("uniform", "num_samples", -1),
    ("class_balanced", "min_views", 0),
    ("class_balanced", "max_views", 0),
    ("class_balanced", "max_total", -1),
    ("hard_easy", "max_views", 0),
    ("hard_easy", "max_samples", -1),
])
def test_bad_rule_parameter_values_are_rejected_by_name(small, strategy, name, value):
    labels, predictions = small
    with pytest.raises(ERRORS, match=name):
        sample(labels, strategy, predictions if strategy == "hard_easy" else None, **{name: value})


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bad", [3, 7, -1], ids=["equal_num_classes", "above", "negative"])
def test_labels_outside_num_classes_are_rejected(small, strategy, bad):
    labels, predictions = small
    labels = labels.clone()
    labels[1, 4, 4] = bad
    with pytest.raises(ERRORS, match="labels"):
        sample(labels, strategy, predictions if strategy == "hard_easy" else None, num_classes=3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_negative_labels_are_rejected_with_num_classes_inferred(small, strategy):
    labels, predictions = small
    labels = labels.clone()
    labels[0, 0, 0] = -3
    with pytest.raises(ERRORS, match="labels"):
        sample(labels, strategy, predictions if strategy == "hard_easy" else None)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape", [(9, 9), (2, 1, 9, 9), (81,)], ids=["2d", "4d", "1d"])
def test_labels_of_the_wrong_ndim_are_rejected(small, strategy, shape):
    labels, predictions = small
    source = lambda t: t[0] if t[0].numel() == int(np.prod(shape)) else t
    with pytest.raises(ERRORS, match="labels"):
        sample(source(labels).reshape(shape), strategy,
               source(predictions).reshape(shape) if strategy == "hard_easy" else None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_non_integer_labels_are_rejected(small, dtype):
    with pytest.raises(ERRORS, match="labels"):
        sample(small[0].to(dtype), "uniform")


@pytest.mark.parametrize("shape", [(2, 9, 8), (1, 9, 9), (2, 81)], ids=["width", "batch", "ndim"])
def test_predictions_of_another_shape_than_labels_are_rejected(small, shape):
    labels, _ = small
    with pytest.raises(ERRORS, match="predictions"):
        sample(labels, "hard_easy", torch.zeros(shape, dtype=torch.int64))


def test_float_predictions_are_rejected(small):
    labels, predictions = small
    with pytest.raises(ERRORS, match="predictions"):
        sample(labels, "hard_easy", predictions.float())


def test_unknown_strategy_in_a_pixel_sampler_is_rejected():
    with pytest.raises(ERRORS, match="strategy"):
        pixcon.PixelSampler("stratified")


def test_unknown_rule_parameter_in_a_sampler_dict_is_rejected():
    x = torch.randn(1, 3, 4, 4)
    y = torch.zeros(1, 4, 4, dtype=torch.int64)
    with pytest.raises(ERRORS, match="num_sample"):
        pixcon.nn.PixelContrastiveLoss(sampler={"strategy": "uniform", "num_sample": 5})(x, y)


# ============================================================================ module integration


def seg_batch(seed=0, b=2, d=6, h=9, w=10, classes=3, label_hw=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, h, w, generator=g, dtype=dtype)
    lh, lw = label_hw or (h, w)
    y = torch.randint(0, classes, (b, lh, lw), generator=g)
    p = torch.where(torch.rand(y.shape, generator=g) < 0.3, (y + 1) % classes, y)
    y[torch.rand(y.shape, generator=g) < 0.1] = IGNORE
    return x, y, p


def by_hand(x, y, strategy, p=None, *, seed, per_image=True, temperature=0.07, **params):
    """The sampled loss composed from the public pieces: nearest resize of labels (and
    predictions) to the feature size, sample_pixels, then the loss on the selected rows."""
    b, d, h, w = x.shape
    resize = lambda t: F.interpolate(t[:, None].double(), size=(h, w), mode="nearest")[:, 0].long()
    y = resize(y) if y.shape[-2:] != (h, w) else y
    if p is not None and p.shape[-2:] != (h, w):
        p = resize(p)
    indices, offsets = pixcon.sample_pixels(y, strategy, predictions=p, seed=seed, per_image=per_image, **params)
    rows = F.normalize(x, dim=1).permute(0, 2, 3, 1).reshape(b * h * w, d)[indices]
    loss, valid = pixcon.contrastive_loss(rows, y.reshape(-1)[indices], offsets, temperature=temperature)
    return pixcon.reduce_loss(loss, valid, offsets), indices


MODULE_CASES = [
    ("uniform", dict(num_samples=25), True),
    ("uniform", dict(num_samples=40), False),
    ("class_balanced", dict(min_views=3, max_views=20, max_total=60), True),
    ("hard_easy", dict(max_samples=40, max_views=10), True),
]


@pytest.mark.parametrize(("strategy", "params", "per_image"), MODULE_CASES,
                         ids=[f"{s}-per_image={pi}" for s, _, pi in MODULE_CASES])
def test_module_loss_and_gradient_equal_the_loss_on_the_sampled_rows_by_hand(strategy, params, per_image):
    x, y, p = seg_batch(20)
    p = p if strategy == "hard_easy" else None
    x1 = x.clone().requires_grad_(True)
    sampler = pixcon.PixelSampler(strategy, seed=17, per_image=per_image, **params)
    out = pixcon.nn.PixelContrastiveLoss(sampler=sampler)(x1, y, p)
    x2 = x.clone().requires_grad_(True)
    expected, indices = by_hand(x2, y, strategy, p, seed=17, per_image=per_image, **params)
    assert 0 < indices.numel() < y.numel()
    assert out.dtype == torch.float64 and out.item() > 0
    assert_close_f64(out, expected)
    out.backward()
    expected.backward()
    assert_close_f64(x1.grad, x2.grad)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_module_resizes_labels_and_predictions_to_the_feature_size_before_sampling(strategy):
    x, _, _ = seg_batch(21, h=6, w=7)
    _, y, p = seg_batch(22, h=6, w=7, label_hw=(12, 14))
    p = p if strategy == "hard_easy" else None
    params = dict(max_views=3, max_samples=30) if strategy == "hard_easy" else {}
    out = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler(strategy, seed=4, **params))(x, y, p)
    expected, _ = by_hand(x, y, strategy, p, seed=4, **params)
    assert_close_f64(out, expected)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_module_accepts_a_dict_sampler_equal_to_the_pixel_sampler(strategy):
    x, y, p = seg_batch(23)
    p = p if strategy == "hard_easy" else None
    params = {"uniform": dict(num_samples=30), "class_balanced": dict(min_views=2),
              "hard_easy": dict(max_views=5, max_samples=40)}[strategy]
    x1 = x.clone().requires_grad_(True)
    a = pixcon.nn.PixelContrastiveLoss(sampler={"strategy": strategy, "seed": 9, **params})(x1, y, p)
    x2 = x.clone().requires_grad_(True)
    b = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler(strategy, seed=9, **params))(x2, y, p)
    assert a.item() > 0
    assert_close_f64(a, b)
    a.backward()
    b.backward()
    assert torch.isfinite(x1.grad).all() and x1.grad.abs().sum() > 0
    assert_close_f64(x1.grad, x2.grad)


def test_module_with_hard_easy_sampler_requires_predictions():
    x, y, _ = seg_batch(24)
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler("hard_easy", seed=0))
    with pytest.raises(ERRORS, match="predictions"):
        loss_fn(x, y)


def test_module_sampler_without_seed_is_reproducible_under_torch_manual_seed():
    x, y, _ = seg_batch(25, h=16, w=16)
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler("uniform", num_samples=20))
    torch.manual_seed(123)
    first, second = loss_fn(x, y), loss_fn(x, y)
    torch.manual_seed(123)
    again = loss_fn(x, y)
    assert first.item() == again.item()
    assert first.item() != second.item()  # a fresh seed per call


def test_module_with_sampler_trains_in_float32():
    x, y, p = seg_batch(26, dtype=torch.float32)
    head = pixcon.nn.ProjectionHead(6, channels=8, num_layers=2)
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler=pixcon.PixelSampler("class_balanced", seed=1, min_views=2))
    out = loss_fn(head(x), y)
    out.backward()
    grads = [q.grad for q in head.parameters()]
    assert out.item() > 0 and all(g is not None and torch.isfinite(g).all() for g in grads)


# ============================================================================ the raw op


def _op_samples():
    labels, predictions = big_case(30, b=2, size=11, classes=4)
    return labels, predictions


def _op_args(labels, strategy, predictions=None, **kw):
    """Positional arguments of torch.ops.pixcon.sample_pixels, built from its schema and the
    Python API's defaults (so the test does not hard-code the argument order)."""
    schema = torch.ops.pixcon.sample_pixels.default._schema
    kept = labels[labels != IGNORE]
    values = dict(labels=labels, strategy=strategy, predictions=predictions, ignore_index=IGNORE, seed=0,
                  per_image=True, num_classes=int(kept.max()) + 1 if kept.numel() else 0)
    for rule in (s for s in STRATEGIES if s != strategy):
        values.update(DEFAULTS[rule])  # parameters of other rules, in case the schema has them
    values.update(DEFAULTS[strategy])
    values.update(kw)
    args = []
    for a in schema.arguments:
        if a.name in values:
            args.append(values[a.name])
        elif a.has_default_value():
            args.append(a.default_value)
        else:
            pytest.fail(f"torch.ops.pixcon.sample_pixels has an argument {a.name!r} the test does not know")
    return tuple(args)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_raw_op_matches_the_python_api(strategy):
    labels, predictions = _op_samples()
    pred = predictions if strategy == "hard_easy" else None
    args = _op_args(labels, strategy, pred, seed=3)
    out = torch.ops.pixcon.sample_pixels(*args)
    indices, offsets = pixcon.sample_pixels(labels, strategy, predictions=pred, seed=3)
    assert torch.equal(out[0], indices) and torch.equal(out[1], offsets)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_opcheck_sample_pixels(strategy):
    labels, predictions = _op_samples()
    args = _op_args(labels, strategy, predictions if strategy == "hard_easy" else None, seed=1)
    # All of opcheck's utils apply: the output size depends on the data (how many pixels
    # qualify), and the registered fake kernel allocates it with an unbacked symbolic size
    # (ctx.new_dynamic_size), which test_faketensor and test_aot_dispatch_dynamic accept.
    torch.library.opcheck(torch.ops.pixcon.sample_pixels.default, args)


# ============================================================================ CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@cuda
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("per_image", [True, False])
def test_same_seed_gives_the_same_pixels_on_cpu_and_cuda(strategy, per_image):
    for seed in range(3):
        labels, predictions = big_case(40 + seed)
        pred = predictions if strategy == "hard_easy" else None
        cpu = sample(labels, strategy, pred, seed=seed, per_image=per_image, **BIG_PARAMS[strategy])
        gpu = sample(labels.cuda(), strategy, None if pred is None else pred.cuda(), seed=seed,
                     per_image=per_image, **BIG_PARAMS[strategy])
        assert gpu[0].is_cuda and gpu[1].is_cuda
        assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


@cuda
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cuda_counts_follow_the_rule_on_random_label_maps(strategy):
    rng = np.random.default_rng(2000 + STRATEGIES.index(strategy))
    for case in range(60):
        labels, predictions = random_case(rng)
        check_follows_rule(strategy, labels.cuda(), predictions.cuda(), seed=case, **random_params(rng, strategy))


@cuda
def test_cuda_module_with_sampler_equals_cpu():
    x, y, _ = seg_batch(50)
    sampler = pixcon.PixelSampler("class_balanced", seed=2, min_views=2)
    loss_fn = pixcon.nn.PixelContrastiveLoss(sampler=sampler)
    torch.testing.assert_close(loss_fn(x.cuda(), y.cuda()).cpu(), loss_fn(x, y), rtol=1e-10, atol=1e-10)


def test_only_the_hard_easy_sampler_reads_predictions():
    assert pixcon.PixelSampler("hard_easy").uses_predictions
    assert not pixcon.PixelSampler("uniform").uses_predictions
    assert not pixcon.PixelSampler("class_balanced").uses_predictions
