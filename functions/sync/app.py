"""Scheduled (EventBridge, every minute): move closed usage minutes into the database, prewarm stale prices."""

from dataclasses import asdict

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.lambda_api import LambdaRuntime, logger
from trinity_beast.prewarm import prewarm
from trinity_beast.sync import options, sync_once

runtime = LambdaRuntime()


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict) or event.get("detail-type") != "Scheduled Event":
        logger.warning("not a scheduled event; syncing anyway", extra={"event_type": type(event).__name__})
    result = runtime.run(
        lambda rt: sync_once(rt.cache, rt.db, prewarm=lambda: prewarm(rt, stale_only=True), **options(rt.settings))
    )
    logger.info("usage sync", extra={"result": asdict(result)})
    return asdict(result)
