"""Every vendor citation resolves inside the repository (docs/vendors/README.md).

Source files cite vendor behaviour as `§n` of a page under docs/vendors/: the page a module
names (once, usually in its docstring), or the page named earlier on the same line. This
test fails when a cited section does not exist on its page, when `§n` has no page to
resolve against, or when code or docs name material outside the repository.
"""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ROOT / "docs" / "vendors"
CODE_DIRS = ("api", "cli", "connectors", "core", "workers", "tests")
HEADING = re.compile(r"^#{2,4} §(\d+(?:\.\d+)*)\b", re.MULTILINE)
PAGE = r"docs/vendors/([\w-]+)\.md"
TOKEN = re.compile(PAGE + r"|§ ?(\d+(?:\.\d+)*)")
# Material that does not ship with the repository: design and research notes, the
# workspace outside it; and, in the docs, issue and planning references.
OUTSIDE = re.compile(
    r"DESIGN\.md|\bshared/|/work/|research notes?\b|\bthe research\b|"
    r"\b(?:zoho-crm|history-and-activities|other-crms|chat-robots|style-anchors)\.md",
    re.IGNORECASE,
)
PLANNING = re.compile(
    r"\bthe issue\b|\bissues? #?\d+\b|\[F\d+\]|\bsession \d+\b|(?-i:\bM\d+\b)",
    re.IGNORECASE,
)
# In code, a vendor page is named with its directory; a bare `fxiaoke.md` meant the notes
# that used to live outside the repository (docs/fxiaoke.md, the user guide, is fine).
BARE_NOTES = re.compile(r"(?<![\w/.-])fxiaoke\.md")


@cache  # the pages of a running test process do not change
def sections(page: str) -> set[str] | None:
    path = VENDORS / f"{page}.md"
    return set(HEADING.findall(path.read_text(encoding="utf-8"))) if path.is_file() else None


def problems(rel: str, text: str) -> list[str]:
    """What does not resolve in one file (`rel`, relative to the repository)."""
    outside = OUTSIDE if rel.endswith(".py") else re.compile(
        f"{OUTSIDE.pattern}|{PLANNING.pattern}", re.IGNORECASE)
    # Whole files searched at once (no pattern spans a line), each match's line counted
    found = [f"{rel}:{_line(text, m)}: names {m.group(0)!r}, outside the repository"
             for m in outside.finditer(text)]
    if rel.endswith(".py"):
        found += [f"{rel}:{_line(text, m)}: cites the old notes {m.group(0)!r}; name "
                  "docs/vendors/<page>.md" for m in BARE_NOTES.finditer(text)]
    own = Path(rel).stem if rel.startswith("docs/vendors/") and rel != "docs/vendors/README.md" \
        else None
    named = set(re.findall(PAGE, text))
    default = own or (named.pop() if len(named) == 1 else None)
    for n, line in enumerate(text.splitlines(), 1):
        page = default
        for m in TOKEN.finditer(line):
            if m.group(1):
                page = m.group(1)
                if sections(page) is None:
                    found.append(f"{rel}:{n}: docs/vendors/{page}.md does not exist")
                continue
            if page is None:
                found.append(f"{rel}:{n}: §{m.group(2)} names no docs/vendors page (or two)")
            elif m.group(2) not in (sections(page) or set()):
                found.append(f"{rel}:{n}: §{m.group(2)} is not a section of "
                             f"docs/vendors/{page}.md")
    return found


def _line(text: str, match: re.Match[str]) -> int:
    return text.count("\n", 0, match.start()) + 1


def repository_files() -> list[Path]:
    files = [p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")]
    files += [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]
    return sorted(p for p in files if p != Path(__file__).resolve())


def test_every_citation_resolves_inside_the_repository() -> None:
    found = [problem for path in repository_files()
             for problem in problems(path.relative_to(ROOT).as_posix(),
                                     path.read_text(encoding="utf-8"))]
    assert found == []


def test_vendor_pages_keep_the_section_numbers_code_cites() -> None:
    assert {str(n) for n in range(1, 13)} <= (sections("zoho") or set())
    assert {"0", "1.1", "1.2", "8.1", "8.3", *(str(n) for n in range(1, 10))} <= \
        (sections("fxiaoke") or set())


@pytest.mark.parametrize(("rel", "text", "wanted"), [
    ("connectors/zoho/x.py", '"""Notes (docs/vendors/zoho.md §5)."""\nA = 1  # §99\n',
     "§99 is not a section of docs/vendors/zoho.md"),
    ("connectors/x.py", "A = 1  # §2: no page named in this file\n", "names no docs/vendors"),
    ("connectors/x.py", "# docs/vendors/zoho.md §1\n# docs/vendors/fxiaoke.md §6\nB = 1  # §2\n",
     "names no docs/vendors"),
    ("connectors/x.py", "# docs/vendors/nosuchcrm.md §1\n", "nosuchcrm.md does not exist"),
    ("connectors/x.py", "# Follows fxiaoke.md §5\n", "cites the old notes"),
    ("connectors/x.py", "# see ../shared/research/zoho-crm.md\n", "outside the repository"),
    ("core/x.py", '"""Metrics (DESIGN.md section 5)."""\n', "outside the repository"),
    ("docs/x.md", "As the issue asks, ...\n", "outside the repository"),
])
def test_a_citation_that_does_not_resolve_is_reported(rel: str, text: str,
                                                      wanted: str) -> None:
    assert any(wanted in problem for problem in problems(rel, text))


@pytest.mark.parametrize("text", [
    '"""Zoho notifications (docs/vendors/zoho.md §5)."""\nA = 1  # §2/§4, §11\n',
    "# docs/vendors/zoho.md §1, §7; docs/vendors/fxiaoke.md §1.2, §6\n",
    '"""Fxiaoke (docs/vendors/fxiaoke.md)."""\nB = 1  # §8.1\nC = "docs/fxiaoke.md"\n',
])
def test_a_citation_that_resolves_passes(text: str) -> None:
    assert problems("connectors/x.py", text) == []
