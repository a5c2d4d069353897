"""GET /ws/assets: the prewarmed assets and the exchanges that quote each. No auth."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.domain.assets import load_registry
from trinity_beast.transports.aws_lambda.api import envelope_response, handle, logger, make_resolver, metrics

app, envelopes = make_resolver()


@app.get("/ws/assets")
def list_assets():
    return envelope_response(envelopes.ok("/ws/assets", load_registry().listing()))


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return handle(app, envelopes, event, context)
