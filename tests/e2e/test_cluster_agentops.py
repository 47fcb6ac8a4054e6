"""What the hosts' agents of a cluster do beside realizing the World (docs/cluster.md):
they meter data transfer into the shared store, as `vpcd serve` does on one host
(docs/metering.md), so Cost Explorer on any API server and `vpcd cost --store` report it;
they write flow-log records, each by the host holding the interface; and each serves
its host's Prometheus metrics (`--metrics-listen`).

One lab: one etcd member, two API servers, two hosts (h1 serves us-east-1a, h2
us-east-1b), the agents reading their counters every second and writing flow-log
windows every 2 s. Account A's VPC has an
instance on h1, account B's an instance on h2, and the VPCs are peered: every packet
between them crosses the peering on the sender's host and the VXLAN underlay. Needs
root and etcd; fails (does not skip) without them.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config

from helpers import A_ID, B_ID, default_sg, main_route_table, request_peering, wait_for, wait_pcx
from labkit import ACCOUNTS, Lab, sample, scrape
from netprobe import netns_exists, wait_until
from test_flow_logs import CUSTOM, FLUSH
from test_metering import GB, MB, RATE_CROSS_AZ, by_usage_type, ce_query, transfer, within

pytestmark = pytest.mark.usefixtures("require_root")

REALIZE = 20.0
TCP_PORT = 7101
REFUSED_PORT = 7199


def _vpc(ec2, cidr: str, subnet_cidr: str, zone: str) -> SimpleNamespace:
    vid = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vid, CidrBlock=subnet_cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
    return SimpleNamespace(id=vid, cidr=cidr, subnet=sub, sg=default_sg(ec2, vid),
                           rtb=main_route_table(ec2, vid)["RouteTableId"])


def _launch(ec2, subnet: str) -> SimpleNamespace:
    i = ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                          SubnetId=subnet)["Instances"][0]
    inst = SimpleNamespace(id=i["InstanceId"], ns=i["InstanceId"], ip=i["PrivateIpAddress"],
                           eni=i["NetworkInterfaces"][0]["NetworkInterfaceId"])
    wait_until(lambda: netns_exists(inst.id), timeout=REALIZE, what=f"the namespace of {inst.id}")
    return inst


@pytest.fixture(scope="module")
def lab():
    env = {"VPCD_METER_INTERVAL_SECS": "1", "VPCD_FLOW_LOG_FLUSH": str(FLUSH)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        lab = Lab(etcd=1, api=2, hosts=2)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        a, b = lab.client(0, "A"), lab.client(1, "B")
        va = _vpc(a, "10.61.0.0/16", "10.61.1.0/24", "us-east-1a")
        vb = _vpc(b, "10.62.0.0/16", "10.62.2.0/24", "us-east-1b")
        pcx = request_peering(a, va.id, vb.id, B_ID)
        wait_for(lambda: b.describe_vpc_peering_connections(
            Filters=[{"Name": "vpc-peering-connection-id", "Values": [pcx]}])["VpcPeeringConnections"],
            timeout=5, what="the request on server 1")
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
        wait_pcx(a, pcx, "active", timeout=5)
        a.create_route(RouteTableId=va.rtb, DestinationCidrBlock=vb.cidr, VpcPeeringConnectionId=pcx)
        b.create_route(RouteTableId=vb.rtb, DestinationCidrBlock=va.cidr, VpcPeeringConnectionId=pcx)
        # B lets A in on one TCP port only.
        b.authorize_security_group_ingress(GroupId=vb.sg, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": TCP_PORT, "ToPort": TCP_PORT, "IpRanges": [{"CidrIp": va.cidr}]}])
        a1 = _launch(a, va.subnet)
        b2 = _launch(b, vb.subnet)
        yield SimpleNamespace(lab=lab, a=a, b=b, va=va, vb=vb, pcx=pcx, a1=a1, b2=b2)
    finally:
        lab.down()


def cost_rows(lab: Lab, *extra: str) -> list[dict]:
    p = lab.vpcd("cost", "--store", lab.record["store"], "--store-prefix", lab.prefix, "--csv", *extra)
    return list(csv.DictReader(io.StringIO(p.stdout)))


def metered(lab: Lab, account: str, resource: str, kind: str) -> int:
    return sum(int(r["bytes"]) for r in cost_rows(lab, "--account", account)
               if r["resource"] == resource and r["kind"] == kind)


def settle(lab: Lab, account: str, resource: str, kind: str, at_least: int) -> int:
    """Waits until the stored usage reaches `at_least` and stops growing; returns it."""
    wait_for(lambda: metered(lab, account, resource, kind) >= at_least, timeout=30, interval=0.5,
             what=f"{at_least} metered bytes on {resource} {kind}")
    prev = -1
    for _ in range(20):
        now = metered(lab, account, resource, kind)
        if now == prev:
            return now
        prev = now
        time.sleep(1.5)
    return prev


def ce_client(lab: Lab, i: int, account: str):
    _, akid, secret = ACCOUNTS[account]
    return boto3.session.Session().client(
        "ce", endpoint_url=lab.endpoint(i), region_name="us-east-1", aws_access_key_id=akid,
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}, read_timeout=30))


def test_agents_meter_a_cross_host_peering_once_per_side(lab):
    """Known bytes from h1 to h2 across the peering: each side's bytes metered once
    (within 2%), reported by `vpcd cost --store` and by Cost Explorer on both servers."""
    L = lab.lab
    sent = transfer(lab.a1, lab.b2, TCP_PORT, 24 * MB)
    out = settle(L, A_ID, lab.pcx, "peering-out", sent)
    inn = settle(L, B_ID, lab.pcx, "peering-in", sent)
    print(f"metered across hosts: sender {out}/{sent}, receiver {inn}/{sent}")
    within(out, sent, "across hosts, sender")
    within(inn, sent, "across hosts, receiver (counted once, on the receiver's host)")
    rows = [r for r in cost_rows(L, "--account", A_ID) if r["resource"] == lab.pcx]
    # A's side only (B's own rows are the ACKs going back), split by zone pair.
    assert {(r["kind"], r["zones"]) for r in rows} == {
        ("peering-out", "us-east-1a -> us-east-1 us-east-1b"),
        ("peering-in", "us-east-1a <- us-east-1 us-east-1b")}, rows
    # Cost Explorer on either API server: cross-zone peering, each side for its own
    # side, both directions (A's side is its data out and the ACKs in).
    def regional(account):
        return sum(int(r["bytes"]) for r in cost_rows(L, "--account", account)
                   if r["usage_type"] == "USE1-DataTransfer-Regional-Bytes")
    a_bytes, b_bytes = regional(A_ID), regional(B_ID)
    assert a_bytes >= out and b_bytes >= inn
    for i in (0, 1):
        for account, total in (("A", a_bytes), ("B", b_bytes)):
            cost, gb = by_usage_type(ce_query(ce_client(L, i, account)))["USE1-DataTransfer-Regional-Bytes"]
            assert abs(gb - total / GB) < 1e-6 and abs(cost - total / GB * RATE_CROSS_AZ) < 1e-6, \
                (i, account, cost, gb, total)


UDP_BLAST = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(bytes(1000), (sys.argv[1], int(sys.argv[2])))
'''


def test_traffic_the_receiver_refuses_is_billed_to_the_sender_only(lab):
    """As on one host: the sender's peering-out counts what its own filters let out,
    the receiver's peering-in only what its filters let in. B's security group refuses
    UDP, which h2's router decides after the packets crossed the underlay."""
    L = lab.lab
    out0 = metered(L, A_ID, lab.pcx, "peering-out")
    in0 = metered(L, B_ID, lab.pcx, "peering-in")
    count = 2000
    subprocess.run(["ip", "netns", "exec", lab.a1.ns, "python3", "-c", UDP_BLAST, lab.b2.ip,
                    str(REFUSED_PORT), str(count)], check=True, timeout=60)
    # The sender's side grows by every datagram (1028 IP bytes each): they left A.
    out1 = settle(L, A_ID, lab.pcx, "peering-out", out0 + count * 1028)
    assert out1 - out0 < count * 1028 * 1.05, (out0, out1)
    # Two more meter reads on every host, then the receiver's side has not moved.
    time.sleep(3)
    in1 = metered(L, B_ID, lab.pcx, "peering-in")
    assert in1 == in0, f"refused traffic billed to the receiver: {in0} -> {in1}"


