"""The DeepLabV3+ example (examples/deeplabv3plus) runs end to end in its tiny mode."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("sklearn")

RUN = Path(__file__).resolve().parents[1] / "examples" / "deeplabv3plus" / "run.py"
SETTINGS = ("ce_only", "contrastive", "contrastive_pseudo", "contrastive_aux")


def _load_run():
    spec = importlib.util.spec_from_file_location("deeplabv3plus_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_four_mious_and_the_figures(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    run = _load_run()
    assert run.main(["--tiny", "--out-dir", str(tmp_path), "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # main restores the thread count

    report = json.loads((tmp_path / "results.json").read_text())
    assert report["mode"] == "tiny"
    assert set(report["miou"]) == set(SETTINGS)
    for name in SETTINGS:
        miou = report["miou"][name]
        assert math.isfinite(miou) and 0.0 <= miou <= 1.0, (name, miou)
        entry = report["settings"][name]
        assert entry["miou"] == miou
        assert set(entry["per_class_iou"]) == {"background", "disc", "square", "triangle", "bar"}
        assert all(math.isfinite(v) for v in entry["losses"]["ce"].values())
        figure = tmp_path / f"embeddings_{name}.png"
        assert figure.is_file() and figure.stat().st_size > 1000
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in SETTINGS[1:]:
        assert math.isfinite(report["settings"][name]["losses"]["contrastive"]["last_10pct_mean"])
    assert "pseudo_labels" in report["settings"]["contrastive_pseudo"]
    assert report["config"]["confidence"] == 0.8 and report["config"]["background_confidence"] == 0.97

    aux = report["settings"]["contrastive_aux"]["auxiliary_labels"]
    assert aux["clusters"] == report["config"]["aux_clusters"] == 15
    assert aux["images"] == report["data"]["train_images"]
    for quality in (aux, aux["unlabelled_images_only"]):
        for key in ("pair_precision", "pair_recall", "purity"):
            assert 0.0 <= quality[key] <= 1.0, (key, quality[key])
        assert quality["pixels"] > 0
    # 5% outliers of the 12 x 8 x 8 feature pixels are ignored (floor(0.05 * 768) = 38)
    assert aux["ignored_fraction"] == round(38 / 768, 4)
    assert sum(aux["cluster_pixels"]) == aux["pixels"] == 768 - 38
    figure = tmp_path / aux["figure"]
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = capsys.readouterr().out
    for name in SETTINGS:
        assert f"{report['miou'][name]:.4f}" in out
    assert f"pair precision {aux['pair_precision']:.4f}" in out and f"pair recall {aux['pair_recall']:.4f}" in out


def test_pseudo_labels_use_the_papers_thresholds():
    import torch

    _load_run()  # puts examples/ on sys.path
    import deeplabv3plus.train as train

    class Fixed(torch.nn.Module):
        """A 'model' whose predict returns fixed probabilities."""

        def __init__(self, probs):
            super().__init__()
            self.probs = probs

        def predict(self, images):
            return self.probs

    # 1 image, 5 classes, 4 pixels: background 0.96 (dropped), background 0.98 (kept),
    # class 2 at 0.81 (kept), class 3 at 0.79 (dropped)
    probs = torch.zeros(1, 5, 1, 4)
    for pixel, (cls, p) in enumerate([(0, 0.96), (0, 0.98), (2, 0.81), (3, 0.79)]):
        probs[0, :, 0, pixel] = (1 - p) / 4
        probs[0, cls, 0, pixel] = p
    labels = train.pseudo_labels(Fixed(probs), torch.zeros(1, 3, 1, 4), train.Config())
    assert labels.tolist() == [[[255, 0, 2, 255]]]



def test_auxiliary_labels_survive_the_losss_resizing():
    """Setting 4 stores its feature-resolution auxiliary labels at image resolution; the
    contrastive loss's nearest resize to the embeddings must give back exactly the clusters."""
    import torch

    _load_run()
    import deeplabv3plus.train as train

    cfg = train.Config(image_size=32, encoder_depth=4, decoder_channels=16, projection_channels=8, aux_clusters=4)
    model, _ = train.new_model(cfg)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    aux = train.auxiliary_labels(model, images, cfg)
    assert aux.shape == (3, 8, 8) and aux.dtype == torch.long
    assert int((aux == 255).sum()) == int(0.05 * aux.numel())
    full = train.resize_labels(aux, (32, 32))
    assert torch.equal(full[:, ::4, ::4], aux)
    assert torch.equal(train.resize_labels(full, (8, 8)), aux)
