"""GET /ws/assets: the prewarmed assets and the exchanges that quote each. No auth, no stores."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.domain.assets import load_registry
from trinity_beast.transports.aws_lambda.api import envelope_response, handle, logger, make_resolver, metrics, tracer

app, envelopes = make_resolver("LPO")  # GET /ws/assets is an LPO route: the LPO's tag and profile


@app.get("/ws/assets")
def list_assets():
    return envelope_response(envelopes.ok("/ws/assets", load_registry().listing()))


@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return handle(app, envelopes, event, context)