def file_records(lab: Lab, name: str) -> list[dict]:
    p = lab.dir / "flow-logs" / "files" / name
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    assert lines[0] == " ".join(CUSTOM), lines[0]
    assert lines.count(lines[0]) == 1, "one header"
    return [dict(zip(CUSTOM, ln.split(" "))) for ln in lines[1:]]


def flow_log(ec2, vpc_id: str, name: str) -> str:
    [fl] = ec2.create_flow_logs(ResourceIds=[vpc_id], ResourceType="VPC", TrafficType="ALL",
                                LogDestinationType="local-file", LogDestination=name,
                                LogFormat=" ".join("${%s}" % f for f in CUSTOM))["FlowLogIds"]
    return fl


def test_each_agent_serves_its_hosts_metrics(lab):
    """After the transfer of the first test: h1's agent exports A's peering-out, h2's
    B's peering-in, neither the other's side; both count reconcile passes and kernel
    objects."""
    L = lab.lab
    hosts = {h["name"]: h for h in L.status()["hosts"]}
    sent = 24 * MB

    def transfer_bytes(host, account, kind):
        return sample(scrape(hosts[host]["metrics"]), "vpcd_data_transfer_bytes_total",
                      account=account, resource=lab.pcx, kind=kind)

    wait_for(lambda: transfer_bytes("h1", A_ID, "peering-out") >= sent, timeout=10, interval=0.5,
             what="A's peering-out in h1's metrics")
    assert transfer_bytes("h2", B_ID, "peering-in") >= sent
    # The other host's side is not there: each byte is counted on one host.
    assert transfer_bytes("h2", A_ID, "peering-out") < sent * 0.01
    assert transfer_bytes("h1", B_ID, "peering-in") < sent * 0.01
    for h in ("h1", "h2"):
        m = scrape(hosts[h]["metrics"])
        assert sample(m, "vpcd_reconcile_passes_total", result="ok") > 0, h
        assert sample(m, "vpcd_kernel_objects", kind="router_namespaces") > 0, h
    # Only /metrics is served.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{hosts['h1']['metrics']}/", timeout=10)
    assert e.value.code == 404


