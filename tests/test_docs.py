"""The documentation holds together: README.md fits on a few screens, every relative link of
README.md, CHANGELOG.md and docs/ leads to a file (and its `#anchor` to a heading there), every
page under docs/ is reachable from README.md, external links are well-formed (never fetched:
tests do not reach the internet), the README's views at a glance name every view built and its
make targets every target of the Makefile, and docs/architecture.md lists the layers contract of
pyproject.toml as it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pipelines.warehouse import views, warehouse
from tests.readme import README, REPO

README_MAX_LINES = 200
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
#: [text](target) and ![alt](target), the text possibly over several lines, a title allowed
_INLINE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]*)>")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_GITHUB_LINE = re.compile(r"L\d+(-L\d+)?")


def prose(text: str) -> str:
    """The text without fenced code blocks and HTML comments (links there are not links)."""
    return _COMMENT.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lowercase, punctuation removed
    except '-' and '_', spaces to '-' (letters of any script, Korean included, kept)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in a Markdown page; a repeated one gets -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(prose(page.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """The link targets of a page, as written (outside code)."""
    text = _CODE_SPAN.sub("", prose(page.read_text(encoding="utf-8")))
    found = [m.group(1) for m in _INLINE.finditer(text)]
    found += [m.group(1) for m in _REFERENCE.finditer(text)]
    found += [m.group(1) for m in _AUTOLINK.finditer(text)]
    return [target.strip("<>") for target in found]


def external_problem(target: str) -> str | None:
    """Why an http(s) link is not well-formed, or None; the link is never fetched."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https"):
        return f"{target}: only http and https links are checked"
    if not parts.hostname or re.search(r"\s", target) or ".." in parts.hostname:
        return f"{target}: not a well-formed URL"
    return None


def broken_links(page: Path, root: Path) -> list[str]:
    """Each link of `page` that leads nowhere: a missing file, a file outside `root`, an anchor
    that is no heading of its page, or a malformed external URL."""
    problems = []
    for target in links(page):
        scheme = urlsplit(target).scheme
        if scheme in ("http", "https"):
            problem = external_problem(target)
            if problem:
                problems.append(problem)
            continue
        if scheme:  # mailto: and the like: nothing to resolve
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not destination.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
            continue
        if not destination.exists():
            problems.append(f"{target}: no such file ({destination.relative_to(root)})")
            continue
        if not anchor:
            continue
        if destination.suffix == ".md":
            if unquote(anchor) not in anchors(destination):
                problems.append(f"{target}: no heading with anchor #{anchor}")
        elif not _GITHUB_LINE.fullmatch(anchor):
            problems.append(f"{target}: an anchor into a file that is not Markdown")
    return problems


def test_slugs_follow_github() -> None:
    assert (
        slug("DuckDB over S3: what was chosen, and why") == "duckdb-over-s3-what-was-chosen-and-why"
    )
    assert slug("Setups: laptop, one server with PostgreSQL, a cluster") == (
        "setups-laptop-one-server-with-postgresql-a-cluster"
    )
    assert slug("When a run's process dies") == "when-a-runs-process-dies"
    assert slug("Querying the views of an s3:// root") == "querying-the-views-of-an-s3-root"
    assert slug("`make doctor`: one screen") == "make-doctor-one-screen"
    assert slug("순자산 net_assets (합계)") == "순자산-net_assets-합계"


def test_the_checker_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section: 둘\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Same\n\n## Same\n\n"
        "[ok](docs/other.md) [ok](docs/other.md#a-section-둘) [ok](#title) [ok](#same-1)\n"
        "[over two\nlines](docs/other.md#other-page) ![image](docs/other.md)\n"
        "[ok](https://example.com/a?b=c#d) `[in code](nowhere.md)`\n\n"
        "```md\n[in a block](nowhere.md)\n```\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#a-section) [here](#nothing)\n"
        "[out](../elsewhere.md) [url](https://) [no host](https:///path) [mail](mailto:a@b.c)\n"
        "[ref]: docs/also-missing.md\n"
    )
    problems = broken_links(page, tmp_path)
    assert [p.partition(": ")[0] for p in problems] == [
        "docs/missing.md",
        "docs/other.md#a-section",
        "#nothing",
        "../elsewhere.md",
        "https://",
        "https:///path",
        "docs/also-missing.md",
    ], problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_link_resolves(page: Path) -> None:
    problems = broken_links(page, REPO)
    assert not problems, f"{page.relative_to(REPO)}: " + "; ".join(problems)


def test_the_readme_fits_on_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached, queue = {README.resolve()}, [README]
    while queue:
        page = queue.pop()
        for target in links(page):
            path_part = target.partition("#")[0]
            if urlsplit(target).scheme or not path_part:
                continue
            destination = (page.parent / unquote(path_part)).resolve()
            if destination.suffix == ".md" and destination.is_file() and destination not in reached:
                reached.add(destination)
                queue.append(destination)
    pages = {p.resolve() for p in PAGES}
    assert sorted(str(p.relative_to(REPO)) for p in pages - reached) == []


def test_the_views_at_a_glance_name_every_view_and_macro() -> None:
    text = README.read_text(encoding="utf-8")
    glance = text[text.index("## The views at a glance") :]
    glance = glance[: glance.index("\n## ", 1)]
    listed = set(re.findall(r"^\| `(\w+)` \|", glance, flags=re.MULTILINE))
    built = {*warehouse.view_names(), views.DRIFT_VIEW[0]}
    assert listed == built
    for macro in warehouse.macro_names():
        assert f"`{macro}(d)`" in glance, macro


def test_the_architecture_page_lists_the_layers_contract_in_order() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    [contract] = [
        c for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"The same, as text.*?\n```\n(.*?)\n```", text, flags=re.DOTALL)
    assert block is not None
    drawn = [
        re.split(r"\s{2,}", line.removeprefix("  > ").strip())[0]
        for line in block.group(1).splitlines()
        if not line.lstrip().startswith("-")
    ]
    assert drawn == contract["layers"]


def test_the_readme_names_every_make_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.MULTILINE)) - {"help", "setup"}
    text = README.read_text(encoding="utf-8")
    assert sorted(t for t in targets if f"`make {t}`" not in text) == []
