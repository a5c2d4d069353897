"""The one boto3 edge: EC2 calls for PrivateLink endpoint connections, VPC peering,
routes and the UDP security group rules.

Every change is idempotent (accepting an accepted connection, adding a rule that exists,
removing one that is gone all succeed without a second effect), so an approval that
failed half-way, or was clicked twice, can simply be repeated. Calls block: async
callers use asyncio.to_thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trinity_beast.domain.partners.model import PartnerError
from trinity_beast.services.partners.wizard import StackNetwork, udp_permissions

if TYPE_CHECKING:
    from trinity_beast.domain.settings import Settings

log = logging.getLogger(__name__)

ENDPOINT_PENDING = ("pendingAcceptance", "pending")
PEERING_PENDING = ("pending-acceptance",)
GONE_PEERING = ("deleted", "deleting", "rejected", "expired", "failed")
GONE_ENDPOINT = ("rejected", "deleted", "deleting", "failed", "expired")
ACCEPTED = {"privatelink": ("available",), "peering": ("active", "provisioning")}


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """A PrivateLink endpoint connection or a peering connection, as EC2 reports it."""

    kind: str  # "privatelink" or "peering"
    connection_id: str
    owner_account: str
    vpc_id: str | None  # peering only: EC2 does not say which VPC an endpoint sits in
    cidr: str | None  # peering only: the requester VPC's CIDR
    region: str | None
    state: str
    created_at: str | None
    dns_names: tuple[str, ...] = ()  # privatelink: the endpoint's DNS names, as EC2 reports them

    @property
    def pending(self) -> bool:
        return self.state in (ENDPOINT_PENDING if self.kind == "privatelink" else PEERING_PENDING)

    @property
    def accepted(self) -> bool:
        return self.state in ACCEPTED[self.kind]

    @property
    def gone(self) -> bool:
        return self.state in (GONE_ENDPOINT if self.kind == "privatelink" else GONE_PEERING)

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "connection_id": self.connection_id,
            "owner_account": self.owner_account,
            "vpc_id": self.vpc_id,
            "cidr": self.cidr,
            "region": self.region,
            "state": self.state,
            "created_at": self.created_at,
            "dns_names": list(self.dns_names),
        }


@dataclass(frozen=True, slots=True)
class UdpRule:
    cidr: str
    ports: tuple[int, ...]
    description: str


class Ec2Network:
    """This stack's side of partner connections, through one EC2 client."""

    def __init__(self, client: Any, stack: StackNetwork) -> None:
        self.client = client
        self.stack = stack

    @classmethod
    def from_settings(cls, settings: Settings) -> Ec2Network:
        try:
            import boto3
        except ImportError:
            raise PartnerError(503, "EC2 is not available here: install trinity-beast[aws] (boto3)") from None
        return cls(boto3.client("ec2", region_name=settings.region), StackNetwork.from_settings(settings))

    # --- calls, with AWS failures turned into clear answers --------------------------
    def _call(self, operation: str, ok_codes: tuple[str, ...] = (), **params: Any) -> dict[str, Any] | None:
        """Call `operation`; None when it failed with one of `ok_codes` (already done)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = getattr(self.client, operation)(**params)
            return answer
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ok_codes:
                return None
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise PartnerError(502, f"EC2 {operation} failed: {code}: {message}"[:500]) from None
        except BotoCoreError as exc:
            raise PartnerError(502, f"EC2 {operation} failed: {exc}"[:500]) from None

    def _need(self, connection_type: str, purpose: str) -> None:
        missing = self.stack.missing(connection_type, purpose)
        if missing:
            raise PartnerError(503, f"partner network not configured: set {', '.join(missing)}")

    # --- reading requests ------------------------------------------------------------
    def _endpoint(self, item: dict[str, Any]) -> ConnectionRequest:
        created = item.get("CreationTimestamp")
        return ConnectionRequest(
            "privatelink",
            item["VpcEndpointId"],
            item.get("VpcEndpointOwner", ""),
            None,
            None,
            item.get("VpcEndpointRegion"),
            item.get("VpcEndpointState", ""),
            None if created is None else str(created),
            tuple(e["DnsName"] for e in item.get("DnsEntries", []) if e.get("DnsName")),
        )

    def _peering(self, item: dict[str, Any]) -> ConnectionRequest:
        requester = item.get("RequesterVpcInfo", {})
        expires = item.get("ExpirationTime")
        return ConnectionRequest(
            "peering",
            item["VpcPeeringConnectionId"],
            requester.get("OwnerId", ""),
            requester.get("VpcId"),
            requester.get("CidrBlock"),
            requester.get("Region"),
            item.get("Status", {}).get("Code", ""),
            None if expires is None else str(expires),
        )

    def endpoint_connections(self) -> list[ConnectionRequest]:
        self._need("privatelink", "approve")
        out, token = [], None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "service-id", "Values": [self.stack.service_id]}]}
            if token:
                params["NextToken"] = token
            page = self._call("describe_vpc_endpoint_connections", **params) or {}
            out += [
                self._endpoint(i)
                for i in page.get("VpcEndpointConnections", [])
                if i.get("ServiceId") in (None, self.stack.service_id)
            ]
            token = page.get("NextToken")
            if not token:
                return out

    def peering_connections(self) -> list[ConnectionRequest]:
        """Peering connections whose accepter is our VPC (filtered here too: not every EC2 filters)."""
        self._need("peering", "approve")
        out, token = [], None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "accepter-vpc-info.vpc-id", "Values": [self.stack.vpc_id]}]}
            if token:
                params["NextToken"] = token
            page = self._call("describe_vpc_peering_connections", **params) or {}
            out += [
                self._peering(i)
                for i in page.get("VpcPeeringConnections", [])
                if i.get("AccepterVpcInfo", {}).get("VpcId") == self.stack.vpc_id
            ]
            token = page.get("NextToken")
            if not token:
                return out

    def configured(self, connection_type: str) -> bool:
        return not self.stack.missing(connection_type, "approve")

    def pending_requests(self) -> list[ConnectionRequest]:
        found: list[ConnectionRequest] = []
        for connection_type, read in (
            ("privatelink", self.endpoint_connections),
            ("peering", self.peering_connections),
        ):
            if self.configured(connection_type):
                found += [r for r in read() if r.pending]
        return found

    def find(self, connection_type: str, connection_id: str) -> ConnectionRequest | None:
        read = self.endpoint_connections if connection_type == "privatelink" else self.peering_connections
        return next((r for r in read() if r.connection_id == connection_id), None)

    # --- accepting, rejecting, disconnecting -----------------------------------------
    def _endpoint_action(self, action: str, endpoint_id: str, done_states: tuple[str, ...]) -> bool:
        """Accept or reject one endpoint connection; False when it was already in a done state."""
        current = self.find("privatelink", endpoint_id)
        if current is None:
            raise PartnerError(404, f"no endpoint connection {endpoint_id} to service {self.stack.service_id}")
        if current.state in done_states:
            return False
        result = (
            self._call(
                f"{action}_vpc_endpoint_connections", ServiceId=self.stack.service_id, VpcEndpointIds=[endpoint_id]
            )
            or {}
        )
        for item in result.get("Unsuccessful", []):
            # A second click (or another operator) got there first: done is done, not a failure.
            now = self.find("privatelink", endpoint_id)
            if now is not None and now.state in done_states:
                return False
            error = item.get("Error", {})
            raise PartnerError(
                502, f"EC2 could not {action} {endpoint_id}: {error.get('Code')}: {error.get('Message')}"
            )
        return True

    def accept(self, connection_type: str, connection_id: str) -> bool:
        """Accept a pending request; False (no change) when it is already accepted."""
        if connection_type == "privatelink":
            return self._endpoint_action("accept", connection_id, ("available",))
        current = self.find("peering", connection_id)
        if current is None:
            raise PartnerError(404, f"no peering connection {connection_id} to VPC {self.stack.vpc_id}")
        if current.state == "active":
            return False
        if not current.pending:
            raise PartnerError(409, f"peering connection {connection_id} is {current.state}: it cannot be accepted")
        try:
            self._call("accept_vpc_peering_connection", VpcPeeringConnectionId=connection_id)
        except PartnerError:
            now = self.find("peering", connection_id)
            if now is not None and now.accepted:
                return False  # accepted meanwhile, by a second click or by hand
            raise
        return True

    def reject(self, connection_type: str, connection_id: str) -> bool:
        """Refuse a pending request, or cut an accepted one; False when already gone."""
        if connection_type == "privatelink":
            return self._endpoint_action(
                "reject", connection_id, ("rejected", "deleted", "deleting", "failed", "expired")
            )
        current = self.find("peering", connection_id)
        if current is None or current.state in GONE_PEERING:
            return False
        if current.pending:
            self._call(
                "reject_vpc_peering_connection",
                ("InvalidVpcPeeringConnectionID.NotFound",),
                VpcPeeringConnectionId=connection_id,
            )
        else:  # an active peering cannot be rejected, only deleted
            self._call(
                "delete_vpc_peering_connection",
                ("InvalidVpcPeeringConnectionID.NotFound",),
                VpcPeeringConnectionId=connection_id,
            )
        return True

    # --- routes and UDP rules ----------------------------------------------------------
    def routes(self) -> dict[str, str]:
        """Our route table: destination CIDR -> where it goes (a pcx-…, a gateway, …)."""
        tables = self._call("describe_route_tables", RouteTableIds=[self.stack.route_table_id]) or {}
        return {
            route["DestinationCidrBlock"]: route.get("VpcPeeringConnectionId")
            or route.get("GatewayId")
            or "another target"
            for table in tables.get("RouteTables", [])
            for route in table.get("Routes", [])
            if route.get("DestinationCidrBlock")
        }

    def _route_target(self, cidr: str) -> str | None:
        return self.routes().get(cidr)

    def nlb_addresses(self) -> list[tuple[str, str]] | None:
        """The UDP load balancer's address in every zone, [(ip, zone)], found from the one
        configured address (its network interface names the NLB: "ELB net/NAME/ID"); None
        when EC2 will not say (ec2:DescribeNetworkInterfaces not granted)."""
        ip = self.stack.nlb_ip
        if not ip:
            return []
        try:
            found = (
                self._call(
                    "describe_network_interfaces", Filters=[{"Name": "addresses.private-ip-address", "Values": [ip]}]
                )
                or {}
            )
            mine = found.get("NetworkInterfaces", [])
            description = mine[0].get("Description", "") if mine else ""
            if not description.startswith("ELB net/"):
                return [(ip, mine[0].get("AvailabilityZone", "")) if mine else (ip, "")]
            every = (
                self._call("describe_network_interfaces", Filters=[{"Name": "description", "Values": [description]}])
                or {}
            )
        except PartnerError as exc:
            log.info("cannot list the UDP NLB's addresses: %s", exc.message)
            return None
        return sorted(
            (i["PrivateIpAddress"], i.get("AvailabilityZone", "")) for i in every.get("NetworkInterfaces", [])
        )

    def snapshot(self) -> Ec2Snapshot:
        """Everything reconciliation compares records with, read once (only what is configured)."""
        requests: list[ConnectionRequest] = []
        if self.configured("privatelink"):
            requests += self.endpoint_connections()
        if self.configured("peering"):
            requests += self.peering_connections()
        routes = self.routes() if self.stack.route_table_id else {}
        rules = {r.cidr: r for r in self.udp_rules()} if self.stack.security_group_id else {}
        return Ec2Snapshot(tuple(requests), routes, rules)

    def ensure_route(self, cidr: str, peering_id: str) -> bool:
        """Route `cidr` through `peering_id`; False when that route is already there."""
        target = self._route_target(cidr)
        if target == peering_id:
            return False
        if target is not None:
            raise PartnerError(409, f"route table {self.stack.route_table_id} already sends {cidr} to {target}")
        self._call(
            "create_route",
            ("RouteAlreadyExists",),
            RouteTableId=self.stack.route_table_id,
            DestinationCidrBlock=cidr,
            VpcPeeringConnectionId=peering_id,
        )
        return True

    def remove_route(self, cidr: str, peering_id: str) -> bool:
        """Remove our route for `cidr` if it still goes through `peering_id`."""
        if self._route_target(cidr) != peering_id:
            return False
        self._call(
            "delete_route",
            ("InvalidRoute.NotFound",),
            RouteTableId=self.stack.route_table_id,
            DestinationCidrBlock=cidr,
        )
        return True

    def udp_rules(self) -> list[UdpRule]:
        """Our security group's UDP access: CIDR -> the partner UDP ports it may reach."""
        self._need("peering", "udp")
        groups = self._call("describe_security_groups", GroupIds=[self.stack.security_group_id]) or {}
        found: dict[str, tuple[set[int], str]] = {}
        for group in groups.get("SecurityGroups", []):
            for perm in group.get("IpPermissions", []):
                if perm.get("IpProtocol") != "udp":
                    continue
                ports = {p for p in self.stack.udp_ports if perm.get("FromPort", -1) <= p <= perm.get("ToPort", -1)}
                for ip_range in perm.get("IpRanges", []):
                    cidr = ip_range.get("CidrIp")
                    if cidr and ports:
                        entry = found.setdefault(cidr, (set(), ip_range.get("Description", "")))
                        entry[0].update(ports)
        return [UdpRule(cidr, tuple(sorted(ports)), desc) for cidr, (ports, desc) in sorted(found.items())]

    def _each_port(self, operation: str, ok: tuple[str, ...], cidr: str, description: str) -> bool:
        changed = False
        for permission in udp_permissions(cidr, self.stack.udp_ports, description):
            result = self._call(operation, ok, GroupId=self.stack.security_group_id, IpPermissions=[permission])
            # Revoking a rule that is not there answers UnknownIpPermissions, not an error.
            changed |= result is not None and not result.get("UnknownIpPermissions")
        return changed

    def allow_udp(self, cidr: str, description: str) -> bool:
        """Open every partner UDP port to `cidr`; False when all were open already."""
        self._need("peering", "udp")
        return self._each_port("authorize_security_group_ingress", ("InvalidPermission.Duplicate",), cidr, description)

    def deny_udp(self, cidr: str) -> bool:
        self._need("peering", "udp")
        return self._each_port("revoke_security_group_ingress", ("InvalidPermission.NotFound",), cidr, "")


@dataclass(frozen=True, slots=True)
class Ec2Snapshot:
    """EC2's view at one moment: connection requests, our routes, our UDP rules."""

    requests: tuple[ConnectionRequest, ...]
    routes: dict[str, str]
    udp: dict[str, UdpRule]

    def request(self, kind: str, connection_id: str | None) -> ConnectionRequest | None:
        return next((r for r in self.requests if r.kind == kind and r.connection_id == connection_id), None)


NetworkFactory = Callable[[], Ec2Network]
