"""The examples of README.md and docs/*.md as the runner sees them: fenced blocks and tables,
each with the `<!-- run: KIND key=value … -->` line that comes right before it.

The tag is an HTML comment, so GitHub renders nothing for it. A fenced `sh`/`bash`/`python`
block without a tag is an error: every example says whether it runs here, is checked for
syntax only, or is an illustration (`<!-- run: none why="…" -->`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG = re.compile(r"^\s*<!--\s*run:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
MUST_BE_TAGGED = {"sh", "bash", "shell", "console", "python", "py"}


@dataclass
class Block:
    """One tagged example: a fenced block (`text`, `lang`) or a table (`rows`)."""

    path: Path
    line: int  # 1-based line of the fence or the table's header
    kind: str
    options: dict[str, str]
    lang: str = ""
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{shown(self.path)}:{self.line}"

    def stacks(self) -> list[str]:
        return self.options.get("stack", "embedded").split(",")


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def documents(root: Path = ROOT) -> list[Path]:
    """The pages a newcomer follows: README.md, docs/*.md, bench/README.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]


def parse_tag(body: str) -> tuple[str, dict[str, str]]:
    words = shlex.split(body)
    if not words:
        raise ValueError("empty run: tag")
    options = {}
    for word in words[1:]:
        name, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"run: option {word!r} is not name=value")
        options[name] = value
    return words[0], options


def table_rows(lines: list[str], start: int) -> list[list[str]]:
    """The cells of the Markdown table starting at `lines[start]` (header and separator dropped)."""
    rows = []
    for line in lines[start:]:
        if not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(cells)
    return rows[2:]


def extract(path: Path) -> tuple[list[Block], list[str]]:
    """The tagged blocks of one page, and the problems found (untagged examples, bad tags)."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, str, dict[str, str]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        tag = TAG.match(line)
        if tag:
            try:
                kind, options = parse_tag(tag.group("body"))
            except ValueError as exc:
                problems.append(f"{shown(path)}:{i + 1}: {exc}")
                kind, options = "none", {}
            pending = (i + 1, kind, options)
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            lang = fence.group("info").strip().split(" ")[0].lower()
            closing = fence.group("fence")
            indent = len(fence.group("indent"))
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(closing):
                body.append(lines[j][indent:] if not lines[j][:indent].strip() else lines[j].lstrip())
                j += 1
            if pending is not None and pending[0] == i:
                blocks.append(Block(path, i + 1, pending[1], pending[2], lang, "\n".join(body) + "\n"))
            elif lang in MUST_BE_TAGGED:
                problems.append(
                    f"{shown(path)}:{i + 1}: a ```{lang} block without a `<!-- run: … -->` tag on the line"
                    " before it: tag it (run, syntax, or none with a reason)"
                )
            pending = None
            i = j + 1
            continue
        if line.strip().startswith("|") and pending is not None and pending[0] == i:
            blocks.append(Block(path, i + 1, pending[1], pending[2], rows=table_rows(lines, i)))
            pending = None
        elif line.strip() and pending is not None and pending[0] == i:
            problems.append(f"{shown(path)}:{pending[0]}: a run: tag must come right before a fenced block or a table")
            pending = None
        i += 1
    return blocks, problems


def backticked(cell: str) -> list[str]:
    """The `names` in a table cell, in order."""
    return re.findall(r"`([^`]+)`", cell)
