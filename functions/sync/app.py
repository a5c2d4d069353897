"""Scheduled (EventBridge, every minute): move closed usage minutes into the database, prewarm stale prices."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.domain.errors import DatabaseUnavailable
from trinity_beast.domain.setting_values import ConfigError
from trinity_beast.transports.aws_lambda.api import LambdaRuntime, logger, metrics, tracer

runtime = LambdaRuntime()
PREWARM_MARGIN_S = 5.0  # leave time to flush and answer before the function's timeout


def refusal(event: Any) -> str | None:
    """Why `event` is not a schedule tick (None if it is one, or an empty manual `{}`)."""
    if not isinstance(event, dict):
        return f"expected an EventBridge scheduled event object, got {type(event).__name__}"
    if event and EventBridgeEvent(event).get("detail-type") != "Scheduled Event":
        return f"expected detail-type 'Scheduled Event', got {event.get('detail-type')!r}"
    return None


@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
def handler(event: Any, context: LambdaContext) -> dict:
    why = refusal(event)
    if why is not None:
        logger.warning("refused a malformed event", extra={"why": why})
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        return {"ok": False, "error": f"malformed event: {why}"}
    budget_s = max(1.0, context.get_remaining_time_in_millis() / 1000 - PREWARM_MARGIN_S)
    from trinity_beast.services.prices.prewarm import (
        prewarm_stale,  # at the first tick, not at import (bench/lambda_import.py)
    )
    from trinity_beast.services.sync import options, sync_once

    async def work(rt):
        warm = (lambda: prewarm_stale(rt.rest, rt.live, rt.cache, budget_s)) if rt.settings.prewarm else None
        return await sync_once(rt.cache, rt.db, prewarm=warm, **options(rt.settings))

    try:
        result = runtime.run(work)
    except (ConfigError, DatabaseUnavailable) as exc:  # e.g. the secret unreadable just now: the next tick retries
        logger.error("usage sync could not start", extra={"why": str(exc)})
        metrics.add_metric(name="SyncErrors", unit=MetricUnit.Count, value=1)
        return {"ok": False, "error": str(exc)}
    metrics.add_metric(name="UsageBucketsSynced", unit=MetricUnit.Count, value=result.buckets)
    metrics.add_metric(name="UsageRequestsSynced", unit=MetricUnit.Count, value=result.requests)
    metrics.add_metric(name="SyncErrors", unit=MetricUnit.Count, value=len(result.errors))
    logger.info("usage sync", extra={"result": asdict(result)})
    return {"ok": not result.errors, **asdict(result)}
