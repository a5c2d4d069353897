"""The reference docs kept true without a server: the settings tables are the settings
definition (both ways), nothing links outside the repository, every example is tagged for the
docs runner (tools/docs_runner.py, run by tests/integration/test_docs.py)."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

from docsrun.blocks import documents, extract  # noqa: E402

SETTING = re.compile(r"^[A-Z][A-Z0-9_]+$")


# --- the settings table is the settings definition --------------------------------------------

NOT_SETTINGS = {
    "PATH": "the shell's",
    "AWS_DEFAULT_REGION": "the AWS SDK's own",
    "TEST_KEY_ID": "passed by tests/test_usage_sync.py to the child process it starts",
}


class Recording(Mapping[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _env_like(node: ast.AST, names: tuple[str, ...]) -> bool:
    return (isinstance(node, ast.Name) and node.id in names) or (
        isinstance(node, ast.Attribute) and node.attr == "environ"
    )


def variables_read(folder: Path, names: tuple[str, ...]) -> set[str]:
    """Literal names read from an environment mapping (`env.get("X")`, `os.environ["X"]`,
    `helper(env, "X", …)`) anywhere under `folder`."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            args: list[ast.AST] = []
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr in ("get", "pop") and _env_like(f.value, names):
                    args = node.args[:1]
                elif any(_env_like(a, names) for a in node.args):
                    args = list(node.args)
            elif isinstance(node, ast.Subscript) and _env_like(node.value, names) and isinstance(node.ctx, ast.Load):
                args = [node.slice]
            found |= {
                a.value
                for a in args
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and SETTING.match(a.value)
            }
    return found


def settings_read() -> set[str]:
    """Every variable the package reads: its source, and what loading the settings asks for
    (names built at run time, such as BEAST_<EXCHANGE>_WS_URL, and the secret's overrides)."""
    from trinity_beast.stores.environment import load_settings

    read = variables_read(REPO / "layers/common/trinity_beast", ("env", "environ"))
    secret = '{"username": "u", "password": "p", "host": "db.example"}'
    for values in ({"BEAST_IP_ADDRESS": "127.0.0.1"}, {"BEAST_IP_ADDRESS": "127.0.0.1", "DATABASE_SECRET": secret}):
        # (the address given, so nothing asks the resolver for this host's own)
        env = Recording(values)
        load_settings(env)
        read |= env.asked
    return read


def documented(page: Path) -> set[str]:
    """The variables in the first column of every table of `page`."""
    names: set[str] = set()
    for line in page.read_text().splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.strip("|").split("|")[0]
            names |= {n for n in re.findall(r"`([^`]+)`", first) if SETTING.match(n)}
    return names


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    in_docs = documented(REPO / "docs/configuration.md")
    read = settings_read()
    by_tests = (variables_read(REPO / "tests", ()) | variables_read(REPO / "bench", ())) - set(NOT_SETTINGS)
    assert sorted(read - in_docs) == [], "settings the code reads that docs/configuration.md does not list"
    assert sorted(by_tests - in_docs) == [], (
        "variables the tests or benchmarks read that docs/configuration.md does not list"
    )
    assert sorted(in_docs - read - by_tests) == [], "documented variables nothing reads"
    assert {
        "BEAST_FEEDS",
        "BEAST_PREWARM",
        "TEST_REDIS_URL",
        "TEST_DATABASE_URL",
        "BEAST_COINBASE_WS_URL",
    } <= in_docs & (read | by_tests)


# --- nothing links outside the repository -------------------------------------------------------

LINK = re.compile(
    r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<a\s[^>]*href=\"([^\"]+)\"|^\[[^\]]+\]:\s*(\S+)", re.M
)


def markdown_files() -> list[Path]:
    skip = {".venv", ".venv313", ".sam-venv", ".lint-venv", ".aws-sam", "node_modules", ".git", ".pytest_cache"}
    return [p for p in REPO.rglob("*.md") if not skip & set(p.relative_to(REPO).parts)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def test_every_relative_link_resolves_inside_the_repository() -> None:
    problems = []
    pages = markdown_files()
    assert REPO / "README.md" in pages and REPO / "docs/architecture.md" in pages
    for page in pages:
        for match in LINK.finditer(page.read_text()):
            target = next(g for g in match.groups() if g)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: — not a file
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO)}: {target}"
            if not resolved.is_relative_to(REPO):
                problems.append(f"{where} points outside the repository")
            elif not resolved.exists():
                problems.append(f"{where} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading #{anchor}")
    assert problems == [], "\n".join(problems)


def test_the_link_check_sees_a_link_outside() -> None:
    text = textwrap.dedent("""\
        See [the design](../shared/DESIGN.md) and [api](api.md#get-price) and <https://example.com>.
        [ref]: ../../elsewhere.md
        """)
    assert [next(g for g in m.groups() if g) for m in LINK.finditer(text)] == [
        "../shared/DESIGN.md",
        "api.md#get-price",
        "../../elsewhere.md",
    ]


def test_every_page_example_is_tagged() -> None:
    """Fast, no server: every runnable-looking block of every page says how it is checked."""
    problems = [p for page in documents() for p in extract(page)[1]]
    assert problems == [], "\n".join(problems)
