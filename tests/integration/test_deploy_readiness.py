"""AWS rules a linter cannot see, checked per deployment mode on the transformed template.

Each of these once failed (or would have failed) a real stack 15-25 minutes into its creation:
a sixth target group on one ECS service, an empty image URI, a CPU/memory pair Fargate does not
offer, a reservation a new account's Lambda quota cannot give, a Ref to a resource that a
condition removed. The checks encode the limits as AWS documents them, so a template change
that breaks one fails here, before anyone pays for a failed stack.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cfnstack import MODES, PARAMS, Stack, env, stack, transformed
from samlocal import REPO, load_template

# ECS: "You can attach up to five target groups to a service" (a hard limit).
MAX_TARGET_GROUPS_PER_SERVICE = 5
# Fargate task sizes: CPU units -> the memory (MiB) each may have.
FARGATE_SIZES = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4096 + 1, 1024)),
    1024: set(range(2048, 8192 + 1, 1024)),
    2048: set(range(4096, 16384 + 1, 1024)),
    4096: set(range(8192, 30720 + 1, 1024)),
}
# Lambda: a new account's concurrency quota is 10 and AWS keeps 10 unreserved, so it can reserve nothing.
NEW_ACCOUNT_CONCURRENCY, UNRESERVED_MINIMUM = 10, 10
PSEUDO = {
    "AWS::Region",
    "AWS::AccountId",
    "AWS::StackName",
    "AWS::Partition",
    "AWS::NoValue",
    "AWS::URLSuffix",
    "AWS::StackId",
}
# Listener protocol -> target group protocols it may forward to (ELBv2).
ALB_PAIRS = {"HTTP": {"HTTP", "HTTPS"}, "HTTPS": {"HTTP", "HTTPS"}}
NLB_PAIRS = {"TCP": {"TCP", "TCP_UDP"}, "TLS": {"TCP", "TLS"}, "UDP": {"UDP", "TCP_UDP"}, "TCP_UDP": {"TCP_UDP"}}
VARIANTS = {
    "defaults": {},
    "https": {"CertificateArn": "arn:aws:acm:us-east-2:123456789012:certificate/abc"},
    "existing-vpc": {
        "ExistingVpcId": "vpc-0abc",
        "ExistingPublicSubnetIds": "subnet-1,subnet-2",
        "ExistingPublicSubnetCidrs": "10.0.0.0/24,10.0.1.0/24",
        "ExistingPrivateSubnetIds": "subnet-3,subnet-4",
        "ExistingPrivateRouteTableId": "rtb-1",
        "UdpNlbPrivateIps": "10.0.2.10,10.0.3.10",
        "AdminAccessCidr": "192.0.2.0/24",
        "PartnerRegions": "us-east-1",
    },
    "caps-on": {"ConcurrencyCaps": "on", "AlarmEmail": "ops@example.com", "AccessLogBucketName": "logs-bucket"},
}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed()


@pytest.fixture(scope="module", params=[(m, v) for m in MODES for v in VARIANTS], ids=lambda p: f"{p[0]}-{p[1]}")
def deployed(request: pytest.FixtureRequest, cfn: dict[str, Any]) -> Stack:
    mode, variant = request.param
    return stack(cfn, DeploymentMode=mode, **VARIANTS[variant])


def ref(value: Any) -> str:
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    return value["Ref"]


# ------------------------------------------------------------------ ECS and Fargate


def test_no_ecs_service_attaches_more_than_five_target_groups(deployed: Stack) -> None:
    for name, service in deployed.of_type("AWS::ECS::Service").items():
        groups = service["Properties"].get("LoadBalancers", [])
        assert len(groups) <= MAX_TARGET_GROUPS_PER_SERVICE, f"{name}: {len(groups)} target groups"


def test_every_target_group_of_a_service_matches_a_port_of_its_container(deployed: Stack) -> None:
    for name, service in deployed.of_type("AWS::ECS::Service").items():
        task = deployed.props(ref(service["Properties"]["TaskDefinition"]))
        containers = {c["Name"]: c for c in task["ContainerDefinitions"]}
        for lb in service["Properties"].get("LoadBalancers", []):
            group = deployed.props(ref(lb["TargetGroupArn"]))
            ports = {(p["ContainerPort"], p["Protocol"]) for p in containers[lb["ContainerName"]]["PortMappings"]}
            family = "udp" if group["Protocol"] == "UDP" else "tcp"
            assert (lb["ContainerPort"], family) in ports, f"{name}: {lb} not in {ports}"
            assert group["TargetType"] == "ip", f"{name}: awsvpc tasks register by IP"


def created_before(s: Stack, name: str) -> set[str]:
    """Every resource CloudFormation creates before `name`: DependsOn and references, transitively
    (references in Metadata count too: that is how a dependency on a conditional resource is made)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        res = s.resources[todo.pop()]
        depends = res.get("DependsOn", [])
        found = {depends} if isinstance(depends, str) else set(depends)
        found |= {target for _, target in references([res.get("Properties", {}), res.get("Metadata", {})])}
        for target in found & set(s.resources) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_every_target_group_of_a_service_is_on_a_listener_created_before_the_service(deployed: Stack) -> None:
    """ECS refuses a target group no load balancer uses ("does not have an associated load balancer")."""
    listeners = deployed.of_type("AWS::ElasticLoadBalancingV2::Listener")
    forwards = {
        ref(a["TargetGroupArn"]): name
        for name, listener in listeners.items()
        for a in listener["Properties"]["DefaultActions"]
        if a["Type"] == "forward"
    }
    for name, service in deployed.of_type("AWS::ECS::Service").items():
        depends = created_before(deployed, name)
        for lb in service["Properties"].get("LoadBalancers", []):
            group = ref(lb["TargetGroupArn"])
            assert group in forwards, f"{name}: {group} is on no listener"
            assert forwards[group] in depends, f"{name}: created before {forwards[group]}, which uses {group}"


