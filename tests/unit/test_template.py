"""template.yaml, transformed by samtranslator the way CloudFormation would, per deployment mode.

The Conditions are evaluated for each DeploymentMode (a small evaluator for the intrinsic
functions the template uses), so the test sees which services exist and how many tasks
each starts with, as a deployed stack would.
"""

from __future__ import annotations

from typing import Any

import pytest

from cfnstack import Stack, env, stack, transformed


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed()


def test_every_function_shares_the_layer_and_has_its_events(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    [layer] = s.of_type("AWS::Lambda::LayerVersion")
    functions = s.of_type("AWS::Lambda::Function")
    assert {"AssetsFunction", "ReportsFunction", "SyncFunction", "PartnersFunction", "AuthorizerFunction"} <= set(
        functions
    )
    for name, fn in functions.items():
        assert fn["Properties"]["Runtime"] == "python3.11", name
        assert fn["Properties"]["Layers"] == [{"Ref": layer}], name
        assert fn["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "TrinityBeast"
        assert fn["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
        # Each function logs to its own group, which keeps logs for a set time.
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert s.props(group)["RetentionInDays"] in (14, 90), name
    routes = {
        (p["Properties"]["FunctionName"]["Ref"], p["Properties"]["SourceArn"]["Fn::Sub"][0].rsplit("}/", 1)[1])
        for p in s.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com" and "Ref" in p["Properties"]["FunctionName"]
    }
    assert {
        ("AssetsFunction", "GET/ws/assets"),
        ("ReportsFunction", "GET/reports/usage"),
        ("ReportsFunction", "GET/usage/me"),
    } <= routes  # (the partners function adds its own routes)
    body = s.props("Api")["Body"]["paths"]
    assert {"/ws/assets", "/reports/usage", "/usage/me"} <= set(body)
    for fn in ("ReportsFunction", "SyncFunction", "PartnersFunction"):
        vpc = functions[fn]["Properties"]["VpcConfig"]
        assert vpc["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
        variables = functions[fn]["Properties"]["Environment"]["Variables"]
        assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecret"}
        assert variables["DATABASE_HOST"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}
        # The URL names the MemoryDB user; the password comes from its secret, never from the environment.
        assert variables["REDIS_URL"] == {"Fn::Sub": "rediss://beast-${Stage}@${Cache.ClusterEndpoint.Address}:6379"}
        assert variables["REDIS_SECRET_ARN"] == {"Ref": "CacheSecret"}
        # DATABASE_URL is declared empty, for `sam local invoke --env-vars env.json` only.
        assert variables["DATABASE_URL"] == "" and "REDIS_PASSWORD" not in variables
    assert "VpcConfig" not in functions["AssetsFunction"]["Properties"]  # needs neither store


def test_ports_load_balancers_and_privatelink(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    listeners = {
        (r["Properties"]["LoadBalancerArn"]["Ref"], r["Properties"]["Protocol"], r["Properties"]["Port"])
        for r in s.of_type("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners == {
        ("PublicAlb", "HTTP", 80),
        ("AdminAlb", "HTTP", 9090),
        ("TcpNlb", "TCP", 8080),
        ("TcpNlb", "TCP", 9090),
        ("UdpNlb", "UDP", 2679),
        ("UdpNlb", "UDP", 2680),
    }
    # Only the price server faces the internet; the LRS (Command Center, partner admin) is internal.
    assert s.props("PublicAlb")["Scheme"] == "internet-facing"
    assert s.props("AdminAlb")["Scheme"] == s.props("TcpNlb")["Scheme"] == s.props("UdpNlb")["Scheme"] == "internal"
    public_ingress = s.props("AlbSecurityGroup")["SecurityGroupIngress"]
    assert {r["FromPort"] for r in public_ingress} == {80, 443}
    admin_ingress = s.props("AdminAlbSecurityGroup")["SecurityGroupIngress"]
    assert [(r["FromPort"], r["CidrIp"]) for r in admin_ingress] == [(9090, "10.0.0.0/16")]
    assert "AdminNetworkIngress" not in s.resources
    with_admin = stack(cfn, AdminAccessCidr="192.0.2.0/24")
    extra = with_admin.props("AdminNetworkIngress")
    assert (extra["CidrIp"], extra["FromPort"], extra["GroupId"]) == (
        "192.0.2.0/24",
        9090,
        {"Fn::GetAtt": ["AdminAlbSecurityGroup", "GroupId"]},
    )
    service = s.props("PartnerEndpointService")
    assert service == {"NetworkLoadBalancerArns": [{"Ref": "TcpNlb"}], "AcceptanceRequired": True}
    regions = stack(cfn, PartnerRegions="us-east-1,eu-west-1").props("PartnerEndpointService")
    assert regions["SupportedRegions"] == ["us-east-1", "eu-west-1"]
    # PrivateLink's 9090 reaches the LRS through the internal ALB.
    assert s.props("TcpLrsListener")["DefaultActions"] == [
        {"Type": "forward", "TargetGroupArn": {"Ref": "LrsAlbTargetGroup"}}
    ]
    assert s.props("LrsAlbTargetGroup")["Targets"] == [{"Id": {"Ref": "AdminAlb"}, "Port": 9090}]
    groups = s.of_type("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {n for n, g in groups.items() if g["Properties"]["TargetType"] != "ip"} == {"LrsAlbTargetGroup"}
    assert {
        g["Properties"]["Port"]: g["Properties"]["Protocol"]
        for g in groups.values()
        if g["Properties"]["Protocol"] == "UDP"
    } == {2679: "UDP", 2680: "UDP"}
    # UDP targets are health-checked over HTTP on the task's own /health.
    assert (
        s.props("LpoUdpTargetGroup")["HealthCheckPort"] == "8080"
        and s.props("LrsUdpTargetGroup")["HealthCheckPort"] == "9090"
    )
    outputs = cfn["Outputs"]
    for name in (
        "ApiUrl",
        "PriceUrl",
        "ReportsUrl",
        "PrivateLinkServiceName",
        "UdpNlbDns",
        "TcpNlbDns",
        "PartnerSecurityGroupId",
    ):
        assert name in outputs, name
    assert outputs["PrivateLinkServiceName"]["Value"] == {
        "Fn::Sub": "com.amazonaws.vpce.${AWS::Region}.${PartnerEndpointService}"
    }
    https = stack(cfn, CertificateArn="arn:aws:acm:us-east-2:123456789012:certificate/x")
    assert https.props("HttpsListener")["Port"] == 443 and "HttpsListener" not in s.resources
    # With a certificate port 80 only redirects, and the LRS listener speaks HTTPS too.
    assert https.props("HttpListener")["DefaultActions"] == [
        {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
    ]
    assert https.props("LrsListener")["Protocol"] == "HTTPS" and https.props("LrsListener")["Certificates"]
    assert s.props("HttpListener")["DefaultActions"][0]["Type"] == "forward"


def test_data_stores_and_the_database_secret(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    assert s.props("Cache")["TLSEnabled"] is True and s.props("Cache")["Port"] == 6379
    db = s.props("Database")
    assert db["Engine"] == "aurora-postgresql" and "ServerlessV2ScalingConfiguration" in db
    assert s.props("DatabaseInstance")["DBInstanceClass"] == "db.serverless"
    assert "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}" == db["MasterUserPassword"]["Fn::Sub"]
    assert s.props("DatabaseSecretAttachment")["TargetType"] == "AWS::RDS::DBCluster"
    for task in ("LpoTaskDefinition", "LrsTaskDefinition", "FeedsTaskDefinition"):
        c = s.container(task)
        assert c["Secrets"] == [
            {"Name": "DATABASE_SECRET", "ValueFrom": {"Ref": "DatabaseSecret"}},
            {"Name": "REDIS_PASSWORD", "ValueFrom": {"Fn::Sub": "${CacheSecret}:password::"}},
        ]
        assert "DATABASE_URL" not in env(c) and env(c)["REDIS_URL"]["Fn::Sub"].startswith("rediss://beast-${Stage}@")
        assert env(c)["DATABASE_HOST"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}
    # MemoryDB: its own user and ACL, the password from the cache secret; never open-access.
    assert s.props("Cache")["ACLName"] == {"Ref": "CacheAcl"} and s.props("CacheAcl")["UserNames"] == [
        {"Ref": "CacheUser"}
    ]
    assert s.props("CacheUser")["AuthenticationMode"] == {
        "Type": "password",
        "Passwords": [{"Fn::Sub": "{{resolve:secretsmanager:${CacheSecret}:SecretString:password}}"}],
    }
    # verify-full through RDS Proxy (its ACM certificate chains to public roots), TLS required.
    assert '"sslmode": "verify-full"' in s.props("DatabaseSecret")["GenerateSecretString"]["SecretStringTemplate"]
    proxy = s.props("DatabaseProxy")
    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["Auth"][0]["SecretArn"] == {"Ref": "DatabaseSecret"}
    assert s.props("DatabaseProxyTargets")["DBClusterIdentifiers"] == [{"Ref": "Database"}]
    # Only the tasks and the functions reach MemoryDB and the proxy; only the proxy reaches Aurora.
    for sg, port in (("CacheSecurityGroup", 6379), ("DatabaseProxySecurityGroup", 5432)):
        rules = s.props(sg)["SecurityGroupIngress"]
        assert {r["SourceSecurityGroupId"]["Ref"] for r in rules} == {"TaskSecurityGroup", "FunctionSecurityGroup"}
        assert {r["FromPort"] for r in rules} == {port}
    [rule] = s.props("DatabaseSecurityGroup")["SecurityGroupIngress"]
    assert rule["SourceSecurityGroupId"] == {"Ref": "DatabaseProxySecurityGroup"} and rule["FromPort"] == 5432


def test_iam_roles_are_least_privilege(cfn: dict[str, Any]) -> None:
    s = stack(cfn)
    # The LPO and feed tasks may only write the first admin key into its secret.
    assert "Policies" not in s.props("LpoTaskRole")
    assert s.props("LpoTaskRole")["ManagedPolicyArns"] == [{"Ref": "AdminKeyWritePolicy"}]
    [write] = s.props("AdminKeyWritePolicy")["PolicyDocument"]["Statement"]
    assert write["Resource"] == {"Ref": "AdminKeySecret"} and "secretsmanager:PutSecretValue" in write["Action"]
    assert s.props("LrsTaskRole")["ManagedPolicyArns"] == [
        {"Ref": "PartnerNetworkPolicy"},
        {"Ref": "AdminKeyWritePolicy"},
    ]
    statements = s.props("TaskExecutionRole")["Policies"][0]["PolicyDocument"]["Statement"]
    assert {a for st in statements for a in st["Action"]} == {
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchGetImage",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    }
    wildcard = [st for st in statements if st["Resource"] == "*"]
    assert [st["Action"] for st in wildcard] == [["ecr:GetAuthorizationToken"]]  # the one action with no resource
    partner = s.props("PartnerNetworkPolicy")["PolicyDocument"]["Statement"]
    assert all(st["Resource"] == "*" for st in partner if any(a.startswith("ec2:Describe") for a in st["Action"]))
    assert all(st["Resource"] != "*" for st in partner if not all(a.startswith("ec2:Describe") for a in st["Action"]))
    for fn in ("ReportsFunction", "SyncFunction"):
        role = s.props(s.props(fn)["Role"]["Fn::GetAtt"][0])
        docs = [p["PolicyDocument"] for p in role.get("Policies", [])]
        assert [st["Action"] for d in docs for st in d["Statement"]] == [["secretsmanager:GetSecretValue"]] * 2


def lpo_load_balancers(s: Stack) -> set[tuple[int, str]]:
    return {(lb["ContainerPort"], lb["TargetGroupArn"]["Ref"]) for lb in s.props("LpoService")["LoadBalancers"]}


def test_independent_mode_runs_lpo_lrs_and_the_sync_function_apart(cfn: dict[str, Any]) -> None:
    s = stack(cfn, DeploymentMode="independent", LpoMinTasks=2, LpoMaxTasks=10, LrsTaskCount=2)
    lpo, lrs = s.container("LpoTaskDefinition"), s.container("LrsTaskDefinition")
    assert lpo["Command"] == ["serve", "--only", "lpo", "--no-sync"] and env(lpo)["APP_REPORT_SERVER"] == "false"
    # The feed service holds the feeds and the prewarm; LPO tasks only read and subscribe.
    assert env(lpo)["BEAST_FEEDS"] == env(lpo)["BEAST_PREWARM"] == "false"
    feeds = s.container("FeedsTaskDefinition")
    assert feeds["Command"] == ["serve", "--only", "feeds", "--no-sync"] and feeds["Image"] == s.params["LpoImageUri"]
    assert env(feeds)["BEAST_FEEDS"] == env(feeds)["BEAST_PREWARM"] == "true"
    assert s.props("FeedsService")["DesiredCount"] == 1 and "LoadBalancers" not in s.props("FeedsService")
    assert lrs["Command"] == ["serve", "--only", "lrs", "--no-sync"]
    assert s.props("LpoService")["DesiredCount"] == 2 and s.props("LrsService")["DesiredCount"] == 2
    assert lpo_load_balancers(s) == {
        (8080, "LpoHttpTargetGroup"),
        (8080, "LpoTcpTargetGroup"),
        (2679, "LpoUdpTargetGroup"),
    }
    assert {(p["ContainerPort"], p["Protocol"]) for p in lpo["PortMappings"]} == {(8080, "tcp"), (2679, "udp")}
    assert {(p["ContainerPort"], p["Protocol"]) for p in lrs["PortMappings"]} == {(9090, "tcp"), (2680, "udp")}
    [rule] = s.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "ENABLED" and rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    target = s.props("LpoScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableDimension"]) == (
        2,
        10,
        "ecs:service:DesiredCount",
    )
    spec = s.props("LpoScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert spec == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    by_requests = stack(cfn, LpoScalingMetric="requests")
    spec = by_requests.props("LpoScalingPolicy")["TargetTrackingScalingPolicyConfiguration"][
        "PredefinedMetricSpecification"
    ]
    assert spec["PredefinedMetricType"] == "ALBRequestCountPerTarget" and "ResourceLabel" in spec


def test_combined_mode_is_one_container_serving_both(cfn: dict[str, Any]) -> None:
    s = stack(cfn, DeploymentMode="combined", LpoTaskCount=7)
    assert "LrsService" not in s.resources and "LrsTaskDefinition" not in s.resources
    assert "LpoScalableTarget" not in s.resources
    lpo = s.container("LpoTaskDefinition")
    assert lpo["Command"] == ["serve"] and env(lpo)["APP_REPORT_SERVER"] == "true"
    assert "FeedsService" not in s.resources and env(lpo)["BEAST_FEEDS"] == "true"  # the one task runs the feeds
    # X-Forwarded-For is trusted from the VPC's own hops only (per-address WebSocket limits).
    assert env(lpo)["BEAST_TRUSTED_PROXIES"] == "10.0.0.0/24,10.0.1.0/24"  # the public subnets (the ALB)
    assert {p["ContainerPort"] for p in lpo["PortMappings"]} == {8080, 2679, 9090, 2680}
    assert s.props("LpoService")["DesiredCount"] == 1
    # Five target groups, ECS's limit per service (PrivateLink 9090 reaches it through the internal ALB).
    assert lpo_load_balancers(s) == {
        (8080, "LpoHttpTargetGroup"),
        (8080, "LpoTcpTargetGroup"),
        (2679, "LpoUdpTargetGroup"),
        (9090, "LrsHttpTargetGroup"),
        (2680, "LrsUdpTargetGroup"),
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
    for task in ("LpoTaskDefinition", "LrsTaskDefinition", "FeedsTaskDefinition"):
        c = s.container(task)
        assert c["LinuxParameters"] == {"InitProcessEnabled": True} and c["StopTimeout"] >= 20
        assert c["HealthCheck"]["Command"][0] == "CMD-SHELL" and "/health" in c["HealthCheck"]["Command"][1]
        assert c["LogConfiguration"]["LogDriver"] == "awslogs"
    for service in ("LpoService", "LrsService", "FeedsService"):
        config = s.props(service)["DeploymentConfiguration"]
        assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        assert s.props(service)["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"


def test_vpc_is_created_by_default_or_taken_from_parameters(cfn: dict[str, Any]) -> None:
    created = stack(cfn)
    assert created.props("Vpc")["CidrBlock"] == "10.0.0.0/16"
    assert len(created.of_type("AWS::EC2::Subnet")) == 4 and len(created.of_type("AWS::EC2::NatGateway")) == 1
    existing = stack(
        cfn,
        ExistingVpcId="vpc-0abc",
        ExistingPublicSubnetIds="subnet-1,subnet-2",
        ExistingPublicSubnetCidrs="10.0.0.0/24,10.0.1.0/24",
        ExistingPrivateSubnetIds="subnet-3,subnet-4",
        ExistingPrivateRouteTableId="rtb-1",
        VpcCidr="172.31.0.0/16",
    )
    assert not existing.of_type("AWS::EC2::VPC") and not existing.of_type("AWS::EC2::Subnet")
    assert existing.props("TaskSecurityGroup")["VpcId"] == "vpc-0abc"
    assert existing.props("LpoService")["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == [
        "subnet-3",
        "subnet-4",
    ]
    assert existing.props("PublicAlb")["Subnets"] == ["subnet-1", "subnet-2"]
    lrs_env = env(existing.container("LrsTaskDefinition"))
    assert lrs_env["BEAST_VPC_ID"] == "vpc-0abc" and lrs_env["BEAST_ROUTE_TABLE_ID"] == "rtb-1"
    fixed = stack(cfn, UdpNlbPrivateIps="10.0.2.100,10.0.3.100")
    assert [m["PrivateIPv4Address"] for m in fixed.props("UdpNlb")["SubnetMappings"]] == ["10.0.2.100", "10.0.3.100"]
    assert env(fixed.container("LrsTaskDefinition"))["BEAST_UDP_NLB_IP"] == "10.0.2.100"
