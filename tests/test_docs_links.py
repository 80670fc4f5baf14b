"""Every image and relative link in the READMEs points at a file of the repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("benchmarks/README.md")), *sorted(ROOT.glob("examples/*/README.md"))]
# markdown links and images, and <img src=...>; external addresses and in-page anchors are not files
TARGET = re.compile(r"\]\(([^)\s]+)\)|<img[^>]*\bsrc=\"([^\"]+)\"")


def _targets(doc: Path) -> list[str]:
    found = [a or b for a, b in TARGET.findall(doc.read_text())]
    return [t.split("#")[0] for t in found if not re.match(r"[a-z]+:|#", t)]


def test_readme_embeds_the_measured_plots_and_figures():
    targets = set(_targets(ROOT / "README.md"))
    assert "benchmarks/measured/loss_suite_cpu_time.png" in targets
    assert "benchmarks/measured/loss_suite_cpu_memory.png" in targets
    assert any(t.startswith("examples/deeplabv3plus/results/") and t.endswith(".png") for t in targets)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_image_exists(doc):
    missing = [t for t in _targets(doc) if not (doc.parent / t).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} points at missing files: {missing}"
