"""GET /reports/usage and GET /usage/me: the LRS answers, from API Gateway."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.transports.aws_lambda.api import (
    LambdaRuntime, answer_response, handle, header_pairs, logger, make_resolver, metrics, query_pairs,
)
from trinity_beast.services.reports.answers import answer_report, answer_usage_me
from trinity_beast.services.auth import secret_from

app, envelopes = make_resolver("LRS")
runtime = LambdaRuntime()


@app.get("/reports/usage")
def usage_report():
    event = app.current_event
    params = query_pairs(event)
    secret = secret_from(header_pairs(event), params)
    return answer_response(runtime.run(lambda rt: answer_report(rt, secret, params, envelopes)))


@app.get("/usage/me")
def usage_me():
    event = app.current_event
    secret = secret_from(header_pairs(event), query_pairs(event))
    return answer_response(runtime.run(lambda rt: answer_usage_me(rt, secret, envelopes)))


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return handle(app, envelopes, event, context)
