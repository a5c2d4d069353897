"""Per-deployment secrets kept in the database: made by the first process that needs one,
read by every other (all processes of a deployment share its database)."""

from __future__ import annotations

import secrets
import time

from trinity_beast.stores.db.repository import Repository


class DeploymentRows(Repository):
    def deployment_secret(self, name: str, nbytes: int = 32) -> str:
        """The secret called `name`, generated (random, `nbytes` bytes, hex) the first time.

        Concurrent first starts agree: the insert that loses the race changes nothing and
        every process reads the one row that won."""
        with self.transaction():
            self._execute(
                "INSERT INTO deployment_secrets (name, value, created_at) VALUES (:n, :v, :t) ON CONFLICT (name) DO NOTHING",
                {"n": name, "v": secrets.token_hex(nbytes), "t": time.time()},
            )
            rows = self._execute("SELECT value FROM deployment_secrets WHERE name = :n", {"n": name})[0]
        return str(rows[0][0])
