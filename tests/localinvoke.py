"""`make invoke FN=… EVENT=…`: `sam local invoke` without Docker, on the emulation the tests use.

tests/samlocal.py loads a function's handler from template.yaml the way `sam local invoke`
does (Globals, the layer on sys.path, the handler module); this adds what the command line
adds: the function named by logical id or code directory, the event file, and `env.json`
applied the way `--env-vars` applies it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from samlocal import REPO, functions, invoke


def resolve_function(name: str) -> str:
    """A function's logical id from itself or its code directory's name (`reports` -> ReportsFunction)."""
    found = functions()
    if name in found:
        return name
    by_dir = {Path(p["CodeUri"]).name: n for n, p in found.items()}
    if name in by_dir:
        return by_dir[name]
    raise SystemExit(f"FN: expected one of {', '.join(sorted(found))} (or {', '.join(sorted(by_dir))}), got {name!r}")


def local_env(logical_id: str, env_file: Path) -> dict[str, str]:
    """What `sam local invoke --env-vars env.json` gives the function: the file's Parameters, then its own section."""
    import json

    values = json.loads(env_file.read_text())
    return {k: str(v) for section in ("Parameters", logical_id) for k, v in values.get(section, {}).items()}


def main(argv: list[str]) -> int:
    """`make invoke FN=reports EVENT=events/reports_usage_me.json`: `sam local invoke` without Docker."""
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="make invoke", description=main.__doc__)
    parser.add_argument("function", help="logical id (ReportsFunction) or code directory name (reports)")
    parser.add_argument("event", help="event file (events/<function>_*.json)")
    parser.add_argument("--env-vars", default=str(REPO / "env.json"), help="the env.json `sam local invoke` takes")
    args = parser.parse_args(argv)
    logical_id = resolve_function(args.function)
    event_path = Path(args.event)
    if not event_path.exists() and (REPO / "events" / args.event).exists():
        event_path = REPO / "events" / args.event
    try:
        event = json.loads(event_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"EVENT: cannot read a JSON event from {args.event!r}: {exc}") from None
    env_file = Path(args.env_vars)
    if env_file.exists():
        os.environ.update(local_env(logical_id, env_file))
    result = invoke(logical_id, event)
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
