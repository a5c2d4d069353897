"""Partner management from API Gateway (/partners…, /security-groups/udp): the container's
FastAPI LRS app through Mangum, with EC2 through boto3.

`POST /partners` is idempotent (Powertools idempotency, DynamoDB table IDEMPOTENCY_TABLE):
a client or API Gateway retrying a create gets the first answer back instead of a second
partner and key. Without IDEMPOTENCY_TABLE (local runs) creates are not deduplicated.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.transports.aws_lambda.api import AsgiFunction, count_response, logger, metrics, refusal, tracer
from trinity_beast.transports.aws_lambda.idempotency import OnceOnly


def build_app(rt: Any) -> Any:
    from trinity_beast.transports.http.lrs import build_lrs

    return build_lrs(rt)


lrs = AsgiFunction(build_app, profile="partners")  # this function serves only the partner routes
creates = OnceOnly(lrs)


@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    if refusal(event, asgi=True) is None and creates.applies(event):
        return count_response(creates(event, context), context)
    return lrs(event, context)
