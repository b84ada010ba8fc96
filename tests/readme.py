"""The documentation's examples, as the tests run them: the block after `<!-- example: NAME -->`
in README.md or any page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in a stable order."""
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def documentation() -> str:
    """The text of every page, README.md first: for what must be documented somewhere."""
    return "\n".join(page.read_text(encoding="utf-8") for page in pages())


def located(name: str) -> tuple[Path, str]:
    """The page holding the marker `<!-- example: name -->`, and the fenced block after it."""
    pattern = rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```"
    found = [
        (page, match.group(1))
        for page in pages()
        for match in re.finditer(pattern, page.read_text(encoding="utf-8"), flags=re.DOTALL)
    ]
    assert found, f"neither README.md nor docs/ has an example {name!r}"
    assert len(found) == 1, f"example {name!r} is in {[str(p) for p, _ in found]}"
    return found[0]


def example(name: str) -> str:
    """The fenced block that follows the marker `<!-- example: name -->`."""
    return located(name)[1]


def statements(name: str) -> list[str]:
    """The SQL statements of an example, each without its closing `;`."""
    return [part.strip() for part in example(name).split(";") if part.strip()]