def test_flow_logs_across_hosts_record_each_flow_once(lab):
    """An accepted TCP flow and a refused UDP flow from h1 to h2: A's flow log has the
    sender's records (written by h1), B's the receiver's (written by h2), each once."""
    L = lab.lab
    fa = flow_log(lab.a, lab.va.id, "agentops-a.log")
    fb = flow_log(lab.b, lab.vb.id, "agentops-b.log")
    hosts = {h["name"]: h for h in L.status()["hosts"]}
    # Conntrack accounting is on in the routers that log (before the flows start).
    for host, vpc_id in (("h1", lab.va.id), ("h2", lab.vb.id)):
        ns = f"vpcd{hosts[host]['tag']}-{vpc_id}"
        wait_until(lambda: subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-n",
                                           "net.netfilter.nf_conntrack_acct"],
                                          capture_output=True, text=True).stdout.strip() == "1",
                   timeout=REALIZE, what=f"conntrack accounting in {ns}")
    port = TCP_PORT
    sent = transfer(lab.a1, lab.b2, port, 300_000)
    refused, count = REFUSED_PORT + 1, 7
    subprocess.run(["ip", "netns", "exec", lab.a1.ns, "python3", "-c", UDP_BLAST, lab.b2.ip,
                    str(refused), str(count)], check=True, timeout=60)

    def both():
        a, b = file_records(L, "agentops-a.log"), file_records(L, "agentops-b.log")
        a_out = [r for r in a if r["dstport"] == str(port) and r["flow-direction"] == "egress"]
        b_in = [r for r in b if r["dstport"] == str(port) and r["flow-direction"] == "ingress"]
        b_rej = [r for r in b if r["dstport"] == str(refused)]
        done = (sum(int(r["bytes"]) for r in a_out) >= sent and sum(int(r["bytes"]) for r in b_in) >= sent
                and sum(int(r["packets"]) for r in b_rej) >= count)
        return (a, b) if done else None

    a, b = wait_for(both, timeout=30, interval=0.5, what="the flows in both flow logs")
    time.sleep(FLUSH + 2)  # a second host writing the same flow would have by now
    a, b = file_records(L, "agentops-a.log"), file_records(L, "agentops-b.log")
    a_out = [r for r in a if r["dstport"] == str(port) and r["flow-direction"] == "egress"]
    b_in = [r for r in b if r["dstport"] == str(port) and r["flow-direction"] == "ingress"]
    # Each flow once: bytes within 2% of the payload (doubled if two hosts wrote it).
    within(sum(int(r["bytes"]) for r in a_out), sent, "A's egress record")
    within(sum(int(r["bytes"]) for r in b_in), sent, "B's ingress record")
    assert {(r["interface-id"], r["action"], r["instance-id"]) for r in a_out} == {(lab.a1.eni, "ACCEPT", lab.a1.id)}
    assert {(r["interface-id"], r["action"], r["instance-id"]) for r in b_in} == {(lab.b2.eni, "ACCEPT", lab.b2.id)}
    # The refused datagrams: REJECT on B's interface, by B's group, each once.
    b_rej = [r for r in b if r["dstport"] == str(refused)]
    assert sum(int(r["packets"]) for r in b_rej) == count, b_rej
    assert {(r["interface-id"], r["action"], r["flow-direction"], r["protocol"], r["vpcd-dropped-by"])
            for r in b_rej} == {(lab.b2.eni, "REJECT", "ingress", "17", lab.vb.sg)}
    # A's own side of the refused datagrams left A: ACCEPT egress on a1, never a REJECT.
    assert all(r["action"] == "ACCEPT" for r in a), [r for r in a if r["action"] != "ACCEPT"]
    lab.a.delete_flow_logs(FlowLogIds=[fa])
    lab.b.delete_flow_logs(FlowLogIds=[fb])
