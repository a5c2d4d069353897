"""GET /reports/usage and GET /usage/me from API Gateway: the container's FastAPI LRS app
(trinity_beast.transports.http.lrs) through Mangum, so the routes are the LRS's own."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.transports.aws_lambda.api import AsgiFunction, logger, metrics, tracer


def build_app(rt: Any) -> Any:
    from trinity_beast.transports.http.lrs import build_lrs

    return build_lrs(rt)


lrs = AsgiFunction(build_app)


@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return lrs(event, context)
