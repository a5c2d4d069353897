"""Lambda cold start: the import of each functions/*/app.py against importing Powertools'
APIGatewayRestResolver alone, each in a fresh interpreter, median of N runs (goal: ≤ 1.5×).

The reports and partners handlers defer FastAPI, Mangum and the LRS to their first request
(trinity_beast.transports.aws_lambda.api.AsgiFunction), and every handler makes its X-Ray Tracer at the
first invocation (LazyTracer); the last column measures those deferred costs too, in the
same fresh interpreter, so what the first request pays is shown, not hidden.
Times are the child's CPU time (time.process_time): imports are CPU-bound once files are
cached, and CPU time holds still on a busy shared machine where wall time does not.
The environment is Lambda's as far as imports care (AWS_LAMBDA_FUNCTION_NAME set, so the
Tracer is on and patches the SDK), with no AWS call made.

    python bench/lambda_import.py [RUNS]     # prints a Markdown table
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER = REPO / "layers" / "common"
GOAL_RATIO = 1.5
# What AsgiFunction imports at the first request (see lambda_api.AsgiFunction.adapter).
# Every function also makes its Tracer (X-Ray SDK, patching) at the first invocation.
DEFERRED = {
    "reports": ("mangum", "trinity_beast.transports.http.lrs"),
    "partners": ("mangum", "trinity_beast.transports.http.lrs", "aws_lambda_powertools.utilities.idempotency"),
    "sync": ("trinity_beast.services.prices.prewarm", "trinity_beast.services.sync"),
}

IMPORT_HANDLER = """
import importlib, importlib.util, sys, time
sys.path.insert(0, {layer!r})
t = time.process_time()
spec = importlib.util.spec_from_file_location("app", {path!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
imported = time.process_time() - t
for name in {deferred!r}:
    importlib.import_module(name)
if hasattr(m, "tracer"):  # the authorizer makes no X-Ray segments of its own
    m.tracer.get()
print(imported, time.process_time() - t)
"""
BASELINE = """
import time
t = time.process_time()
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
d = time.process_time() - t
print(d, d)
"""


@dataclass
class Figure:
    name: str
    import_ms: float
    first_request_ms: float  # import plus what the first request imports
    ratio: float


def lambda_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BEAST_DATA_DIR": str(work),
        "AWS_DEFAULT_REGION": "us-east-2",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "POWERTOOLS_SERVICE_NAME": "trinity-beast",
        "POWERTOOLS_METRICS_NAMESPACE": "TrinityBeast",
    }


def median_ms(code: str, runs: int, env: dict[str, str]) -> tuple[float, float]:
    first, second = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        a, b = (float(x) for x in out.stdout.split())
        first.append(a)
        second.append(b)
    return statistics.median(first) * 1000, statistics.median(second) * 1000


def measure(runs: int = 7, work: Path | None = None) -> tuple[float, list[Figure]]:
    """(the resolver's import in ms, one Figure per function)."""
    env = lambda_env(work or Path("/tmp/beast-bench-cold"))
    subprocess.run(
        [
            sys.executable,
            "-c",
            IMPORT_HANDLER.format(layer=str(LAYER), path=str(REPO / "functions/assets/app.py"), deferred=()),
        ],
        env=env,
        capture_output=True,
        check=True,
    )  # warm .pyc
    base, _ = median_ms(BASELINE, runs, env)
    figures = []
    for app in sorted((REPO / "functions").glob("*/app.py")):
        name = app.parent.name
        code = IMPORT_HANDLER.format(layer=str(LAYER), path=str(app), deferred=DEFERRED.get(name, ()))
        imported, first = median_ms(code, runs, env)
        figures.append(Figure(name, imported, first, round(imported / base, 2)))
    return base, figures


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    base, figures = measure(runs)
    print(f"Powertools APIGatewayRestResolver alone: {base:.0f} ms (median of {runs} fresh interpreters)\n")
    print(f"| function | import | ratio (goal ≤ {GOAL_RATIO}×) | import + first request's deferred imports |")
    print("|---|---|---|---|")
    for f in figures:
        mark = "yes" if f.ratio <= GOAL_RATIO else "**no**"
        print(f"| {f.name} | {f.import_ms:.0f} ms | {f.ratio}× ({mark}) | {f.first_request_ms:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
