"""Issue 13, probe 4: PostgreSQL restarted under load answers 503s, never 500s.

A private PostgreSQL (tests/integration/private_postgres.py: initdb + pg_ctl on a free port) is stopped with
`pg_ctl stop -m fast` and started again while HTTP and UDP requests keep coming. Before, the
server-side errors of a restart (57P01 "terminating connection due to administrator command",
57P03 "the database system is starting up") reached clients as 500s: only client-side
connection errors were mapped to "unavailable". Every server-side error class that means
"cannot serve now" is now DatabaseUnavailable (stores/db/postgres.py), shown here both with
the real restart and with each SQLSTATE raised by the real server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from pg8000.exceptions import DatabaseError
from private_postgres import PrivatePostgres, private_postgres
from support import InProcessServer, in_process_server

from trinity_beast.domain.errors import DatabaseUnavailable, StatementTimeout
from trinity_beast.domain.tick import Tick
from trinity_beast.stores.db.postgres import UNAVAILABLE_CODES, PostgresDatabase


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    """One private cluster for the module (initdb takes seconds); the restart test leaves it running."""
    with private_postgres() as server:
        yield server


@pytest.mark.parametrize("code", sorted(UNAVAILABLE_CODES | {"08006", "08001", "53300", "53200", "58030"}))
def test_every_unavailable_sqlstate_is_database_unavailable(pg: PrivatePostgres, code: str) -> None:
    db = PostgresDatabase(pg.url)
    try:
        with pytest.raises(DatabaseUnavailable):
            db.query(f"DO $$ BEGIN RAISE EXCEPTION 'probe' USING ERRCODE = '{code}'; END $$")
        assert db.query("SELECT 1") == [(1,)]  # a new connection serves again
    finally:
        db.close()


def test_other_errors_stay_errors_and_a_cancelled_query_is_a_statement_timeout(pg: PrivatePostgres) -> None:
    db = PostgresDatabase(pg.url)
    try:
        with pytest.raises(DatabaseError):
            db.query("SELEC 1")
        with pytest.raises(StatementTimeout), db.transaction():
            db.execute("SET LOCAL statement_timeout = 50")
            db.query("SELECT pg_sleep(5)")
        # A backend terminated by an administrator (57P01) is reconnected transparently for a read.
        pid = db.query("SELECT pg_backend_pid()")[0][0]
        other = PostgresDatabase(pg.url)
        other.query("SELECT pg_terminate_backend(:pid)", pid=pid)
        other.close()
        assert db.query("SELECT 1") == [(1,)]
    finally:
        db.close()


def udp_ask(port: int, message: dict) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(15)
        sock.sendto(json.dumps(message).encode() + b" " * 300, ("127.0.0.1", port))  # room for a stranger's error
        return json.loads(sock.recvfrom(65536)[0])


class Load:
    """HTTP and UDP /price requests with a known key, in a thread, counting statuses."""

    def __init__(self, srv: InProcessServer, secret: str) -> None:
        self.srv, self.secret = srv, secret
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(base_url=self.srv.url, timeout=15) as c:
            while not self.stop.is_set():
                r = c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {self.secret}"})
                self.statuses[("http", r.status_code)] += 1
                me = c.get("/usage/me", headers={"Authorization": f"Bearer {self.secret}"})
                self.statuses[("usage/me", me.status_code)] += 1
                answer = udp_ask(self.srv.udp_port, {"asset": "BTC", "api_key": self.secret})
                self.statuses[("udp", answer["status_code"])] += 1


def test_a_postgres_restart_under_load_is_503_with_retry_after_and_known_keys_keep_working(
    pg: PrivatePostgres, redis_url: str, redis_namespace: str, tmp_path
) -> None:
    env = {
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis_url,
        "BEAST_REDIS_NAMESPACE": redis_namespace,
        "BEAST_DATA_DIR": str(tmp_path),
        "BEAST_IP_ADDRESS": "127.0.0.1",
        "BEAST_FEEDS": "false",
        "BEAST_PREWARM": "false",
        "BEAST_KEY_CACHE_S": "1",
    }
    with in_process_server(env, lrs=True) as srv:
        now = time.time()
        srv.call(
            srv.rt.cache.put_tick(Tick("BTC", "USD", Decimal("64000"), None, None, "coinbase", now + 3600, now + 3600))
        )
        _, known = srv.create_key("subscriber")
        _, never_seen = srv.create_key("subscriber")  # exists, but this process has not looked it up
        with httpx.Client(base_url=srv.url, timeout=15) as c:
            assert c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {known}"}).status_code == 200
        load = Load(srv, known)
        load.thread.start()
        try:
            pg.stop("fast")
            time.sleep(1.5)  # past BEAST_KEY_CACHE_S: the known key's entry has expired, and must still count
            with httpx.Client(base_url=srv.url, timeout=15) as c:
                r = c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {known}"})
                assert r.status_code == 200, r.text
                r = c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {never_seen}"})
                assert r.status_code == 503 and r.headers["retry-after"] and r.json()["status_code"] == 503
                me = c.get("/usage/me", headers={"Authorization": f"Bearer {never_seen}"})
                assert me.status_code == 503 and me.headers["retry-after"]
            assert udp_ask(srv.udp_port, {"asset": "BTC", "api_key": never_seen})["status_code"] == 503
            assert udp_ask(srv.udp_port, {"asset": "BTC", "api_key": known})["status_code"] == 200
            pg.start()
            deadline = time.time() + 60
            with httpx.Client(base_url=srv.url, timeout=15) as c:
                while c.get("/price?asset=BTC", headers={"Authorization": f"Bearer {never_seen}"}).status_code != 200:
                    assert time.time() < deadline, "the never-seen key did not work again after the restart"
                    time.sleep(0.1)
            seen = sum(load.statuses.values())
            while sum(load.statuses.values()) < seen + 6:  # the load saw the database back too
                assert time.time() < deadline
                time.sleep(0.05)
        finally:
            load.stop.set()
            load.thread.join(30)
        print(f"statuses across the restart: {dict(load.statuses)}")  # the figure in docs/reliability.md
        assert load.statuses, "the load ran"
        assert not [s for s in load.statuses if s[1] >= 500 and s[1] != 503], load.statuses
        assert all(status in (200, 503) for _, status in load.statuses), load.statuses
        assert load.statuses[("http", 200)] > 0 and load.statuses[("udp", 200)] > 0