def test_udp_target_groups_check_health_on_a_tcp_port_the_task_serves(deployed: Stack) -> None:
    for name, service in deployed.of_type("AWS::ECS::Service").items():
        task = deployed.props(ref(service["Properties"]["TaskDefinition"]))
        tcp = {
            p["ContainerPort"]
            for c in task["ContainerDefinitions"]
            for p in c["PortMappings"]
            if p["Protocol"] == "tcp"
        }
        for lb in service["Properties"].get("LoadBalancers", []):
            group = deployed.props(ref(lb["TargetGroupArn"]))
            if group["Protocol"] == "UDP":
                assert int(group["HealthCheckPort"]) in tcp, (
                    f"{name}: UDP {group['Port']} checked on {group['HealthCheckPort']}"
                )


def test_every_task_size_is_a_fargate_size(deployed: Stack) -> None:
    for name, task in deployed.of_type("AWS::ECS::TaskDefinition").items():
        cpu, memory = int(task["Properties"]["Cpu"]), int(task["Properties"]["Memory"])
        assert memory in FARGATE_SIZES.get(cpu, set()), f"{name}: {cpu} CPU units with {memory} MiB"


def test_task_sizes_default_to_the_seed_table(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    sizes = {
        n: (t["Properties"]["Cpu"], t["Properties"]["Memory"]) for n, t in s.of_type("AWS::ECS::TaskDefinition").items()
    }
    assert sizes == {
        "LpoTaskDefinition": ("2048", "4096"),  # LPO 2 vCPU / 4 GB
        "LrsTaskDefinition": ("4096", "8192"),  # LRS 4 vCPU / 8 GB
        "FeedsTaskDefinition": ("512", "1024"),  # the one feed task, 0.5 vCPU / 1 GB
    }
    assert s.props("SyncFunction")["MemorySize"] == 1024  # sync: 1 GB (Lambda gives it ~0.6 vCPU)


# ------------------------------------------------------------------ template Rules


class Rules:
    """The template's Rules section, evaluated for a set of parameter values as CloudFormation does."""

    def __init__(self, rules: dict[str, Any], params: dict[str, Any]) -> None:
        self.rules, self.params = rules, params

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self.params[arg]
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.value(a) for a in arg)
            if fn == "Fn::Contains":
                items = self.value(arg[0])
                items = (
                    items.split(",") if isinstance(items, str) else [self.value(v) for v in items]
                )  # a list parameter
                return self.value(arg[1]) in items
            raise AssertionError(f"rule function {fn} not understood by this test")
        return node

    def failures(self) -> list[str]:
        out = []
        for name, rule in self.rules.items():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            out += [f"{name}: {a['AssertDescription']}" for a in rule["Assertions"] if not self.value(a["Assert"])]
        return out


