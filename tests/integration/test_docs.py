"""The docs kept true by CI: every example of README.md and docs/ runs (tools/docs_runner.py)
against a live server, and the runner refuses a page that claims what is not so. The checks
that need no server (settings table, links, tags) are in tests/unit/test_docs_reference.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support import REPO, reachable, require_service

sys.path.insert(0, str(REPO / "tools"))

from docsrun.runner import run_all


@pytest.fixture
def services() -> None:
    """The README's Redis + PostgreSQL example runs on the test services."""
    require_service("Redis at 127.0.0.1:6379", reachable("127.0.0.1", 6379))
    require_service("PostgreSQL at 127.0.0.1:5432", reachable("127.0.0.1", 5432))


@pytest.mark.timeout(600)
def test_every_documented_example_holds(services: None) -> None:
    report = run_all()
    assert report.failures == [], "\n".join(report.failures)
    kinds = {label.rsplit("[", 1)[1].split()[0].rstrip("]") for label in report.checked}
    # Every kind of check ran at least once, on both stacks where the README says so.
    assert {
        "sh",
        "python",
        "expect",
        "first-start",
        "output",
        "udp-sizes",
        "fields",
        "price-fields",
        "syntax",
        "serve",
    } <= kinds
    assert any("on production" in label for label in report.checked)


WRONG_PAGE = """\
# A page that claims what is not so

<!-- run: sh status=200 -->
```sh
curl "http://127.0.0.1:8080/price?asset=BTC&api_key=$KEY"
curl "http://127.0.0.1:8080/price?asset=NOPE1&api_key=$KEY"
```

<!-- run: expect of=1 exact=status_code -->
```json
{"status_code": 201, "endpoint": "/price", "extra": 1}
```

<!-- run: first-start -->
```
First start: created an admin key. It is shown once; keep it somewhere safe.
  id:  ak_3f1c9a0e5b7d2468
  key: tbk_…
```

<!-- run: udp-sizes rows=one,each,frame,fit -->
| answer | measured |
|---|---|
| one asset | about 3,000 bytes |
| each further asset | about 400 bytes more |
| under 1,400 bytes | 3 |
| fit in 4,096 | 13 |

<!-- run: fields get=/price?asset=BTC at=data -->
| field | meaning |
|---|---|
| `assets` | … |
| `failed` | … |

<!-- run: price-fields -->
| field | in | meaning |
|---|---|---|
| `asset`, `price`, `exchange`, `cached`, `cache_age_seconds`, `timestamp`, `readable_timestamp`, `latency_ms` | always | |
| `converted_from` | sometimes | |
| `sources` | median | |

<!-- run: output args=serve env="BEAST_LPO_PORT=eighty" exit=1 -->
```
beast: invalid setting BEAST_LPO_PORT: expected a port, got 'eighty'
```

<!-- run: syntax -->
```sh
aws ec2 create-vpc-endpoint --vpc-id vpc-1 --no-such-option 1
docker build -f containers/nope/Dockerfile .
sam deploy --config-env staging
```

```python
print("an example nobody tagged")
```
"""


@pytest.mark.timeout(300)
def test_the_runner_refuses_docs_that_claim_what_is_not_so(tmp_path: Path) -> None:
    page = tmp_path / "wrong.md"
    page.write_text(WRONG_PAGE)
    failures = "\n".join(run_all([page]).failures)
    # Patterns, not today's answers: what the wrong page says is wrong whatever fields are added later.
    for expected in [
        r"request 2: documented status 200, answered 404",
        r"status_code: documented 201, answered 200",
        r"\(top\): documented but not answered: extra",
        r"\(top\): answered but not documented: .*\bstatus\b",
        r"documented 3 line\(s\), printed \d+",
        r"one asset: documented about 3,000 bytes, measured \d+",
        r"each further asset: documented about 400 bytes more, measured \d+",
        r"fit in 4,096: documented 13, measured \d+",
        r"\[fields on embedded\]: answered but not documented: .*\bduration_ms\b",
        r"stale answer: fields not in the table: .*\bstale\b",
        r"documented exit code 1, got 2",
        r"printed \"beast: invalid setting BEAST_LPO_PORT: expected a port number",
        r"--no-such-option",
        r"docker build -f containers/nope/Dockerfile: no such file",
        r"sam deploy --config-env staging: samconfig.toml has only",
        r"a ```python block without a `<!-- run: … -->` tag",
    ]:
        assert re.search(expected, failures), f"{expected!r} not reported:\n{failures}"
