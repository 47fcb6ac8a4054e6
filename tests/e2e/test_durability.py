"""Durability: what a call acknowledged survives `kill -9` and a restart on the same data dir."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOMY_LIMITS, VPCD_BIN
from helpers import B_ID, make_vpc, pcx, request_peering, tags_of, wait_for, wait_pcx


def snapshot_vpc(ec2, vid):
    v = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]
    return (v["VpcId"], v["CidrBlock"], v["IsDefault"], tags_of(v),
            sorted(c["CidrBlock"] for c in v["CidrBlockAssociationSet"]))


def test_startup_is_quick(server_factory):
    s = server_factory()
    # A sanity bound only; startup speed goals are benchmarks, not tests.
    assert s.startup_seconds < 2.0, s.startup_seconds
    s.client("A").create_vpc(CidrBlock="10.1.0.0/16")
    port = s.port
    s.kill9()
    s.start()
    assert s.port == port
    assert s.startup_seconds < 2.0, s.startup_seconds


def test_core_resources_survive_kill9(server_factory):
    s = server_factory()
    a, b = s.client("A"), s.client("B")
    default_a = a.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    v1 = make_vpc(a, "10.1.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "one"}]}])
    v2 = make_vpc(a, "10.2.0.0/16")
    a.associate_vpc_cidr_block(VpcId=v2, CidrBlock="10.3.0.0/16")
    vb = make_vpc(b, "10.4.0.0/16")
    sid = a.create_subnet(VpcId=v1, CidrBlock="10.1.1.0/24", AvailabilityZone="us-east-1c")["Subnet"]["SubnetId"]
    igw = a.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    a.attach_internet_gateway(InternetGatewayId=igw, VpcId=v1)
    a.modify_vpc_attribute(VpcId=v1, EnableDnsHostnames={"Value": True})
    a.create_tags(Resources=[v2, sid], Tags=[{"Key": "env", "Value": "prod"}])
    before = {v: snapshot_vpc(a, v) for v in (default_a, v1, v2)}
    before_b = snapshot_vpc(b, vb)
    s.kill9()  # right after the last acknowledged call

    s.start()
    a, b = s.client("A"), s.client("B")
    for v, snap in before.items():
        assert snapshot_vpc(a, v) == snap
    assert snapshot_vpc(b, vb) == before_b
    # No second default VPC appeared.
    assert [v["VpcId"] for v in a.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]] == [default_a]
    sub = a.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert (sub["VpcId"], sub["CidrBlock"], sub["AvailabilityZone"]) == (v1, "10.1.1.0/24", "us-east-1c")
    assert tags_of(sub) == {"env": "prod"}
    g = a.describe_internet_gateways(InternetGatewayIds=[igw])["InternetGateways"][0]
    assert g["Attachments"] == [{"VpcId": v1, "State": "available"}]
    assert a.describe_vpc_attribute(VpcId=v1, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is True
    # And the restarted server keeps working.
    make_vpc(a, "10.5.0.0/16")


def test_peerings_survive_kill9(server_factory):
    s = server_factory()
    a, b = s.client("A"), s.client("B")
    va, vb1, vb2 = make_vpc(a, "10.1.0.0/16"), make_vpc(b, "10.2.0.0/16"), make_vpc(b, "10.3.0.0/16")
    pending = request_peering(a, va, vb1, B_ID, TagSpecifications=[
        {"ResourceType": "vpc-peering-connection", "Tags": [{"Key": "k", "Value": "pending"}]}])
    accepted = request_peering(a, va, vb2, B_ID)
    wait_pcx(a, pending, "pending-acceptance")
    wait_pcx(a, accepted, "pending-acceptance")
    b.create_tags(Resources=[accepted], Tags=[{"Key": "side", "Value": "b"}])
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=accepted)
    s.kill9()  # while `accepted` is still provisioning

    s.start()
    a, b = s.client("A"), s.client("B")
    p = pcx(a, pending)
    assert p["Status"]["Code"] == "pending-acceptance"
    assert (p["RequesterVpcInfo"]["VpcId"], p["AccepterVpcInfo"]["VpcId"]) == (va, vb1)
    assert tags_of(p) == {"k": "pending"}
    assert pcx(b, pending)["Status"]["Code"] == "pending-acceptance"
    p = wait_pcx(a, accepted, "active")
    assert p["AccepterVpcInfo"]["CidrBlock"] == "10.3.0.0/16"
    assert tags_of(pcx(b, accepted)) == {"side": "b"}
    assert tags_of(p) == {}


def test_concurrent_tags_survive_kill9(server_factory):
    s = server_factory()
    a = s.client("A")
    vid = make_vpc(a, "10.1.0.0/16")
    clients = [s.client("A")] * 8  # botocore clients are safe to share between threads

    def tag(i):
        clients[i % 8].create_tags(Resources=[vid], Tags=[{"Key": f"k{i:02d}", "Value": f"v{i}"}])
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(tag, range(30)))
    assert done == list(range(30))
    s.kill9()

    s.start()
    tags = tags_of(s.client("A").describe_vpcs(VpcIds=[vid])["Vpcs"][0])
    assert tags == {f"k{i:02d}": f"v{i}" for i in range(30)}


def test_clock_offset_survives_restart(server_factory):
    s = server_factory()
    s.client("A").describe_vpcs()
    off = s.advance(3600)["offset_ms"]
    assert off >= 3600 * 1000
    s.kill9()
    s.start()
    assert s.advance(0)["offset_ms"] == off


def test_group_committed_writes_survive_kill9_mid_flight(server_factory):
    """Concurrent writers share transactions (group commit); a kill -9 while they
    run loses no write that was acknowledged, and half of nothing is visible."""
    s = server_factory(limits={**ROOMY_LIMITS, "vpcs_per_region": 10000})
    acked: list[str] = []
    stop = threading.Event()

    def writer(n: int):
        c = s.client("A")
        i = 0
        while not stop.is_set() and i < 400:
            try:
                vid = c.create_vpc(CidrBlock=f"10.{n}.{i % 256}.0/24",
                                   TagSpecifications=[{"ResourceType": "vpc",
                                                       "Tags": [{"Key": "writer", "Value": str(n)}]}])["Vpc"]["VpcId"]
            except Exception:  # the server died under us: that write was never acknowledged
                return
            acked.append(vid)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    # Long enough for the background checkpointer (every 100 ms) to copy the
    # WAL into the database several times while commits go on.
    wait_for(lambda: len(acked) >= 600, timeout=60, what="600 acknowledged writes")
    s.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)

    s.start()
    a = s.client("A")
    vpcs = {v["VpcId"]: v for v in a.describe_vpcs()["Vpcs"]}
    missing = [v for v in acked if v not in vpcs]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged VPCs lost"
    # Each action is all-or-nothing, acknowledged or caught in flight by the
    # kill: every VPC there came with its tag, its main route table, its
    # default network ACL and its default security group.
    ours = [v for v in vpcs.values() if "writer" in tags_of(v)]
    assert len(ours) == len(vpcs) - 1  # all but the default VPC
    def by_vpc(items):
        return {i["VpcId"] for i in items}
    tables = by_vpc(a.describe_route_tables(Filters=[{"Name": "association.main", "Values": ["true"]}])["RouteTables"])
    acls = by_vpc(a.describe_network_acls(Filters=[{"Name": "default", "Values": ["true"]}])["NetworkAcls"])
    groups = by_vpc(a.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"])
    for v in ours:
        vid = v["VpcId"]
        assert vid in tables and vid in acls and vid in groups, f"{vid} is half there"


def test_commands_beside_a_writing_server_lose_nothing_and_a_second_server_is_refused(server_factory):
    """`vpcd account add`/`list` on the data directory while the server writes
    (and compacts its journal) change nothing of the server's state; a second
    `vpcd serve` on the same directory fails at once with one clear line."""
    s = server_factory(limits={**ROOMY_LIMITS, "vpcs_per_region": 10000})
    acked: list[str] = []
    stop = threading.Event()

    def writer(n: int):
        c = s.client("A")
        i = 0
        while not stop.is_set() and i < 600:
            acked.append(c.create_vpc(CidrBlock=f"10.{n}.{i % 256}.0/24")["Vpc"]["VpcId"])
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    added = []
    try:
        # 4,800 VPCs are about 24,000 journal rows: past the compaction
        # threshold, so the commands run while it builds and cleans up.
        for k in range(25):
            acct = f"{900000000000 + k}"
            p = s.vpcd("account", "add", "--data-dir", str(s.data_dir), "--id", acct,
                       "--access-key-id", f"AKIAE2EBESIDE{k:07d}", "--secret-access-key", "x" * 40, check=False)
            assert p.returncode == 0, p.stderr
            added.append(acct)
            assert acct in s.vpcd("account", "list", "--data-dir", str(s.data_dir)).stdout
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    second = subprocess.run([str(VPCD_BIN), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(s.data_dir),
                             "--no-dataplane"], capture_output=True, text=True, timeout=30)
    assert second.returncode != 0, second
    assert "another vpcd server writes" in second.stderr and "vpcd.lock" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert s.client("A").describe_vpcs(MaxResults=5)["Vpcs"], "the first server still serves"

    s.kill9()
    s.start()
    vpcs = {v["VpcId"] for v in s.client("A").describe_vpcs()["Vpcs"]}
    missing = [v for v in acked if v not in vpcs]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged VPCs lost"
    listed = s.vpcd("account", "list", "--data-dir", str(s.data_dir)).stdout
    assert all(a in listed for a in added)