def rule_params(cfn: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    values = {name: str(p.get("Default", "")) for name, p in cfn["Parameters"].items()}
    values.update(PARAMS)
    values.update(overrides)
    return values


def test_rules_pass_for_the_defaults_of_every_mode(cfn: dict[str, Any]) -> None:
    for mode in MODES:
        assert Rules(cfn["Rules"], rule_params(cfn, DeploymentMode=mode)).failures() == [], mode


@pytest.mark.parametrize("mode", MODES)
def test_rules_refuse_an_empty_image_uri_before_anything_is_created(cfn: dict[str, Any], mode: str) -> None:
    no_lpo = Rules(cfn["Rules"], rule_params(cfn, DeploymentMode=mode, LpoImageUri="")).failures()
    assert [f.split(":")[0] for f in no_lpo] == ["LpoImageRequired"]
    no_lrs = Rules(cfn["Rules"], rule_params(cfn, DeploymentMode=mode, LrsImageUri="")).failures()
    # combined runs no LRS image: only the other modes need it.
    assert [f.split(":")[0] for f in no_lrs] == ([] if mode == "combined" else ["LrsImageRequired"])
    # The template's own defaults (a user pressing Enter) are refused, not deployed.
    pressing_enter = {n: str(p.get("Default", "")) for n, p in cfn["Parameters"].items()}
    assert Rules(cfn["Rules"], {**pressing_enter, "DeploymentMode": mode}).failures()


def test_rules_accept_exactly_the_fargate_sizes(cfn: dict[str, Any]) -> None:
    for task in ("Lpo", "Lrs", "Feeds"):
        cpus = cfn["Parameters"][f"{task}Cpu"]["AllowedValues"]
        memories = cfn["Parameters"][f"{task}Memory"]["AllowedValues"]
        for cpu in cpus:
            for memory in memories:
                failures = Rules(
                    cfn["Rules"], rule_params(cfn, **{f"{task}Cpu": cpu, f"{task}Memory": memory})
                ).failures()
                valid = int(memory) in FARGATE_SIZES[int(cpu)]
                assert (failures == []) == valid, (task, cpu, memory, failures)


def test_an_existing_vpc_needs_its_subnets_and_route_table(cfn: dict[str, Any]) -> None:
    failures = Rules(cfn["Rules"], rule_params(cfn, ExistingVpcId="vpc-0abc")).failures()
    assert len(failures) == 4 and all(f.startswith("ExistingVpcNeedsSubnets") for f in failures), failures
    given = {k: v for k, v in VARIANTS["existing-vpc"].items() if k.startswith("Existing")}
    assert Rules(cfn["Rules"], rule_params(cfn, **given)).failures() == []
    half = {**given, "ExistingPrivateSubnetIds": ""}
    assert [f for f in Rules(cfn["Rules"], rule_params(cfn, **half)).failures() if "ExistingPrivateSubnetIds" in f]


# ------------------------------------------------------------------ load balancers


def test_listener_and_target_group_protocols_pair_up(deployed: Stack) -> None:
    balancers = deployed.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    owner: dict[str, str] = {}
    for name, listener in deployed.of_type("AWS::ElasticLoadBalancingV2::Listener").items():
        p = listener["Properties"]
        lb = balancers[ref(p["LoadBalancerArn"])]["Properties"]
        pairs = ALB_PAIRS if lb["Type"] == "application" else NLB_PAIRS
        assert p["Protocol"] in pairs, f"{name}: {p['Protocol']} on a {lb['Type']} load balancer"
        if p["Protocol"] in ("HTTPS", "TLS"):
            assert p.get("Certificates") and p["Certificates"][0]["CertificateArn"], f"{name}: no certificate"
        for action in p["DefaultActions"]:
            if action["Type"] == "redirect":
                assert p["Protocol"] == "HTTP" and action["RedirectConfig"]["Protocol"] == "HTTPS", name
                continue
            assert action["Type"] == "forward", name
            group_name = ref(action["TargetGroupArn"])
            group = deployed.props(group_name)
            assert group["Protocol"] in pairs[p["Protocol"]], f"{name}: {p['Protocol']} -> {group['Protocol']}"
            # A target group belongs to one load balancer.
            assert owner.setdefault(group_name, ref(p["LoadBalancerArn"])) == ref(p["LoadBalancerArn"]), group_name
            if group["TargetType"] == "alb":
                # An ALB target: TCP only, and the ALB listens on the group's port.
                [target] = group["Targets"]
                assert group["Protocol"] == "TCP" and target["Port"] == group["Port"] == p["Port"], name
                alb_ports = {
                    listener["Properties"]["Port"]
                    for listener in deployed.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
                    if listener["Properties"]["LoadBalancerArn"] == target["Id"]
                }
                assert group["Port"] in alb_ports, f"{name}: the target ALB does not listen on {group['Port']}"
                assert balancers[ref(target["Id"])]["Properties"]["Type"] == "application"
    for name, group in deployed.of_type("AWS::ElasticLoadBalancingV2::TargetGroup").items():
        if group["Properties"]["Protocol"] == "UDP":
            # UDP has no health check of its own.
            assert group["Properties"]["HealthCheckProtocol"] in ("HTTP", "HTTPS", "TCP"), name


def test_with_a_certificate_plain_http_only_redirects(cfn: dict[str, Any]) -> None:
    for mode in MODES:
        s = stack(cfn, DeploymentMode=mode, **VARIANTS["https"])
        for name, listener in s.of_type("AWS::ElasticLoadBalancingV2::Listener").items():
            p = listener["Properties"]
            if p["Protocol"] == "HTTP":
                assert [a["Type"] for a in p["DefaultActions"]] == ["redirect"], name
        assert s.props("LrsAlbTargetGroup")["HealthCheckProtocol"] == "HTTPS"


def test_nothing_but_the_price_server_is_reachable_from_the_internet(deployed: Stack) -> None:
    for name, sg in deployed.of_type("AWS::EC2::SecurityGroup").items():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") == "0.0.0.0/0":
                assert name == "AlbSecurityGroup" and rule["FromPort"] in (80, 443), (name, rule)
    internet = [
        n
        for n, lb in deployed.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").items()
        if lb["Properties"]["Scheme"] == "internet-facing"
    ]
    assert internet == ["PublicAlb"]


# ------------------------------------------------------------------ values and references


def test_no_required_value_is_empty(deployed: Stack) -> None:
    for name, task in deployed.of_type("AWS::ECS::TaskDefinition").items():
        for c in task["Properties"]["ContainerDefinitions"]:
            assert c["Image"], f"{name}: empty image"
            empty = [e["Name"] for e in c["Environment"] if e["Value"] == ""]
            # The UDP NLB's address is optional (partners then look it up); nothing else may be empty.
            assert set(empty) <= {"BEAST_UDP_NLB_IP"}, f"{name}: empty {empty}"
    for name, fn in deployed.of_type("AWS::Lambda::Function").items():
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        empty = [k for k, v in variables.items() if v == ""]
        # DATABASE_URL is declared empty only so `sam local invoke --env-vars` may set it.
        assert set(empty) <= {"BEAST_UDP_NLB_IP", "DATABASE_URL"}, f"{name}: empty {empty}"
    for name, sg in deployed.of_type("AWS::EC2::SecurityGroup").items():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp", "x") != "", name


def test_reserved_concurrency_fits_a_new_account(cfn: dict[str, Any]) -> None:
    for mode in MODES:
        reserved = {
            n: f["Properties"]["ReservedConcurrentExecutions"]
            for n, f in stack(cfn, DeploymentMode=mode).of_type("AWS::Lambda::Function").items()
            if "ReservedConcurrentExecutions" in f["Properties"]
        }
        assert sum(reserved.values()) <= NEW_ACCOUNT_CONCURRENCY - UNRESERVED_MINIMUM, (mode, reserved)
    capped = stack(cfn, **VARIANTS["caps-on"])
    caps = {
        n: f["Properties"].get("ReservedConcurrentExecutions")
        for n, f in capped.of_type("AWS::Lambda::Function").items()
    }
    assert caps["SyncFunction"] == 1 and caps["ReportsFunction"] == 5 and caps["PartnersFunction"] == 2


def references(node: Any, sub_vars: frozenset[str] = frozenset()) -> Iterator[tuple[str, str]]:
    """Every ("Ref" | "GetAtt" | "Condition", name) in a resolved node, ${} in Fn::Sub included."""
    if isinstance(node, list):
        for item in node:
            yield from references(item, sub_vars)
    elif isinstance(node, dict):
        if set(node) == {"Ref"}:
            yield "Ref", node["Ref"]
            return
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            yield "GetAtt", (target[0] if isinstance(target, list) else target.split(".")[0])
            return
        if set(node) == {"Fn::Sub"}:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            yield from references(variables, sub_vars)
            for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                base = name.split(".")[0]
                if base not in variables and name not in variables:
                    yield ("GetAtt" if "." in name and not name.startswith("AWS::") else "Ref"), base
            return
        for value in node.values():
            yield from references(value, sub_vars)


def test_every_ref_and_getatt_resolves_under_the_modes_conditions(deployed: Stack, cfn: dict[str, Any]) -> None:
    known = set(deployed.resources) | set(cfn["Parameters"]) | PSEUDO
    for name, res in deployed.resources.items():
        for kind, target in references([res.get("Properties", {}), res.get("Metadata", {})]):
            assert target in known, f"{name}: {kind} {target} does not exist in this mode"
        depends = res.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            assert target in deployed.resources, f"{name}: DependsOn {target} does not exist in this mode"
    for name, output in cfn["Outputs"].items():
        if "Condition" in output and not deployed.conditions[output["Condition"]]:
            continue
        for kind, target in references(deployed.resolve(output["Value"])):
            assert target in known, f"output {name}: {kind} {target} does not exist in this mode"


# ------------------------------------------------------------------ settings each task needs

STORE_SETTINGS = {
    "REDIS_URL",
    "BEAST_REDIS_NAMESPACE",
    "DATABASE_HOST",
    "BEAST_ADMIN_KEY_SECRET_ARN",
    "BEAST_REGION",
    "BEAST_CLUSTER_NODE",
}
SECRETS = {"DATABASE_SECRET", "REDIS_PASSWORD"}


def partner_settings() -> set[str]:
    """The partner network settings the code reads (domain/settings.py), so a new one cannot be
    forgotten here (the envelope's account id is an AWS id too, but no partner setting)."""
    source = (REPO / "layers/common/trinity_beast/domain/settings.py").read_text()
    names = set(re.findall(r'aws_id\(env, "(BEAST_[A-Z_]+)"', source)) - {"BEAST_AGENT_ACCOUNT_ID"}
    assert {"BEAST_PARTNER_SERVICE_NAME", "BEAST_VPC_ID", "BEAST_ROUTE_TABLE_ID"} <= names, names
    return names


def services_in(s: Stack, task: str) -> set[str]:
    """What a task definition's container serves, from its command and environment."""
    c = s.container(task)
    command, e = c["Command"], env(c)
    if "--only" in command:
        only = command[command.index("--only") + 1]
        return {only}
    return {"lpo", "feeds", "sync"} | ({"lrs"} if e.get("APP_REPORT_SERVER") == "true" else set())


@pytest.mark.parametrize("mode", MODES)
def test_every_task_carries_the_settings_its_services_need(cfn: dict[str, Any], mode: str) -> None:
    s = stack(cfn, DeploymentMode=mode)
    served: set[str] = set()
    for task in s.of_type("AWS::ECS::TaskDefinition"):
        c = s.container(task)
        needs = services_in(s, task)
        served |= needs
        names = set(env(c))
        assert STORE_SETTINGS <= names, (task, STORE_SETTINGS - names)
        assert {x["Name"] for x in c["Secrets"]} == SECRETS, task
        if "lrs" in needs:
            # Partner onboarding (approve, peering routes, security group) answers 503 without these.
            assert partner_settings() <= names, (task, partner_settings() - names)
            role = s.props(task)["TaskRoleArn"]["Fn::GetAtt"][0]
            assert {"Ref": "PartnerNetworkPolicy"} in s.props(role)["ManagedPolicyArns"], task
        if needs & {"lpo", "feeds"}:  # (`--only lrs` starts no feeds whatever BEAST_FEEDS says)
            feeds_on = env(c).get("BEAST_FEEDS", "true") == "true" and env(c).get("BEAST_PREWARM", "true") == "true"
            assert feeds_on == ("feeds" in needs), (task, "only the task that runs the feeds may call the exchanges")
    # Every mode runs the feeds exactly once per stack, and LPO and LRS somewhere.
    feed_tasks = [t for t in s.of_type("AWS::ECS::TaskDefinition") if "feeds" in services_in(s, t)]
    assert len(feed_tasks) == 1, feed_tasks
    [feed_service] = [
        n
        for n, sv in s.of_type("AWS::ECS::Service").items()
        if ref(sv["Properties"]["TaskDefinition"]) == feed_tasks[0]
    ]
    assert s.props(feed_service)["DesiredCount"] == 1
    assert {"lpo", "lrs", "feeds"} <= served


def test_every_function_reaching_the_stores_has_their_settings_and_secrets(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    for name, fn in s.of_type("AWS::Lambda::Function").items():
        variables = fn["Properties"]["Environment"]["Variables"]
        if "REDIS_URL" in variables:
            assert variables["REDIS_SECRET_ARN"] == {"Ref": "CacheSecret"}, name
        if "DATABASE_SECRET_ARN" in variables:
            assert variables["DATABASE_HOST"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}, name
        if name == "PartnersFunction":
            assert partner_settings() <= set(variables)


# ------------------------------------------------------------------ operations


def test_every_log_group_expires_and_every_function_logs_into_one(deployed: Stack) -> None:
    groups = deployed.of_type("AWS::Logs::LogGroup")
    assert all(g["Properties"]["RetentionInDays"] in (14, 90) for g in groups.values())
    for name, fn in deployed.of_type("AWS::Lambda::Function").items():
        assert ref(fn["Properties"]["LoggingConfig"]["LogGroup"]) in groups, name
    for name, task in deployed.of_type("AWS::ECS::TaskDefinition").items():
        for c in task["Properties"]["ContainerDefinitions"]:
            assert ref(c["LogConfiguration"]["Options"]["awslogs-group"]) in groups, name


def test_api_gateway_logs_throttles_traces_and_checks_keys(deployed: Stack) -> None:
    [stage] = deployed.of_type("AWS::ApiGateway::Stage").values()
    p = stage["Properties"]
    assert p["TracingEnabled"] is True
    assert p["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    [throttle] = p["MethodSettings"]
    assert (
        throttle["ThrottlingRateLimit"] > 0
        and throttle["ThrottlingBurstLimit"] > 0
        and throttle["ResourcePath"] == "/*"
    )
    # The account's CloudWatch role is set before the stage that logs through it is created
    # (stage -> deployment -> API -> ApiGatewayAccount).
    assert "ApiGatewayAccount" in deployed.of_type("AWS::ApiGateway::Account")
    assert deployed.resources["Api"]["DependsOn"] in ("ApiGatewayAccount", ["ApiGatewayAccount"])
    assert p["RestApiId"] == {"Ref": "Api"} and ref(p["DeploymentId"]) in deployed.of_type(
        "AWS::ApiGateway::Deployment"
    )
    body = deployed.props("Api")["Body"]
    [(name, scheme)] = body["securityDefinitions"].items()
    a = scheme["x-amazon-apigateway-authorizer"]
    assert a["type"] == "request" and a["identitySource"] == "method.request.header.Authorization"
    assert 0 < a["authorizerResultTtlInSeconds"] <= 3600  # cached by API Gateway
    assert a["authorizerUri"]["Fn::Sub"][1]["__FunctionArn__"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    methods = {(path, verb): m for path, ops in body["paths"].items() for verb, m in ops.items()}
    open_routes = {k for k, m in methods.items() if m.get("security") != [{name: []}]}
    assert open_routes == {("/ws/assets", "get")}, open_routes  # the public asset list
    assert methods[("/ws/assets", "get")]["security"] == [{"NONE": []}]


def test_sam_deploy_guided_asks_no_authentication_question() -> None:
    """What `sam deploy --guided` checks before its "has no authentication. Is this okay?" prompt."""
    sam = load_template()
    apis = {n: r for n, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Api"}
    for name, res in sam["Resources"].items():
        for event in res.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "Api":
                api = apis[ref(event["Properties"]["RestApiId"])]
                assert event["Properties"].get("Auth") or api["Properties"].get("Auth"), name
    python = REPO / ".sam-venv" / "bin" / "python"
    if not python.exists():
        assert not os.environ.get("CI"), "CI runs `make sam` first, which creates .sam-venv"
        pytest.skip("no .sam-venv: `make sam` creates it; the SAM CLI's own check runs there")
    script = (
        "from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider\n"
        "from samcli.commands.deploy.auth_utils import auth_per_resource\n"
        "stacks, _ = SamLocalStackProvider.get_stacks('template.yaml', parameter_overrides={'LpoImageUri': 'x', 'LrsImageUri': 'y'})\n"
        "print(sorted({name for name, ok in auth_per_resource(stacks) if not ok}))\n"
    )
    result = subprocess.run([str(python), "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


LOGGED = {
    # metric filter pattern text -> where the code logs it
    "price write deferred": "services/prices/ingest.py",
    "usage flush deferred": "services/meter.py",
    "usage sync failed": "services/sync.py",
    "usage sync deferred": "services/sync.py",
}


def test_alarms_watch_what_the_code_logs_and_notify_the_topic(deployed: Stack) -> None:
    filters = deployed.of_type("AWS::Logs::MetricFilter")
    for name, f in filters.items():
        for phrase in re.findall(r'"([^"]+)"', f["Properties"]["FilterPattern"]):
            assert phrase in LOGGED, (name, phrase)
            source = (REPO / "layers/common/trinity_beast" / LOGGED[phrase]).read_text()
            assert phrase in source, f"{name}: the code no longer logs {phrase!r}"
    alarms = deployed.of_type("AWS::CloudWatch::Alarm")
    assert {"FeedDownAlarm", "PublicAlb5xxAlarm", "Api5xxAlarm", "SyncFailuresAlarm", "UsageBufferingAlarm"} <= set(
        alarms
    )
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    emitted = {
        (t["MetricNamespace"]["Fn::Sub"], t["MetricName"])
        for f in filters.values()
        for t in f["Properties"]["MetricTransformations"]
    }
    assert {ns for ns, _ in emitted} == {"TrinityBeast/${Stage}"}  # per stack: dev and prod in one account stay apart
    read = [
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in alarms.values()
        if "Namespace" in a["Properties"]
    ]
    read += [
        (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
        for a in alarms.values()
        for m in a["Properties"].get("Metrics", [])
        if "MetricStat" in m
    ]
    for namespace, metric in read:
        if isinstance(namespace, dict):
            assert (namespace["Fn::Sub"], metric) in emitted, f"no filter emits {metric} in this mode"
    # The sync function's own EMF metric (functions/sync/app.py) counts in independent mode.
    if deployed.conditions["IsIndependent"]:
        assert ("TrinityBeast", "SyncErrors") in read
        assert "SyncErrors" in (REPO / "functions/sync/app.py").read_text()
    feed_service = alarms["FeedDownAlarm"]["Properties"]["Dimensions"][1]["Value"]["Fn::GetAtt"][0]
    assert feed_service in deployed.resources


# ------------------------------------------------------------------ samconfig.toml


def samconfig() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO / "samconfig.toml").read_text())


def overrides(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split())


@pytest.mark.parametrize("env_name", ["default", "dev", "prod"])
def test_samconfig_environments_are_complete_and_deployable(cfn: dict[str, Any], env_name: str) -> None:
    config = samconfig()[env_name]
    assert config["global"]["parameters"]["stack_name"] and config["global"]["parameters"]["region"]
    deploy = config["deploy"]["parameters"]
    assert deploy.get("resolve_s3") is True or deploy.get("s3_bucket"), "sam deploy needs an artifact bucket"
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["s3_prefix"]
    values = overrides(deploy["parameter_overrides"])
    for name, value in values.items():
        spec = cfn["Parameters"][name]  # a misspelt parameter is a KeyError here, not a failed stack
        if "AllowedValues" in spec:
            assert value in spec["AllowedValues"], (name, value)
    assert "LpoImageUri" not in values and "LrsImageUri" not in values  # per release, given at deploy time
    # With the image URIs given, the Rules pass and the resulting stack meets the hard limits.
    assert Rules(cfn["Rules"], rule_params(cfn, **values)).failures() == []
    s = stack(cfn, **values)
    for name, service in s.of_type("AWS::ECS::Service").items():
        assert len(service["Properties"].get("LoadBalancers", [])) <= MAX_TARGET_GROUPS_PER_SERVICE, name
    for name, task in s.of_type("AWS::ECS::TaskDefinition").items():
        assert int(task["Properties"]["Memory"]) in FARGATE_SIZES[int(task["Properties"]["Cpu"])], name
    # Without them the deploy stops on the Rules before anything is created.
    bare = {n: str(p.get("Default", "")) for n, p in cfn["Parameters"].items()} | values
    assert any(f.startswith("LpoImageRequired") for f in Rules(cfn["Rules"], bare).failures())


def test_make_deploy_params_prints_what_samconfig_holds() -> None:
    for env_name in ("dev", "prod"):
        result = subprocess.run(
            ["make", "-s", "deploy-params", f"ENV={env_name}"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == samconfig()[env_name]["deploy"]["parameters"]["parameter_overrides"]


def test_the_documented_cost_table_is_the_one_the_template_gives(cfn: dict[str, Any]) -> None:
    from costs import PRICES_STATED_ON, REGION, table

    doc = (REPO / "docs" / "deploy.md").read_text()
    assert table(cfn) in doc, "docs/deploy.md's cost table is stale: paste `python tests/costs.py` into it"
    assert PRICES_STATED_ON in doc and REGION in doc and "not fetched" in doc


def test_sam_deploy_guided_prompts_are_the_documented_ones_and_none_about_authentication(tmp_path) -> None:
    """The real `sam deploy --guided --config-env dev`, Enter to every prompt, offline: it walks every
    prompt, then stops where it first needs AWS. docs/deploy.md must walk the same prompts."""
    sam = REPO / ".sam-venv" / "bin" / "sam"
    if not sam.exists():
        assert not os.environ.get("CI"), "CI runs `make sam` first, which creates .sam-venv"
        pytest.skip("no .sam-venv: `make sam` creates it")
    for name in ("template.yaml", "samconfig.toml"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())  # a scratch copy: the answers are saved there
    for name in ("functions", "layers", "events"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }  # nothing reaches AWS
    result = subprocess.run(
        [str(sam), "deploy", "--guided", "--config-env", "dev", "--template-file", "template.yaml"],
        cwd=tmp_path,
        input="\n" * 80,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    out = result.stdout + result.stderr
    assert "Looking for resources needed for deployment" in out, out[-3000:]  # every prompt answered
    assert "has no authentication" not in out
    prompts = re.findall(r"\t([A-Z][^\[\n\t]*?) \[[^\]\n]*\]: ", out)
    parameters = list(load_template()["Parameters"])
    assert prompts == [
        "Stack Name",
        "AWS Region",
        *(f"Parameter {p}" for p in parameters),
        "Confirm changes before deploy",
        "Allow SAM CLI IAM role creation",
        "Disable rollback",
        "Save arguments to configuration file",
        "SAM configuration file",
        "SAM configuration environment",
    ], prompts
    doc = (REPO / "docs" / "deploy.md").read_text()
    guided = doc[doc.index("## `sam deploy --guided`, prompt by prompt") : doc.index("## After the first deploy")]
    for prompt in prompts:
        name = prompt.removeprefix("Parameter ")
        assert (
            f"`{prompt}" in guided or f"`{name}" in guided or f"{name} [" in guided or f"`Parameter {name}" in guided
        ), prompt
    assert "has no authentication. Is this okay?" in guided  # the docs say why it is not asked
