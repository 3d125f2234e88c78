"""The code blocks of the project's Markdown as a renderer sees them (markdown-it-py, CommonMark):
each with its document, line, language, and the ``<!-- not run: REASON -->`` comment right before
it, if there is one. Parsed rather than grepped, so a block inside a list item, an indented block or
a fence of tildes counts exactly as GitHub shows it."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]

NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->", re.S)


@dataclass(frozen=True)
class Block:
    doc: str  # the document, relative to the repository
    line: int  # the line of the opening fence, from 1
    lang: str  # the info string's first word; "" for none
    code: str
    not_run: str | None  # the reason given in a `<!-- not run: ... -->` right before the block

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    tokens = MarkdownIt("commonmark").enable("table").parse(path.read_text())
    found = []
    for before, token in zip([None, *tokens], tokens, strict=False):
        if token.type not in ("fence", "code_block"):
            continue
        comment = NOT_RUN.fullmatch(before.content.strip()) if before and before.type == "html_block" else None
        found.append(Block(
            doc=str(path.relative_to(REPO)), line=token.map[0] + 1, lang=(token.info.split() or [""])[0],
            code=token.content, not_run=" ".join(comment.group(1).split()) if comment else None,
        ))
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks(path)]


def commands(code: str) -> list[list[str]]:
    """Each command of a shell block as its argv: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def section(path: Path, heading: str) -> str:
    """The source of the section under ``heading`` (any level), up to the next heading of its level or above."""
    tokens = MarkdownIt("commonmark").parse(path.read_text())
    lines = path.read_text().splitlines()
    start = level = None
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        if start is not None and int(token.tag[1]) <= level:
            return "\n".join(lines[start:token.map[0]])
        if start is None and tokens[i + 1].content == heading:
            start, level = token.map[0], int(token.tag[1])
    if start is None:
        raise LookupError(f"{path.name} has no section {heading!r}")
    return "\n".join(lines[start:])
