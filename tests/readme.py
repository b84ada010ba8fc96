"""The README's examples, as the tests run them: the block after `<!-- example: NAME -->`."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def example(name: str) -> str:
    """The fenced block that follows the marker `<!-- example: name -->` in README.md."""
    text = README.read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", text, flags=re.DOTALL
    )
    assert found is not None, f"README.md has no example {name!r}"
    return found.group(1)


def statements(name: str) -> list[str]:
    """The SQL statements of an example, each without its closing `;`."""
    return [part.strip() for part in example(name).split(";") if part.strip()]
