"""The code stays in files a reader can take in: none over 450 lines outside tests/ and bench/,
unless its first lines say why it must be longer."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 450
#: A file longer than MAX_LINES starts (within its first lines) with a comment saying why.
NOTE = "longer than 450 lines:"
NOTE_WITHIN = 5
#: Prose, data and generated files: README and docs/ have their own limits, uv.lock is written
#: by uv, images are not text.
NOT_CODE = (".md", ".lock", ".png", ".json", ".gitkeep")


def code_files() -> list[Path]:
    """Every file git tracks or would track (not ignored), tests/ and bench/ left out."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [
        REPO / name
        for name in listed
        if not name.startswith(("tests/", "bench/"))
        and not name.endswith(NOT_CODE)
        and (REPO / name).is_file()
    ]


def test_no_code_file_is_over_450_lines_without_a_note_saying_why() -> None:
    files = code_files()
    assert any(path.name == "definitions.py" for path in files)  # the listing found the code
    too_long = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(NOTE in line for line in lines[:NOTE_WITHIN]):
            too_long.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
    assert not too_long, (
        f"over {MAX_LINES} lines: split along a seam, or start the file with a comment "
        f"'# {NOTE} <why>' in its first {NOTE_WITHIN} lines:\n" + "\n".join(too_long)
    )
