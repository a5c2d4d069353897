"""`python tools/docs_runner.py [PAGE…]`: run the examples of README.md and docs/*.md against a
live `beast serve --sim` and check what they claim (tests/integration/test_docs.py runs it in `make test`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docsrun.runner import run_all


def main(argv: list[str]) -> int:
    report = run_all([Path(p).resolve() for p in argv] or None)
    for label in report.checked:
        print(f"checked {label}")
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    print(f"{len(report.checked)} example(s) checked, {len(report.failures)} failure(s)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
