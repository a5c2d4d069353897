"""What to hand a partner (pure): the reference values of both sides, how to reach us once
connected (curl, wscat, UDP), the wait-for-us step, and all of it as a Markdown sheet.

The key's secret is never in it (shown once at creation): examples read `$TRINITY_BEAST_KEY`.
"""

from __future__ import annotations

import json
from typing import Any

from trinity_beast.domain.partners.model import Partner
from trinity_beast.services.partners.wizard import StackNetwork, onboarding

KEY_VAR = "$TRINITY_BEAST_KEY"
DNS_PLACEHOLDER = "<ENDPOINT_DNS_NAME>"


def _nlb(stack: StackNetwork, nlb: list[tuple[str, str]] | None) -> str:
    if not nlb:
        known = stack.nlb_ip or "—"
        return known if nlb is not None else f"{known} (the other zones' addresses: EC2 did not list them)"
    return ", ".join(f"{ip} ({zone})" if zone else ip for ip, zone in nlb)


def _rows(p: Partner, stack: StackNetwork, dns: str | None, nlb: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    ours = [("Our AWS account", stack.account_id or "—"), ("Our region", stack.region)]
    if p.connection_type == "privatelink":
        return [
            *ours,
            ("Endpoint service name", stack.service_name or "—"),
            ("Endpoint service id", stack.service_id or "—"),
            (
                "TCP ports",
                f"{stack.tcp_ports[0]} (HTTP /price and WebSocket /ws/prices), {stack.tcp_ports[1]} (usage reports)",
            ),
            ("Your account", p.aws_account_id),
            ("Your region", p.region),
            ("Your VPC", p.vpc_id),
            ("Your subnets", ", ".join(p.subnet_ids) or "—"),
            ("Your endpoint security groups", ", ".join(p.security_group_ids) or "your VPC's default group"),
            ("Your endpoint id", p.connection_id or "— (send it to us once created)"),
            ("Endpoint DNS name", dns or "— (known once the endpoint exists)"),
        ]
    return [
        *ours,
        ("Our VPC", stack.vpc_id or "—"),
        ("Our VPC CIDR", stack.vpc_cidr),
        ("Our route table", stack.route_table_id or "—"),
        ("Our security group (UDP)", stack.security_group_id or "—"),
        ("UDP load balancer addresses", _nlb(stack, nlb)),
        ("UDP ports", f"{stack.udp_ports[0]} (prices), {stack.udp_ports[1]} (usage summaries)"),
        ("Your account", p.aws_account_id),
        ("Your region", p.region),
        ("Your VPC", p.vpc_id),
        ("Your VPC CIDR", p.cidr or "—"),
        ("Your route table", p.route_table_id or "—"),
        ("Peering connection", p.connection_id or "— (send it to us once requested)"),
    ]


def _examples(p: Partner, stack: StackNetwork, dns: str | None) -> list[dict[str, str]]:
    if p.connection_type == "privatelink":
        host = dns or DNS_PLACEHOLDER
        http, reports = stack.tcp_ports
        return [
            {
                "title": "One price over HTTP (curl)",
                "command": f'curl -H "Authorization: Bearer {KEY_VAR}" "http://{host}:{http}/price?asset=BTC,ETH"',
            },
            {
                "title": 'Live prices over WebSocket (wscat); once connected, type {"subscribe": ["BTC", "ETH"]}',
                "command": f'wscat -c "ws://{host}:{http}/ws/prices" -H "Authorization: Bearer {KEY_VAR}"',
            },
            {
                "title": "Your usage this month (curl)",
                "command": f'curl -H "Authorization: Bearer {KEY_VAR}" "http://{host}:{reports}/reports/usage"',
            },
        ]
    prices, usage = stack.udp_ports
    ip = stack.nlb_ip or "<UDP_NLB_ADDRESS>"
    ask = json.dumps({"asset": "BTC,ETH", "api_key": "KEY"}).replace('"KEY"', '"\'"$TRINITY_BEAST_KEY"\'"')
    report = json.dumps({"report": "usage", "api_key": "KEY"}).replace('"KEY"', '"\'"$TRINITY_BEAST_KEY"\'"')
    return [
        {"title": f"One price over UDP {prices} (netcat)", "command": f"echo -n '{ask}' | nc -u -w 2 {ip} {prices}"},
        {
            "title": f"Your usage summary over UDP {usage} (netcat)",
            "command": f"echo -n '{report}' | nc -u -w 2 {ip} {usage}",
        },
        {
            "title": "The same price request from Python",
            "command": "python3 -c 'import json, os, socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            's.settimeout(2); s.sendto(json.dumps({"asset": "BTC", "api_key": os.environ["TRINITY_BEAST_KEY"]})'
            f'.encode(), ("{ip}", {prices})); print(s.recvfrom(4096)[0].decode())\'',
        },
    ]


def _wait_step(p: Partner, stack: StackNetwork) -> dict[str, str]:
    if p.connection_type == "privatelink":
        ref = p.connection_id or "<VPC_ENDPOINT_ID>"
        return {
            "title": "Wait for us to accept",
            "text": "Your endpoint shows pendingAcceptance until we accept it (we check the account and VPC); "
            "then it becomes available and its DNS name answers.",
            "command": f"aws ec2 describe-vpc-endpoints --region {p.region} --vpc-endpoint-ids {ref} "
            "--query 'VpcEndpoints[0].[State,DnsEntries[0].DnsName]' --output text",
        }
    ref = p.connection_id or "<VPC_PEERING_CONNECTION_ID>"
    return {
        "title": "Wait for us to accept",
        "text": "The peering connection shows pending-acceptance until we accept it and open UDP "
        f"{' and '.join(map(str, stack.udp_ports))} to {p.cidr}; then it is active.",
        "command": f"aws ec2 describe-vpc-peering-connections --region {p.region} --vpc-peering-connection-ids {ref} "
        "--query 'VpcPeeringConnections[0].Status.Code' --output text",
    }


ROUTE_WHY = (
    "Your route covers our whole VPC ({cidr}), not just one address: the UDP load balancer has an "
    "address in every Availability Zone it spans, and a route to one of them alone would cut you off "
    "whenever that zone's node is out of service."
)


def handoff(
    p: Partner, stack: StackNetwork, dns: str | None = None, nlb: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Everything the partner needs, as data for the page and as a Markdown sheet. `nlb`: the UDP
    load balancer's (address, zone) in every zone, None when EC2 could not list them."""
    steps = [c for c in onboarding(p, stack)["commands"] if c["side"] == "partner"]
    data: dict[str, Any] = {
        "partner_id": p.id,
        "name": p.name,
        "connection_type": p.connection_type,
        "status": p.status,
        "endpoint_dns": dns,
        "reference": [{"label": k, "value": v} for k, v in _rows(p, stack, dns, nlb)],
        "partner_commands": steps,
        "wait": _wait_step(p, stack),
        "examples": _examples(p, stack, dns),
        "notes": [ROUTE_WHY.format(cidr=stack.vpc_cidr)] if p.connection_type == "peering" else [],
    }
    data["markdown"] = markdown(data)
    data["filename"] = f"trinity-beast-handoff-{p.id}.md"
    return data


def markdown(d: dict[str, Any]) -> str:
    kind = "AWS PrivateLink (TCP)" if d["connection_type"] == "privatelink" else "VPC peering (UDP)"
    lines = [
        f"# Trinity Beast: connecting {d['name']}",
        "",
        f"Connection: {kind}. Partner id: `{d['partner_id']}`.",
        "Your API key was handed to you separately; the examples read it from `TRINITY_BEAST_KEY`.",
        "",
        "## Reference",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {r['label']} | `{r['value']}` |" for r in d["reference"]]
    lines += ["", "## 1. Run in your account", ""]
    for i, c in enumerate(d["partner_commands"], 1):
        lines += [f"{i}. {c['title']}", "", "```sh", c["command"], "```", ""]
    lines += d["notes"] + ([""] if d["notes"] else [])
    wait = d["wait"]
    lines += [
        f"## 2. Send us the id. {wait['title']}",
        "",
        wait["text"],
        "",
        "```sh",
        wait["command"],
        "```",
        "",
        "## 3. Test the connection",
        "",
    ]
    for e in d["examples"]:
        lines += [e["title"] + ":", "", "```sh", e["command"], "```", ""]
    return "\n".join(lines)
