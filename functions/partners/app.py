"""Partner management from API Gateway: the same routes as the LRS (/partners…,
/security-groups/udp), answered by trinity_beast.transports.http.partners with EC2 through boto3."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from trinity_beast.transports.aws_lambda.api import (
    LambdaRuntime, answer_response, handle, header_pairs, logger, make_resolver, metrics, query_pairs,
)
from trinity_beast.services.auth import secret_from
from trinity_beast.transports.http.partners import PartnerApi

app, envelopes = make_resolver("LRS")
runtime = LambdaRuntime()
_apis: dict[int, PartnerApi] = {}  # one per Runtime (one per warm container)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # the dispatcher answers 405 itself


def partner_api(rt) -> PartnerApi:
    if id(rt) not in _apis:
        _apis[id(rt)] = PartnerApi(rt, envelopes)
    return _apis[id(rt)]


@app.route("/partners", method=METHODS)
@app.route("/partners/<first>", method=METHODS)
@app.route("/partners/<first>/<second>", method=METHODS)
@app.route("/security-groups/udp", method=METHODS)
def partners(**_path: str):
    event = app.current_event
    query = query_pairs(event)
    secret = secret_from(header_pairs(event), query)
    body = (event.decoded_body or "").encode("utf-8", "surrogatepass")
    answer = runtime.run(lambda rt: partner_api(rt).handle(event.http_method, event.path, secret, query, body))
    return answer_response(answer)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    return handle(app, envelopes, event, context)
