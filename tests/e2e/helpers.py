"""Small helpers shared by the end-to-end tests (no fixtures here)."""

from __future__ import annotations

import contextlib
import itertools
import re
import time

import pytest
from botocore.exceptions import ClientError

A_ID, B_ID, C_ID = "111111111111", "222222222222", "333333333333"

ID17 = r"[0-9a-f]{17}"


def is_id(prefix: str, value: str) -> bool:
    """True for '<prefix>-' followed by 17 lowercase hex digits (AWS's current ID format)."""
    return bool(re.fullmatch(rf"{re.escape(prefix)}-{ID17}", value or ""))


@contextlib.contextmanager
def expect_error(code, status: int = 400):
    """Asserts the block raises ClientError with this code (or one of these codes) and HTTP status.

    Yields a holder whose ``.error`` is the ClientError, for further checks.
    """
    codes = (code,) if isinstance(code, str) else tuple(code)

    class Holder:
        error: ClientError | None = None

    h = Holder()
    with pytest.raises(ClientError) as ei:
        yield h
    h.error = ei.value
    err = ei.value.response
    got = err["Error"]["Code"]
    assert got in codes, f"expected error {codes}, got {got}: {err['Error'].get('Message')}"
    got_status = err["ResponseMetadata"]["HTTPStatusCode"]
    assert got_status == status, f"{got}: expected HTTP {status}, got {got_status}"


def error_code(fn, *a, **kw) -> str | None:
    """Runs fn; returns the ClientError code, or None on success."""
    try:
        fn(*a, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def wait_for(fn, pred=bool, timeout: float = 3.0, interval: float = 0.05, what: str = "condition"):
    """Polls fn() until pred(value) holds; returns the value or fails with the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {v!r}")
        time.sleep(interval)


class AwsCliError(Exception):
    """The aws CLI exited non-zero. ``code`` is the AWS error code, if any."""

    def __init__(self, returncode: int, stderr: str, argv: list[str]):
        self.returncode = returncode
        self.stderr = stderr
        self.argv = argv
        self.code = None
        marker = "An error occurred ("
        if marker in stderr:
            self.code = stderr.split(marker, 1)[1].split(")", 1)[0]
        super().__init__(f"aws {' '.join(argv)} -> rc={returncode}: {stderr.strip()}")


# -- CIDRs ---------------------------------------------------------------------

_cidr_counter = itertools.count(100)


def unique_cidr() -> str:
    """A fresh 10.X.0.0/16 (X from 100 up) for tests where the exact block does not matter."""
    n = next(_cidr_counter)
    assert n < 256, "ran out of unique 10.X.0.0/16 blocks"
    return f"10.{n}.0.0/16"


# -- resource helpers ------------------------------------------------------------

def make_vpc(ec2, cidr: str | None = None, **kw) -> str:
    return ec2.create_vpc(CidrBlock=cidr or unique_cidr(), **kw)["Vpc"]["VpcId"]


def default_sg(ec2, vpc_id: str) -> str:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert len(groups) == 1, groups
    return groups[0]["GroupId"]


def main_route_table(ec2, vpc_id: str) -> dict:
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    assert len(tables) == 1, tables
    return tables[0]


def routes_to(ec2, rtb_id: str, dest: str) -> list[dict]:
    rt = ec2.describe_route_tables(RouteTableIds=[rtb_id])["RouteTables"][0]
    return [r for r in rt["Routes"] if r.get("DestinationCidrBlock") == dest
            or r.get("DestinationIpv6CidrBlock") == dest]


def pcx(ec2, pcx_id: str) -> dict:
    res = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx_id])["VpcPeeringConnections"]
    assert len(res) == 1, res
    assert res[0]["VpcPeeringConnectionId"] == pcx_id
    return res[0]


def pcx_status(ec2, pcx_id: str) -> str:
    return pcx(ec2, pcx_id)["Status"]["Code"]


def wait_pcx(ec2, pcx_id: str, status: str, timeout: float = 3.0) -> dict:
    """Polls DescribeVpcPeeringConnections until the status code is `status`; returns the connection."""
    return wait_for(lambda: pcx(ec2, pcx_id), lambda p: p["Status"]["Code"] == status,
                    timeout=timeout, what=f"{pcx_id} -> {status}")


def pcx_gone(ec2, pcx_id: str) -> bool:
    """True when describing the id gives InvalidVpcPeeringConnectionID.NotFound."""
    code = error_code(ec2.describe_vpc_peering_connections, VpcPeeringConnectionIds=[pcx_id])
    if code is None:
        return False
    assert code == "InvalidVpcPeeringConnectionID.NotFound", code
    return True


def listed_pcx_ids(ec2) -> set[str]:
    return {p["VpcPeeringConnectionId"]
            for p in ec2.describe_vpc_peering_connections()["VpcPeeringConnections"]}


def request_peering(a, vpc_a: str, vpc_b: str, peer_owner: str, **kw) -> str:
    r = a.create_vpc_peering_connection(VpcId=vpc_a, PeerVpcId=vpc_b, PeerOwnerId=peer_owner, **kw)
    return r["VpcPeeringConnection"]["VpcPeeringConnectionId"]


def active_peering(a, b, vpc_a: str, vpc_b: str, b_owner: str = B_ID, b_region: str | None = None) -> str:
    """A requests, B accepts; returns the pcx id once it is active."""
    kw = {"PeerRegion": b_region} if b_region else {}
    pid = request_peering(a, vpc_a, vpc_b, b_owner, **kw)
    wait_pcx(a, pid, "pending-acceptance")
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(b, pid, "active")
    return pid


def tags_of(obj: dict) -> dict:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


def vpc_ipv6_block(ec2, vpc_id: str, timeout: float = 5.0) -> str:
    """The VPC's first associated IPv6 block, once it is associated (AWS answers `associating` first)."""

    def associated():
        d = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
        return next((a["Ipv6CidrBlock"] for a in d.get("Ipv6CidrBlockAssociationSet", [])
                     if a["Ipv6CidrBlockState"]["State"] == "associated"), None)

    return wait_for(associated, timeout=timeout, what=f"an associated IPv6 block on {vpc_id}")


def run_analysis(ec2, src: str, dst_ip: str, protocol: str = "icmp", port: int | None = None) -> dict:
    """Creates a Network Insights path, runs an analysis of it and returns the finished analysis."""
    kw = {"DestinationPort": port} if port is not None else {}
    path = ec2.create_network_insights_path(Source=src, DestinationIp=dst_ip, Protocol=protocol, **kw)
    started = ec2.start_network_insights_analysis(
        NetworkInsightsPathId=path["NetworkInsightsPath"]["NetworkInsightsPathId"])["NetworkInsightsAnalysis"]
    [got] = ec2.describe_network_insights_analyses(
        NetworkInsightsAnalysisIds=[started["NetworkInsightsAnalysisId"]])["NetworkInsightsAnalyses"]
    assert got["Status"] == "succeeded", got
    return got
