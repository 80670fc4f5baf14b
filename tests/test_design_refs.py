"""Every design reference in the repository points into docs/design.md.

Comments and documents cite the design as ``docs/design.md §<id>`` or ``docs/design.md section
<id>`` (``<id>`` like ``2``, ``3b``, ``2.4``, ``3b.1``). A citation resolves when docs/design.md
has the heading ``## <id>.`` or ``### <id>``. The design document that lived outside the
repository (the upper-case name) must no longer be cited. Needs only git and the source tree, not
the compiled package.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
THIS = Path(__file__).resolve()

# the top-level sections, in order (comments cite "§3b" for the GPU algorithm)
SECTIONS = ["1", "2", "3", "3b", "4", "4b", "5", "6", "7", "8"]

SECTION_ID = r"\d+[a-z]?(?:\.\d+)*"
# the name of the former, out-of-tree design file, built so that this file does not match itself
OLD_NAME = re.compile(re.escape("DESIGN" + ".md"))
# "docs/design.md", an optional comma, then whitespace or comment leaders (a citation may wrap onto
# the next comment line), then "§" or "section"; the id is parsed separately so that a malformed
# one is reported rather than skipped
CITATION = re.compile(r"docs/design\.md,?(?:[ \t\r\n*#/]|//|--)*(?:§|(?i:section)\b)\s*")
ID_AT = re.compile(SECTION_ID + r"(?![\w-])")
TOP_HEADING = re.compile(r"^## (?P<id>" + SECTION_ID + r")\. \S")
SUB_HEADING = re.compile(r"^### (?P<id>" + SECTION_ID + r") \S")


def _tracked_text_files() -> list[Path]:
    """Files git tracks or would track (untracked but not ignored), as decoded text, except the
    design document itself and this test."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout, or git is missing: {e}")
    files = []
    for name in sorted(set(out.decode().split("\0")) - {""}):
        path = ROOT / name
        if not path.is_file() or path.resolve() in (DESIGN.resolve(), THIS):
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _heading_ids(markdown: str) -> set[str]:
    ids = set()
    for line in markdown.splitlines():
        match = TOP_HEADING.match(line) or SUB_HEADING.match(line)
        if match:
            ids.add(match.group("id"))
    return ids


def _citations(text: str) -> list[tuple[int, str | None, str]]:
    """(offset, id or None when malformed, the cited text) of every design citation in text."""
    found = []
    for match in CITATION.finditer(text):
        ident = ID_AT.match(text, match.end())
        snippet = text[match.start(): (ident.end() if ident else match.end() + 10)]
        found.append((match.start(), ident.group(0) if ident else None, " ".join(snippet.split())))
    return found


def test_citation_pattern_reads_every_form():
    samples = {
        "/* Forward of the fused loss (docs/design.md §3b): a CTA owns */": ["3b"],
        "# see docs/design.md section 2.": ["2"],
        "(docs/design.md, section 2.4) and docs/design.md §3b.1,": ["2.4", "3b.1"],
        " * Fused kernels (docs/design.md\n * §3b): similarities": ["3b"],
        "// docs/design.md\n// Section 5.2 says": ["5.2"],
        "see docs/design.md for the layers": [],
        "docs/design.md §x": [None],
    }
    for text, ids in samples.items():
        assert [ident for _, ident, _ in _citations(text)] == ids, text


def test_design_document_sections_are_numbered_headings():
    lines = DESIGN.read_text(encoding="utf-8").splitlines()
    top = [line for line in lines if line.startswith("## ")]
    malformed = [line for line in top if not TOP_HEADING.match(line)]
    assert not malformed, f"docs/design.md: top-level headings must read '## <id>. Title': {malformed}"
    assert [TOP_HEADING.match(line).group("id") for line in top] == SECTIONS
    parent, expected, wrong = None, 0, []
    for line in lines:
        if line.startswith("## "):
            parent, expected = TOP_HEADING.match(line).group("id"), 1
        elif line.startswith("### "):
            match = SUB_HEADING.match(line)
            if not match or parent is None or match.group("id") != f"{parent}.{expected}":
                wrong.append(f"{line!r} (expected '### {parent}.{expected} Title')")
            expected += 1
    assert not wrong, "docs/design.md: subsections must be numbered <section>.1, .2, ...: " + "; ".join(wrong)


def test_no_citation_of_the_out_of_tree_design_file():
    stale = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8")
        for match in OLD_NAME.finditer(text):
            line = _line_of(text, match.start())
            stale.append(f"{path.relative_to(ROOT)}:{line}: {text.splitlines()[line - 1].strip()}")
    assert not stale, (
        "these lines cite a design file that is not in the repository; cite docs/design.md §<id> "
        "instead:\n" + "\n".join(stale))


def test_every_design_citation_resolves_to_a_section():
    sections = _heading_ids(DESIGN.read_text(encoding="utf-8"))
    files = _tracked_text_files()
    assert files, "git lists no files: the scan would prove nothing"
    unresolved = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for offset, ident, cited in _citations(text):
            if ident not in sections:
                unresolved.append(f"{path.relative_to(ROOT)}:{_line_of(text, offset)}: {cited!r}")
    assert not unresolved, (
        "these citations name no section of docs/design.md (its headings: "
        f"{sorted(sections)}):\n" + "\n".join(unresolved))


def test_references_inside_the_design_document_resolve():
    text = DESIGN.read_text(encoding="utf-8")
    sections = _heading_ids(text)
    assert not OLD_NAME.search(text)
    dangling = sorted({m.group(1) for m in re.finditer(r"§(" + SECTION_ID + r")", text)} - sections)
    assert not dangling, f"docs/design.md refers to sections it does not have: {dangling}"
