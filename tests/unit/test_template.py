"""template.yaml, transformed by samtranslator the way CloudFormation would, per deployment mode.

The Conditions are evaluated for each DeploymentMode (a small evaluator for the intrinsic
functions the template uses), so the test sees which services exist and how many tasks
each starts with, as a deployed stack would.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from samlocal import load_template

PARAMS = {"LpoImageUri": "123456789012.dkr.ecr.us-east-2.amazonaws.com/lpo:1", "LrsImageUri": "x/lrs:1"}


class _NoPolicies:
    """samtranslator's managed-policy loader, offline (the library ships its own list)."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-2")
    from samtranslator.translator.transform import transform

    sam = load_template()
    for res in sam["Resources"].values():
        props = res.get("Properties", {})
        for uri in ("CodeUri", "ContentUri"):
            if isinstance(props.get(uri), str):
                props[uri] = f"s3://bucket/{props[uri].strip('/')}.zip"
    return transform(sam, {}, _NoPolicies())


def defaults(cfn: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    values = {name: p.get("Default") for name, p in cfn["Parameters"].items()}
    values.update(PARAMS)
    values.update(overrides)
    for name, p in cfn["Parameters"].items():
        if p["Type"] == "CommaDelimitedList" and isinstance(values[name], str):
            values[name] = values[name].split(",")
    values.update({"AWS::Region": "us-east-2", "AWS::AccountId": "123456789012", "AWS::StackName": "tb", "AWS::Partition": "aws"})
    return values


class Stack:
    """The translated template with Conditions and Fn::If resolved for one set of parameters."""

    def __init__(self, cfn: dict[str, Any], params: dict[str, Any]) -> None:
        self.params = params
        self.conditions: dict[str, bool] = {}
        self._raw = cfn["Conditions"]
        for name in self._raw:
            self.condition(name)
        self.resources = {
            name: self.resolve(copy.deepcopy(res))
            for name, res in cfn["Resources"].items()
            if "Condition" not in res or self.conditions[res["Condition"]]
        }

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self._raw[name]))
        return self.conditions[name]

    def value(self, node: Any) -> Any:
        """Evaluate a condition expression or a plain value."""
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref" and arg in self.params:
                return self.params[arg]
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.value(a) for a in arg)
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
        return node

    def resolve(self, node: Any) -> Any:
        """Replace Fn::If by its chosen branch and parameter Refs by their values, everywhere."""
        none = {"Ref": "AWS::NoValue"}
        if isinstance(node, list):
            return [v for v in map(self.resolve, node) if v != none]
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                cond, yes, no = node["Fn::If"]
                return self.resolve(yes if self.condition(cond) else no)
            if set(node) == {"Ref"} and node["Ref"] in self.params:
                return self.params[node["Ref"]]
            if set(node) == {"Fn::Select"}:
                index, items = self.resolve(node["Fn::Select"])
                if isinstance(items, list):
                    return items[index]
            return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v != none}
        return node

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.resources.items() if r["Type"] == kind}

    def props(self, name: str) -> dict[str, Any]:
        return self.resources[name]["Properties"]

    def container(self, task: str) -> dict[str, Any]:
        [c] = self.props(task)["ContainerDefinitions"]
        return c


