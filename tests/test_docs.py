"""The documentation points at files that exist: a reader who follows a path finds it."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "src" / "noise2average" / "weights" / "MODEL_CARD.md"]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # [text](target), relative to the page
PATH = re.compile(r"`((?:docs|src|benchmarks|scripts|tests)/[^`\s]+)`")  # relative to the repo


def _exists(path: Path) -> bool:
    return bool(glob.glob(str(path))) if "*" in str(path) else path.exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_named_in_the_docs_exist(page):
    text = page.read_text(encoding="utf-8")
    missing = [m.group(1) for m in LINK.finditer(text)
               if "://" not in m.group(1) and not _exists(page.parent / m.group(1))]
    # a pytest node id (tests/x.py::test_y) names its file
    missing += [p for p in (m.group(1).rstrip(".,;:").split("::")[0] for m in PATH.finditer(text))
                if not _exists(ROOT / p)]
    assert not missing, f"{page.name} names missing files: {missing}"
