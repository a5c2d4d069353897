"""The partner routes for any transport: the LRS (FastAPI) and the partners Lambda both
hand a request here as (method, path, secret, query, body) and send back the `Answer`.

Every route needs the admin key, except GET /partners/{id}, which a partner key may call
for its own record. Answers are UMEs; each request is metered (never billed).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from trinity_beast.domain.envelope import Envelopes, dumps
from trinity_beast.domain.keys import ApiKey
from trinity_beast.domain.partners.model import PartnerError
from trinity_beast.services.auth import Credentials, authenticate, quota_for
from trinity_beast.services.partners.ec2 import Ec2Network
from trinity_beast.services.partners.service import PartnerService
from trinity_beast.services.partners.wizard import StackNetwork
from trinity_beast.services.reports.answers import Answer

if TYPE_CHECKING:
    from trinity_beast.services.runtime import Runtime

MAX_BODY = 16 * 1024
_ID = r"(?P<id>[^/]{1,64})"

Handler = Callable[["PartnerApi", ApiKey, dict[str, str], dict[str, Any]], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    label: str  # the path template: what metering and docs show
    handler: Handler
    admin: bool = True


ROUTES: list[Route] = []


def route(method: str, template: str, admin: bool = True) -> Callable[[Handler], Handler]:
    pattern = re.compile("^" + template.replace("{id}", _ID) + "$")

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, pattern, template, handler, admin))
        return handler

    return register


def templates() -> list[tuple[str, str]]:
    """(method, path template) of every partner route, for the template and the docs."""
    return [(r.method, r.label) for r in ROUTES]


class PartnerApi:
    def __init__(self, rt: Runtime, envelopes: Envelopes, network: Callable[[], Ec2Network] | None = None) -> None:
        self.rt = rt
        self.envelopes = envelopes
        settings = rt.settings
        self.service = PartnerService(
            rt.db, StackNetwork.from_settings(settings), network or (lambda: Ec2Network.from_settings(settings))
        )

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Service calls block (database, boto3): run them off the event loop."""
        return await asyncio.to_thread(fn, *args)

    async def handle(
        self,
        method: str,
        path: str,
        secret: Credentials | str | None,
        query: Sequence[tuple[str, str]],
        body: bytes | None,
    ) -> Answer:
        started = time.perf_counter()
        path = path.rstrip("/") or "/"
        shown = path[:200]
        matches = [(r, m) for r in ROUTES if (m := r.pattern.match(path))]
        if not matches:
            return self._answer(404, shown, None, error=f"unknown path {shown}")
        found = next(((r, m) for r, m in matches if r.method == method), None)
        if found is None:
            allowed = ", ".join(sorted({r.method for r, _ in matches}))
            return self._answer(
                405, shown, None, error=f"method {method} not allowed on {shown}", headers={"Allow": allowed}
            )
        spec, match = found
        key, problem = await authenticate(self.rt.keys, secret)
        if problem is not None or key is None:
            answer = self._answer(401, shown, None, error=problem or "invalid API key")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="trinity-beast"'
            return answer
        if spec.admin and key.tier != "admin":
            answer = self._answer(
                403, shown, key, error=f"{spec.method} {spec.label} needs an admin key; this is a {key.tier} key"
            )
            return self._metered(key, spec, answer, started)
        try:
            payload = self._body(body) if method in ("POST", "DELETE") else {}
            payload.update({n: v for n, v in query if n != "api_key" and n not in payload})
            status, data = await spec.handler(self, key, match.groupdict(), payload)
            answer = self._answer(status, shown, key, data=data)
        except PartnerError as exc:
            answer = self._answer(exc.status, shown, key, data=exc.data, error=exc.message)
        return self._metered(key, spec, answer, started)

    @staticmethod
    def _body(body: bytes | None) -> dict[str, Any]:
        if not body or not body.strip():
            return {}
        if len(body) > MAX_BODY:
            raise PartnerError(413, f"request body too large: at most {MAX_BODY} bytes")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PartnerError(400, f"malformed JSON body: {str(exc).split(':')[0]}") from None
        if not isinstance(value, dict):
            raise PartnerError(400, "expected a JSON object as the request body")
        return value

    def _answer(
        self,
        status: int,
        endpoint: str,
        key: ApiKey | None,
        data: Any = None,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        key_id = None if key is None else key.id
        if error is None:
            body = self.envelopes.ok(endpoint, data, api_key_id=key_id, status_code=status)
        else:
            body = self.envelopes.error(endpoint, status, error, api_key_id=key_id, data=data)
        return Answer(status, dumps(body), headers=dict(headers or {}))

    def _metered(self, key: ApiKey, spec: Route, answer: Answer, started: float) -> Answer:
        self.rt.meter.record(
            key.id, spec.label, "-", "http", answer.status, time.perf_counter() - started, billable=False
        )
        return answer

    async def usage_of(self, key_id: str | None) -> dict[str, Any] | None:
        """The partner key's state and its requests this month (partners are never limited)."""
        key = None if key_id is None else await asyncio.to_thread(self.rt.db.key_by_id, key_id)
        if key is None:
            return None
        quota = await quota_for(self.rt.meter, key)
        return {"api_key_id": key.id, "key_active": key.active, "monthly_usage": quota.used}


# --- the routes ------------------------------------------------------------------------


@route("GET", "/partners")
async def list_partners(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    partners = await api.call(api.service.list)
    rows = [{**p.public(), "usage": await api.usage_of(p.api_key_id)} for p in partners]
    counts = {
        s: sum(1 for p in partners if p.status == s) for s in ("invited", "pending", "active", "rejected", "revoked")
    }
    return 200, {"partners": rows, "count": len(rows), "by_status": counts, "stack": api.service.stack.public()}


@route("POST", "/partners")
async def create_partner(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    partner, secret = await api.call(api.service.create, body, key.id)
    data: dict[str, Any] = {
        "partner": partner.public(),
        "api_key": {
            "id": partner.api_key_id,
            "key": secret,
            "tier": "partner",
            "note": "shown once and stored only as a hash: hand it to the partner now",
        },
    }
    try:
        data["onboarding"] = await api.call(api.service.onboarding, partner)
    except PartnerError as exc:
        data["onboarding"] = None
        data["onboarding_error"] = exc.message
    return 201, data


@route("POST", "/partners/preview")
async def preview(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    return 200, await api.call(api.service.preview, body)


@route("GET", "/partners/pending")
async def pending(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    requests = await api.call(api.service.pending)
    return 200, {"requests": requests, "count": len(requests)}


@route("POST", "/partners/pending/reject")
async def reject_request(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    changed = await api.call(api.service.reject_request, body.get("connection_id"), key.id)
    return 200, {"connection_id": body.get("connection_id"), "changed": changed}


@route("GET", "/partners/audit")
async def audit(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    entries = await api.call(api.service.audit, None, 500)
    return 200, {"entries": [e.public() for e in entries]}


@route("POST", "/partners/reconcile")
async def reconcile_all(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    results = await api.call(api.service.reconcile, key.id)
    return 200, {
        "partners": results,
        "drifted": sum(1 for r in results if r["drift"]),
        "adopted": sum(len(r["adopted"]) for r in results),
    }


@route("GET", "/partners/{id}", admin=False)
async def get_partner(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    if key.tier != "admin":
        partner = await api.call(api.service.db.partner_by_id, path["id"])
        if partner is None or partner.api_key_id != key.id:
            raise PartnerError(403, "a partner key can read only its own partner record")
        return 200, {"partner": partner.public(), "usage": await api.usage_of(partner.api_key_id)}
    partner = await api.call(api.service.get, path["id"])
    trail = await api.call(api.service.audit, partner.id)
    return 200, {
        "partner": partner.public(),
        "usage": await api.usage_of(partner.api_key_id),
        "audit": [e.public() for e in trail],
    }


@route("GET", "/partners/{id}/onboarding")
async def partner_onboarding(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    return 200, await api.call(api.service.onboarding_of, path["id"])


@route("GET", "/partners/{id}/handoff")
async def partner_handoff(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    return 200, await api.call(api.service.handoff, path["id"])


@route("GET", "/partners/{id}/teardown")
async def teardown_plan(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    return 200, await api.call(api.service.teardown_plan, path["id"])


@route("POST", "/partners/{id}/reconcile")
async def reconcile_one(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    return 200, (await api.call(api.service.reconcile, key.id, path["id"]))[0]


@route("POST", "/partners/{id}/connection")
async def register(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    partner = await api.call(api.service.register, path["id"], body.get("connection_id"), key.id)
    return 200, {"partner": partner.public()}


@route("POST", "/partners/{id}/approve")
async def approve(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    partner, changed = await api.call(api.service.approve, path["id"], key.id, body.get("connection_id"))
    return 200, {"partner": partner.public(), "changed": changed}


@route("POST", "/partners/{id}/reject")
async def reject(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    partner, changed, remain = await api.call(api.service.reject, path["id"], key.id, _reason(body))
    return 200, {"partner": partner.public(), "changed": changed, "remain": [p.public() for p in remain]}


@route("POST", "/partners/{id}/revoke")
async def revoke(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    partner, changed, remain = await api.call(api.service.revoke, path["id"], key.id, _reason(body))
    return 200, {"partner": partner.public(), "changed": changed, "remain": [p.public() for p in remain]}


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason") or ""
    if not isinstance(reason, str) or len(reason) > 500:
        raise PartnerError(400, "reason: expected text of at most 500 characters")
    return reason.strip()


@route("GET", "/security-groups/udp")
async def udp_access(api: PartnerApi, key: ApiKey, path: dict[str, str], q: dict[str, Any]) -> tuple[int, Any]:
    rules = await api.call(api.service.udp_access)
    stack = api.service.stack
    return 200, {"security_group_id": stack.security_group_id, "ports": list(stack.udp_ports), "rules": rules}


@route("POST", "/security-groups/udp")
async def allow_udp(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    done = await api.call(api.service.allow_udp, body.get("cidr"), body.get("description"), key.id)
    return 200, {"cidr": body.get("cidr"), **done, "rules": await api.call(api.service.udp_access)}


@route("DELETE", "/security-groups/udp")
async def deny_udp(api: PartnerApi, key: ApiKey, path: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    changed = await api.call(api.service.deny_udp, body.get("cidr"), key.id)
    return 200, {"cidr": body.get("cidr"), "changed": changed, "rules": await api.call(api.service.udp_access)}