def stack(cfn: dict[str, Any], **params: Any) -> Stack:
    return Stack(cfn, defaults(cfn, **params))


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def test_every_function_shares_the_layer_and_has_its_events(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    [layer] = s.of_type("AWS::Lambda::LayerVersion")
    functions = s.of_type("AWS::Lambda::Function")
    assert {"AssetsFunction", "ReportsFunction", "SyncFunction"} <= set(functions)
    for name, fn in functions.items():
        assert fn["Properties"]["Runtime"] == "python3.11", name
        assert fn["Properties"]["Layers"] == [{"Ref": layer}], name
        assert fn["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "TrinityBeast"
    routes = {
        (p["Properties"]["FunctionName"]["Ref"], p["Properties"]["SourceArn"]["Fn::Sub"][0].rsplit("}/", 1)[1])
        for p in s.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert {
        ("AssetsFunction", "GET/ws/assets"), ("ReportsFunction", "GET/reports/usage"), ("ReportsFunction", "GET/usage/me")
    } <= routes  # (the partners function adds its own routes)
    body = s.props("ServerlessRestApi")["Body"]["paths"]
    assert {"/ws/assets", "/reports/usage", "/usage/me"} <= set(body)
    for fn in ("ReportsFunction", "SyncFunction"):
        vpc = functions[fn]["Properties"]["VpcConfig"]
        assert vpc["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
        variables = functions[fn]["Properties"]["Environment"]["Variables"]
        assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecret"}
        assert variables["REDIS_URL"] == {"Fn::Sub": "rediss://${Cache.ClusterEndpoint.Address}:6379"}
        assert "DATABASE_URL" not in variables
    assert "VpcConfig" not in functions["AssetsFunction"]["Properties"]  # needs neither store


def test_ports_load_balancers_and_privatelink(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    listeners = {
        (r["Properties"]["LoadBalancerArn"]["Ref"], r["Properties"]["Protocol"], r["Properties"]["Port"])
        for r in s.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners == {
        ("PublicAlb", "HTTP", 80), ("PublicAlb", "HTTP", 9090),
        ("TcpNlb", "TCP", 8080), ("TcpNlb", "TCP", 9090),
        ("UdpNlb", "UDP", 2679), ("UdpNlb", "UDP", 2680),
    }
    assert s.props("PublicAlb")["Scheme"] == "internet-facing"
    assert s.props("TcpNlb")["Scheme"] == s.props("UdpNlb")["Scheme"] == "internal"
    service = s.props("PartnerEndpointService")
    assert service == {"NetworkLoadBalancerArns": [{"Ref": "TcpNlb"}], "AcceptanceRequired": True}
    groups = s.of_type("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert all(g["Properties"]["TargetType"] == "ip" for g in groups.values())
    assert {g["Properties"]["Port"]: g["Properties"]["Protocol"] for g in groups.values() if g["Properties"]["Protocol"] == "UDP"} == {2679: "UDP", 2680: "UDP"}
    # UDP targets are health-checked over HTTP on the task's own /health.
    assert s.props("LpoUdpTargetGroup")["HealthCheckPort"] == "8080" and s.props("LrsUdpTargetGroup")["HealthCheckPort"] == "9090"
    outputs = cfn["Outputs"]
    for name in ("ApiUrl", "PriceUrl", "ReportsUrl", "PrivateLinkServiceName", "UdpNlbDns", "TcpNlbDns", "PartnerSecurityGroupId"):
        assert name in outputs, name
    assert outputs["PrivateLinkServiceName"]["Value"] == {"Fn::Sub": "com.amazonaws.vpce.${AWS::Region}.${PartnerEndpointService}"}
    https = stack(cfn, CertificateArn="arn:aws:acm:us-east-2:123456789012:certificate/x")
    assert https.props("HttpsListener")["Port"] == 443 and "HttpsListener" not in s.resources


def test_data_stores_and_the_database_secret(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    assert s.props("Cache")["TLSEnabled"] is True and s.props("Cache")["Port"] == 6379
    db = s.props("Database")
    assert db["Engine"] == "aurora-postgresql" and "ServerlessV2ScalingConfiguration" in db
    assert s.props("DatabaseInstance")["DBInstanceClass"] == "db.serverless"
    assert "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}" == db["MasterUserPassword"]["Fn::Sub"]
    assert s.props("DatabaseSecretAttachment")["TargetType"] == "AWS::RDS::DBCluster"
    for task in ("LpoTaskDefinition", "LrsTaskDefinition"):
        c = s.container(task)
        assert c["Secrets"] == [{"Name": "DATABASE_SECRET", "ValueFrom": {"Ref": "DatabaseSecret"}}]
        assert "DATABASE_URL" not in env(c) and env(c)["REDIS_URL"]["Fn::Sub"].startswith("rediss://")
    # Only the tasks and the functions reach the stores.
    for sg, port in (("CacheSecurityGroup", 6379), ("DatabaseSecurityGroup", 5432)):
        rules = s.props(sg)["SecurityGroupIngress"]
        assert {r["SourceSecurityGroupId"]["Ref"] for r in rules} == {"TaskSecurityGroup", "FunctionSecurityGroup"}
        assert {r["FromPort"] for r in rules} == {port}


def test_iam_roles_are_least_privilege(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    assert "Policies" not in s.props("LpoTaskRole") and "ManagedPolicyArns" not in s.props("LpoTaskRole")
    statements = s.props("TaskExecutionRole")["Policies"][0]["PolicyDocument"]["Statement"]
    assert {a for st in statements for a in st["Action"]} == {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage", "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue",
    }
    wildcard = [st for st in statements if st["Resource"] == "*"]
    assert [st["Action"] for st in wildcard] == [["ecr:GetAuthorizationToken"]]  # the one action with no resource
    partner = s.props("PartnerNetworkPolicy")["PolicyDocument"]["Statement"]
    assert all(st["Resource"] == "*" for st in partner if any(a.startswith("ec2:Describe") for a in st["Action"]))
    assert all(st["Resource"] != "*" for st in partner if not all(a.startswith("ec2:Describe") for a in st["Action"]))
    for fn in ("ReportsFunction", "SyncFunction"):
        role = s.props(s.props(fn)["Role"]["Fn::GetAtt"][0])
        docs = [p["PolicyDocument"] for p in role.get("Policies", [])]
        assert [st["Action"] for d in docs for st in d["Statement"]] == [["secretsmanager:GetSecretValue"]]


def lpo_load_balancers(s: Stack) -> set[tuple[int, str]]:
    return {(lb["ContainerPort"], lb["TargetGroupArn"]["Ref"]) for lb in s.props("LpoService")["LoadBalancers"]}


def test_independent_mode_runs_lpo_lrs_and_the_sync_function_apart(cfn: dict[str, Any]) -> None:
    s = stack(cfn, DeploymentMode="independent", LpoMinTasks=2, LpoMaxTasks=10, LrsTaskCount=2)
    lpo, lrs = s.container("LpoTaskDefinition"), s.container("LrsTaskDefinition")
    assert lpo["Command"] == ["serve", "--only", "lpo", "--no-sync"] and env(lpo)["APP_REPORT_SERVER"] == "false"
    assert lrs["Command"] == ["serve", "--only", "lrs", "--no-sync"]
    assert s.props("LpoService")["DesiredCount"] == 2 and s.props("LrsService")["DesiredCount"] == 2
    assert lpo_load_balancers(s) == {(8080, "LpoHttpTargetGroup"), (8080, "LpoTcpTargetGroup"), (2679, "LpoUdpTargetGroup")}
    assert {(p["ContainerPort"], p["Protocol"]) for p in lpo["PortMappings"]} == {(8080, "tcp"), (2679, "udp")}
    assert {(p["ContainerPort"], p["Protocol"]) for p in lrs["PortMappings"]} == {(9090, "tcp"), (2680, "udp")}
    [rule] = s.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "ENABLED" and rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    target = s.props("LpoScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableDimension"]) == (2, 10, "ecs:service:DesiredCount")
    spec = s.props("LpoScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert spec == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    by_requests = stack(cfn, LpoScalingMetric="requests")
    spec = by_requests.props("LpoScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "ALBRequestCountPerTarget" and "ResourceLabel" in spec


def test_combined_mode_is_one_container_serving_both(cfn: dict[str, Any]) -> None:
    s = stack(cfn, DeploymentMode="combined", LpoTaskCount=7)
    assert "LrsService" not in s.resources and "LrsTaskDefinition" not in s.resources
    assert "LpoScalableTarget" not in s.resources
    lpo = s.container("LpoTaskDefinition")
    assert lpo["Command"] == ["serve"] and env(lpo)["APP_REPORT_SERVER"] == "true"
    # X-Forwarded-For is trusted from the VPC's own hops only (per-address WebSocket limits).
    assert env(lpo)["FORWARDED_ALLOW_IPS"] == "10.0.0.0/16"  # the VpcCidr parameter
    assert {p["ContainerPort"] for p in lpo["PortMappings"]} == {8080, 2679, 9090, 2680}
    assert s.props("LpoService")["DesiredCount"] == 1
    assert lpo_load_balancers(s) == {
        (8080, "LpoHttpTargetGroup"), (8080, "LpoTcpTargetGroup"), (2679, "LpoUdpTargetGroup"),
        (9090, "LrsHttpTargetGroup"), (9090, "LrsTcpTargetGroup"), (2680, "LrsUdpTargetGroup"),
    }
    [rule] = s.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "DISABLED"  # the container syncs


def test_hybrid_mode_scales_lpo_to_n_and_keeps_one_lrs(cfn: dict[str, Any]) -> None:
    s = stack(cfn, DeploymentMode="hybrid", LpoTaskCount=5, LrsTaskCount=3)
    assert s.props("LpoService")["DesiredCount"] == 5 and s.props("LrsService")["DesiredCount"] == 1
    assert "LpoScalableTarget" not in s.resources
    assert s.container("LpoTaskDefinition")["Command"] == ["serve", "--only", "lpo", "--no-sync"]
    assert s.container("LrsTaskDefinition")["Command"] == ["serve", "--only", "lrs"]  # the LRS task syncs
    [rule] = s.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "DISABLED"


def test_tasks_stop_gracefully_and_roll_back_failed_deployments(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    for task in ("LpoTaskDefinition", "LrsTaskDefinition"):
        c = s.container(task)
        assert c["LinuxParameters"] == {"InitProcessEnabled": True} and c["StopTimeout"] >= 20
        assert c["HealthCheck"]["Command"][0] == "CMD-SHELL" and "/health" in c["HealthCheck"]["Command"][1]
        assert c["LogConfiguration"]["LogDriver"] == "awslogs"
    for service in ("LpoService", "LrsService"):
        config = s.props(service)["DeploymentConfiguration"]
        assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        assert s.props(service)["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_vpc_is_created_by_default_or_taken_from_parameters(cfn: dict[str, Any]) -> None:
    created = stack(cfn)
    assert created.props("Vpc")["CidrBlock"] == "10.0.0.0/16"
    assert len(created.of_type("AWS::EC2::Subnet")) == 4 and len(created.of_type("AWS::EC2::NatGateway")) == 1
    existing = stack(
        cfn, ExistingVpcId="vpc-0abc", ExistingPublicSubnetIds="subnet-1,subnet-2",
        ExistingPrivateSubnetIds="subnet-3,subnet-4", ExistingPrivateRouteTableId="rtb-1", VpcCidr="172.31.0.0/16",
    )
    assert not existing.of_type("AWS::EC2::VPC") and not existing.of_type("AWS::EC2::Subnet")
    assert existing.props("TaskSecurityGroup")["VpcId"] == "vpc-0abc"
    assert existing.props("LpoService")["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == ["subnet-3", "subnet-4"]
    assert existing.props("PublicAlb")["Subnets"] == ["subnet-1", "subnet-2"]
    lrs_env = env(existing.container("LrsTaskDefinition"))
    assert lrs_env["BEAST_VPC_ID"] == "vpc-0abc" and lrs_env["BEAST_ROUTE_TABLE_ID"] == "rtb-1"
    fixed = stack(cfn, UdpNlbPrivateIps="10.0.2.100,10.0.3.100")
    assert [m["PrivateIPv4Address"] for m in fixed.props("UdpNlb")["SubnetMappings"]] == ["10.0.2.100", "10.0.3.100"]
    assert env(fixed.container("LrsTaskDefinition"))["BEAST_UDP_NLB_IP"] == "10.0.2.100"
