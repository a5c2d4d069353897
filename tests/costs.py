"""Monthly cost of each deployment mode, computed from template.yaml and stated list prices.

The prices are AWS on-demand list prices for us-east-2 (Ohio) as stated below: typed in by
hand from AWS's public price pages as the author knew them, not fetched (nothing here goes
online). Check them before relying on a figure. Traffic-driven charges (ALB/NLB capacity
units, NAT data processing, API Gateway and Lambda requests, CloudWatch Logs ingestion,
Aurora storage and I/O, MemoryDB data written) come on top and are not in the table.

`python tests/costs.py` prints the table docs/deploy.md carries; tests/test_deploy_readiness.py
checks the two agree, so a changed default changes the documented cost with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRICES_STATED_ON = "2026-12-01"
REGION = "us-east-2"
HOURS_PER_MONTH = 730
PRICES = {
    "fargate_vcpu_hour": 0.04048,  # Linux/x86
    "fargate_gb_hour": 0.004445,
    "nat_gateway_hour": 0.045,
    "load_balancer_hour": 0.0225,  # ALB and NLB alike, before capacity units
    "public_ipv4_hour": 0.005,
    "memorydb_node_hour": {"db.t4g.small": 0.048, "db.t4g.medium": 0.096, "db.r7g.large": 0.317},
    "aurora_acu_hour": 0.12,  # Serverless v2
    "rds_proxy_acu_hour": 0.015,  # per ACU of the Serverless v2 target, 8 ACUs at least
    "rds_proxy_min_acus": 8,
    "secret_month": 0.40,
    "alarm_metric_month": 0.10,  # standard resolution, per metric an alarm reads
}


@dataclass(frozen=True)
class ModeCost:
    mode: str
    tasks: str  # what runs, e.g. "1 combined (1 vCPU / 2 GB)"
    tasks_month: float
    fixed_month: float
    tasks_month_max: float  # with auto-scaling at its maximum

    @property
    def total(self) -> float:
        return self.tasks_month + self.fixed_month

    @property
    def total_max(self) -> float:
        return self.tasks_month_max + self.fixed_month


def task_hour(cpu_units: str | int, memory_mib: str | int) -> float:
    return int(cpu_units) / 1024 * PRICES["fargate_vcpu_hour"] + int(memory_mib) / 1024 * PRICES["fargate_gb_hour"]


def fixed_parts(s: Any, params: dict[str, Any]) -> dict[str, float]:
    """Monthly cost of what every mode runs whatever the load, from the stack's resources."""
    hour = HOURS_PER_MONTH
    balancers = s.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    public = [b for b in balancers.values() if b["Properties"]["Scheme"] == "internet-facing"]
    public_ips = len(s.of_type("AWS::EC2::EIP")) + sum(len(b["Properties"]["Subnets"]) for b in public)
    cache = s.props("Cache")
    nodes = int(cache["NumShards"]) * (1 + int(params["CacheReplicasPerShard"]))
    alarm_metrics = sum(
        len([m for m in a["Properties"].get("Metrics", []) if "MetricStat" in m]) or 1
        for a in s.of_type("AWS::CloudWatch::Alarm").values()
    )
    min_acus = float(params["DbMinCapacity"])
    return {
        "NAT gateway": len(s.of_type("AWS::EC2::NatGateway")) * PRICES["nat_gateway_hour"] * hour,
        "load balancers": len(balancers) * PRICES["load_balancer_hour"] * hour,
        "public IPv4 addresses": public_ips * PRICES["public_ipv4_hour"] * hour,
        "MemoryDB": nodes * PRICES["memorydb_node_hour"][params["CacheNodeType"]] * hour,
        "Aurora (minimum ACUs)": min_acus * PRICES["aurora_acu_hour"] * hour,
        "RDS Proxy": max(PRICES["rds_proxy_min_acus"], min_acus) * PRICES["rds_proxy_acu_hour"] * hour,
        "secrets": len(s.of_type("AWS::SecretsManager::Secret")) * PRICES["secret_month"],
        "alarms": alarm_metrics * PRICES["alarm_metric_month"],
    }


def mode_cost(cfn: dict[str, Any], mode: str, **overrides: Any) -> tuple[ModeCost, dict[str, float]]:
    from cfnstack import defaults, stack

    s = stack(cfn, DeploymentMode=mode, **overrides)
    params = defaults(cfn, DeploymentMode=mode, **overrides)
    hour = HOURS_PER_MONTH
    parts, month, month_max = [], 0.0, 0.0
    for name, service in sorted(s.of_type("AWS::ECS::Service").items()):
        task = s.props(service["Properties"]["TaskDefinition"]["Ref"])
        count = int(service["Properties"]["DesiredCount"])
        most = int(params["LpoMaxTasks"]) if name == "LpoService" and "LpoScalableTarget" in s.resources else count
        per_task = task_hour(task["Cpu"], task["Memory"]) * hour
        month += count * per_task
        month_max += most * per_task
        label = name.removesuffix("Service").lower()
        label = "combined" if (label == "lpo" and mode == "combined") else label
        size = f"{int(task['Cpu']) / 1024:g} vCPU / {int(task['Memory']) / 1024:g} GB"
        parts.append(f"{count}{'-' + str(most) if most != count else ''} {label} ({size})")
    fixed = fixed_parts(s, params)
    return ModeCost(mode, ", ".join(parts), month, sum(fixed.values()), month_max), fixed


def table(cfn: dict[str, Any]) -> str:
    """The markdown table for docs/deploy.md: every mode at the template's defaults, plus the dev samconfig."""
    import tomllib

    from samlocal import REPO

    dev = dict(
        pair.split("=", 1)
        for pair in tomllib.loads((REPO / "samconfig.toml").read_text())["dev"]["deploy"]["parameters"][
            "parameter_overrides"
        ].split()
    )
    rows = [mode_cost(cfn, m) for m in ("combined", "hybrid", "independent")]
    rows.append(mode_cost(cfn, dev.pop("DeploymentMode"), **dev))
    fixed = rows[0][1]
    lines = [
        "| mode | tasks (count, size) | tasks $/month | fixed $/month | total $/month |",
        "|---|---|---:|---:|---:|",
    ]
    names = ["`combined`", "`hybrid`", "`independent`", "`combined`, samconfig `dev`"]
    for label, (cost, _) in zip(names, rows, strict=False):
        total = f"{cost.total:,.2f}" + (f" (up to {cost.total_max:,.2f})" if cost.total_max != cost.total else "")
        lines.append(f"| {label} | {cost.tasks} | {cost.tasks_month:,.2f} | {cost.fixed_month:,.2f} | {total} |")
    lines += ["", "| fixed part (every mode) | $/month |", "|---|---:|"]
    lines += [f"| {name} | {value:,.2f} |" for name, value in fixed.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from cfnstack import transformed

    print(table(transformed()))
