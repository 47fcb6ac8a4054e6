"""VPC flow logs with real packets: records measured in the router namespaces'
conntrack tables, written as gzip objects at AWS's S3 key layout under the data
directory and as a plain local file, read back here with Python's gzip module.

Needs root: fails (does not skip) otherwise. One server with its data plane, started
with VPCD_FLOW_LOG_FLUSH=2 so that windows are written every 2 s instead of every
MaxAggregationInterval (the records mean the same). Addresses: 10.71.0.0/16.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DP_LIMITS, Server, dp_stop_and_teardown, netns_names
from helpers import A_ID, wait_for
from netprobe import Dp, listener, netns_exec, tcp_connect
from test_dataplane import subnet, vpc
from test_metering import transfer

pytestmark = pytest.mark.usefixtures("require_root")

FLUSH = 2
KEY = re.compile(r"^team/AWSLogs/(\d{12})/vpcflowlogs/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/"
                 r"\1_vpcflowlogs_\2_(fl-[0-9a-f]+)_(\d{8})T(\d{4})Z_([0-9a-f]{8})\.log\.gz$")
V2 = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end "
      "action log-status")
CUSTOM = ["version", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
          "bytes", "action", "flow-direction", "tcp-flags", "vpc-id", "subnet-id", "instance-id", "type",
          "pkt-srcaddr", "pkt-dstaddr", "region", "az-id", "traffic-path", "vpcd-dropped-by"]


@pytest.fixture(scope="module")
def dp(require_root):
    old = os.environ.get("VPCD_FLOW_LOG_FLUSH")
    os.environ["VPCD_FLOW_LOG_FLUSH"] = str(FLUSH)
    s = Server(limits=DP_LIMITS, dataplane=True)
    s.ns_before = netns_names()
    try:
        s.start()
    finally:
        if old is None:
            del os.environ["VPCD_FLOW_LOG_FLUSH"]
        else:
            os.environ["VPCD_FLOW_LOG_FLUSH"] = old
    try:
        yield Dp(s)
    finally:
        dp_stop_and_teardown(s)
        shutil.rmtree(s.tmp, ignore_errors=True)


def bucket_dir(dp, bucket: str) -> Path:
    return dp.server.data_dir / "flow-logs" / "s3" / bucket


def objects(dp, bucket: str) -> dict[str, list[str]]:
    """Every object in the bucket (key -> its lines), each read with Python's gzip."""
    root = bucket_dir(dp, bucket)
    out = {}
    if root.exists():
        for p in sorted(root.rglob("*.log.gz")):
            with gzip.open(p, "rt") as f:
                out[str(p.relative_to(root))] = f.read().splitlines()
    return out


def s3_records(dp, bucket: str) -> list[dict]:
    recs = []
    for key, lines in objects(dp, bucket).items():
        assert lines[0] == V2, (key, lines[0])
        recs += [dict(zip(V2.split(), ln.split(" "))) | {"key": key} for ln in lines[1:]]
    return recs


def file_records(dp, name: str) -> list[dict]:
    p = dp.server.data_dir / "flow-logs" / "files" / name
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    fields = lines[0].split(" ")
    return [dict(zip(fields, ln.split(" "))) for ln in lines[1:]]


def total(recs, **match) -> tuple[int, int]:
    sel = [r for r in recs if all(r[k] == str(v) for k, v in match.items())]
    return sum(int(r["packets"]) for r in sel), sum(int(r["bytes"]) for r in sel)


def acct_on(dp, vpc_id: str):
    ns = dp.router_ns(vpc_id)
    wait_for(lambda: netns_exec(ns, "sysctl", "-n", "net.netfilter.nf_conntrack_acct").stdout.strip() == "1",
             timeout=10, interval=0.2, what=f"conntrack accounting in {ns}")


@pytest.fixture(scope="module")
def net(dp):
    a = dp.ec2("A")
    v = vpc(a, "10.71.0.0/16")
    s1 = subnet(a, v, "10.71.1.0/24")
    i1 = dp.launch(a, s1, "10.71.1.10")
    i2 = dp.launch(a, s1, "10.71.1.11")
    return a, v, s1, i1, i2


def test_accepted_ping_and_tcp_are_recorded_with_their_counts(dp, net):
    a, v, s1, i1, i2 = net
    t0 = int(time.time())
    [fl_vpc] = a.create_flow_logs(ResourceIds=[v.id], ResourceType="VPC", TrafficType="ALL",
                                  LogDestinationType="s3", LogDestination="arn:aws:s3:::flows/team",
                                  MaxAggregationInterval=60)["FlowLogIds"]
    [fl_eni] = a.create_flow_logs(ResourceIds=[i2.eni], ResourceType="NetworkInterface", TrafficType="ALL",
                                  LogDestinationType="local-file", LogDestination="i2.log",
                                  LogFormat=" ".join("${%s}" % f for f in CUSTOM))["FlowLogIds"]
    a.create_flow_logs(ResourceIds=[v.id], ResourceType="VPC", TrafficType="REJECT",
                       LogDestinationType="local-file", LogDestination="rejects.log")
    dp.converge()
    acct_on(dp, v.id)

    # Five echo requests of 100 payload bytes: 128-byte IP packets each way.
    p = netns_exec(i1.ns, "ping", "-n", "-c", "5", "-i", "0.2", "-s", "100", i2.ip, timeout=20)
    assert p.returncode == 0, p.stdout + p.stderr
    sent = transfer(i1, i2, 9500, 300_000)

    def tcp_done():
        recs = s3_records(dp, "flows")
        out = total(recs, **{"interface-id": i1.eni, "srcaddr": i1.ip, "dstaddr": i2.ip, "dstport": 9500})
        return recs if out[1] >= sent else None
    wait_for(tcp_done, timeout=20, interval=0.5, what="the TCP connection's records in the bucket")
    time.sleep(FLUSH + 2)  # the close's last packets land in the next window
    recs = s3_records(dp, "flows")
    end = int(time.time())

    # Every object sits at AWS's key layout and names this flow log.
    for key in objects(dp, "flows"):
        m = KEY.match(key)
        assert m, key
        assert m.group(1) == A_ID and m.group(2) == "us-east-1" and m.group(6) == fl_vpc
        assert int(m.group(8)[2:]) % 5 == 0, key  # 5-minute slots
    for r in recs:
        assert r["version"] == "2" and r["account-id"] == A_ID and r["log-status"] == "OK"
        assert r["action"] == "ACCEPT"
        assert t0 <= int(r["start"]) <= int(r["end"]) <= end, r

    # ICMP: exactly the five requests, out of i1 and into i2, and the five replies back.
    assert total(recs, **{"interface-id": i1.eni, "srcaddr": i1.ip, "dstaddr": i2.ip, "protocol": 1}) == (5, 640)
    assert total(recs, **{"interface-id": i2.eni, "srcaddr": i1.ip, "dstaddr": i2.ip, "protocol": 1}) == (5, 640)
    assert total(recs, **{"interface-id": i1.eni, "srcaddr": i2.ip, "dstaddr": i1.ip, "protocol": 1}) == (5, 640)

    # TCP: the 5-tuple on both interfaces, the bytes within headers of the payload.
    out = [r for r in recs if r["interface-id"] == i1.eni and r["dstport"] == "9500" and r["protocol"] == "6"]
    assert out, recs
    sport = out[0]["srcport"]
    assert all(r["srcaddr"] == i1.ip and r["dstaddr"] == i2.ip and r["srcport"] == sport for r in out)
    pk, by = total(recs, **{"interface-id": i1.eni, "srcaddr": i1.ip, "dstaddr": i2.ip, "srcport": sport,
                             "dstport": 9500})
    assert sent <= by <= sent * 1.03 + 2000, (by, sent)
    assert pk >= 3
    # i2 received exactly what i1 sent (one conntrack entry, both interfaces).
    assert total(recs, **{"interface-id": i2.eni, "srcaddr": i1.ip, "dstaddr": i2.ip, "srcport": sport,
                          "dstport": 9500}) == (pk, by)
    # The acknowledgements back: i2 out, i1 in.
    back = total(recs, **{"interface-id": i2.eni, "srcaddr": i2.ip, "dstaddr": i1.ip, "srcport": 9500,
                          "dstport": sport})
    assert back[0] >= 2 and back == total(recs, **{"interface-id": i1.eni, "srcaddr": i2.ip, "dstaddr": i1.ip,
                                                   "srcport": 9500, "dstport": sport})

    # The interface's own flow log, in the custom format: only i2's records.
    mine = file_records(dp, "i2.log")
    assert mine and all(r["interface-id"] == i2.eni for r in mine)
    [inbound] = [r for r in mine if r["dstport"] == "9500" and r["flow-direction"] == "ingress"
                 and r["srcport"] == sport] or [None]
    assert inbound is not None, mine
    assert inbound["version"] == "5"
    assert (inbound["vpc-id"], inbound["subnet-id"], inbound["instance-id"]) == (v.id, s1, i2.id)
    assert inbound["type"] == "IPv4" and inbound["region"] == "us-east-1" and inbound["az-id"].startswith("use1-")
    assert inbound["pkt-srcaddr"] == i1.ip and inbound["pkt-dstaddr"] == i2.ip
    assert int(inbound["tcp-flags"]) & 2, inbound  # the SYN
    assert inbound["traffic-path"] == "-" and inbound["vpcd-dropped-by"] == "-"
    answer = [r for r in mine if r["srcport"] == "9500" and r["flow-direction"] == "egress"]
    assert answer and all(r["traffic-path"] == "1" for r in answer)
    assert int(answer[0]["tcp-flags"]) & 18 == 18  # the SYN-ACK

    # TrafficType REJECT writes no ACCEPT record.
    assert all(r["action"] == "REJECT" for r in file_records(dp, "rejects.log"))
    a.delete_flow_logs(FlowLogIds=[fl_eni])


def test_deleting_a_flow_log_stops_its_records(dp, net):
    a, v, s1, i1, i2 = net
    [fl] = a.create_flow_logs(ResourceIds=[v.id], ResourceType="VPC", LogDestinationType="s3",
                              LogDestination="arn:aws:s3:::gone/team")["FlowLogIds"]
    [keep] = a.create_flow_logs(ResourceIds=[i1.eni], ResourceType="NetworkInterface",
                                LogDestinationType="local-file", LogDestination="keep.log")["FlowLogIds"]
    dp.converge()
    acct_on(dp, v.id)
    transfer(i1, i2, 9600, 50_000)
    wait_for(lambda: total(s3_records(dp, "gone"), dstport=9600)[1] >= 50_000, timeout=20, interval=0.5,
             what="records of the first connection")
    a.delete_flow_logs(FlowLogIds=[fl])
    time.sleep(1.5)  # the collector's next poll sees the deletion
    before = objects(dp, "gone")
    transfer(i1, i2, 9601, 50_000)
    # The flow log that is still there records the new connection, so it was measured...
    wait_for(lambda: total(file_records(dp, "keep.log"), dstport=9601)[1] >= 50_000, timeout=20, interval=0.5,
             what="the second connection in keep.log")
    time.sleep(FLUSH + 1)
    # ...but the deleted one wrote nothing more.
    assert objects(dp, "gone") == before
    assert total(s3_records(dp, "gone"), dstport=9601) == (0, 0)
    a.delete_flow_logs(FlowLogIds=[keep])


def reject_log(a, resource: str, name: str, traffic: str = "REJECT", rtype: str = "VPC") -> str:
    [fl] = a.create_flow_logs(ResourceIds=[resource], ResourceType=rtype, TrafficType=traffic,
                              LogDestinationType="local-file", LogDestination=name,
                              LogFormat=" ".join("${%s}" % f for f in CUSTOM))["FlowLogIds"]
    return fl


def test_a_security_group_drop_is_a_reject_record_naming_the_group(dp, net):
    a, v, s1, i1, i2 = net
    closed = a.create_security_group(GroupName="closed", Description="no ingress", VpcId=v.id)["GroupId"]
    i3 = dp.launch(a, s1, "10.71.1.12", groups=[closed])
    rejects = reject_log(a, v.id, "sg-rejects.log")
    accepts = reject_log(a, v.id, "sg-accepts.log", traffic="ACCEPT")
    dp.converge()
    acct_on(dp, v.id)
    with listener(i3.ns, 7000, ident="i3"):
        assert not tcp_connect(i1.ns, i3.ip, 7000, expect=False)
    p = netns_exec(i1.ns, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", i3.ip, timeout=20)
    assert p.returncode != 0, "the closed group should drop ICMP"

    def found():
        recs = file_records(dp, "sg-rejects.log")
        icmp = total(recs, **{"interface-id": i3.eni, "protocol": 1, "srcaddr": i1.ip})
        tcp = [r for r in recs if r["dstport"] == "7000"]
        return recs if icmp[0] >= 3 and tcp else None
    recs = wait_for(found, timeout=15, interval=0.5, what="REJECT records for i3 in sg-rejects.log")
    tcp = [r for r in recs if r["dstport"] == "7000"]
    for r in tcp:
        assert r["action"] == "REJECT" and r["interface-id"] == i3.eni and r["flow-direction"] == "ingress"
        assert (r["srcaddr"], r["dstaddr"], r["protocol"]) == (i1.ip, i3.ip, "6")
        assert r["vpcd-dropped-by"] == closed
        assert int(r["tcp-flags"]) == 2  # only SYNs reach the group
        assert int(r["bytes"]) % int(r["packets"]) == 0 and 40 <= int(r["bytes"]) // int(r["packets"]) <= 80
        assert r["instance-id"] == i3.id
    # Three echo requests of 84 bytes, each dropped and logged once.
    assert total(recs, **{"interface-id": i3.eni, "protocol": 1, "srcaddr": i1.ip}) == (3, 252)
    assert all(r["action"] == "REJECT" for r in recs)
    # The ACCEPT-only flow log has no REJECT record.
    time.sleep(FLUSH + 1)
    assert all(r["action"] == "ACCEPT" for r in file_records(dp, "sg-accepts.log"))
    a.delete_flow_logs(FlowLogIds=[rejects, accepts])


def test_a_network_acl_drop_is_a_reject_record_naming_the_acl_and_rule(dp, net):
    a, v, s1, i1, i2 = net
    s2 = subnet(a, v, "10.71.2.0/24")
    acl = a.create_network_acl(VpcId=v.id)["NetworkAcl"]["NetworkAclId"]
    a.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="6", RuleAction="deny", Egress=False,
                               CidrBlock=v.cidr, PortRange={"From": 7100, "To": 7100})
    for egress in (False, True):
        a.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Protocol="-1", RuleAction="allow",
                                   Egress=egress, CidrBlock="0.0.0.0/0")
    dacl = a.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [s2]}])["NetworkAcls"][0]
    assoc = next(x["NetworkAclAssociationId"] for x in dacl["Associations"] if x["SubnetId"] == s2)
    a.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)
    i4 = dp.launch(a, s2, "10.71.2.10")
    fl = reject_log(a, s2, "acl-rejects.log", traffic="ALL", rtype="Subnet")
    dp.converge()
    acct_on(dp, v.id)
    with listener(i4.ns, 7100, ident="i4"):
        assert not tcp_connect(i1.ns, i4.ip, 7100, expect=False)
    with listener(i4.ns, 7101, ident="i4"):
        assert tcp_connect(i1.ns, i4.ip, 7101)

    def found():
        recs = file_records(dp, "acl-rejects.log")
        return recs if [r for r in recs if r["dstport"] == "7100"] and \
            [r for r in recs if r["dstport"] == "7101"] else None
    recs = wait_for(found, timeout=15, interval=0.5, what="records of both connections in acl-rejects.log")
    denied = [r for r in recs if r["dstport"] == "7100"]
    assert all(r["action"] == "REJECT" and r["vpcd-dropped-by"] == f"{acl}:50" and r["interface-id"] == i4.eni
               and r["subnet-id"] == s2 and r["flow-direction"] == "ingress" for r in denied), denied
    allowed = [r for r in recs if r["dstport"] == "7101"]
    assert all(r["action"] == "ACCEPT" and r["vpcd-dropped-by"] == "-" for r in allowed), allowed
    # A subnet's flow log covers only that subnet's interfaces.
    assert {r["interface-id"] for r in recs} == {i4.eni}
    a.delete_flow_logs(FlowLogIds=[fl])


def test_a_restart_writes_no_record_twice(dp, net):
    a, v, s1, i1, i2 = net
    fl = reject_log(a, i1.eni, "restart.log", traffic="ALL", rtype="NetworkInterface")
    dp.converge()
    acct_on(dp, v.id)
    sent = transfer(i1, i2, 9700, 100_000)
    key = {"interface-id": i1.eni, "dstport": 9700, "flow-direction": "egress"}
    wait_for(lambda: total(file_records(dp, "restart.log"), **key)[1] >= sent, timeout=20, interval=0.5,
             what="the connection's records in restart.log")
    time.sleep(FLUSH + 2)
    written = total(file_records(dp, "restart.log"), **key)
    # kill -9 and start again while the connection's entry is still in conntrack (TIME_WAIT).
    os.environ["VPCD_FLOW_LOG_FLUSH"] = str(FLUSH)
    try:
        dp.server.restart()
    finally:
        del os.environ["VPCD_FLOW_LOG_FLUSH"]
    time.sleep(FLUSH + 3)
    assert total(file_records(dp, "restart.log"), **key) == written
    # Records go on after the restart.
    transfer(i1, i2, 9701, 20_000)
    wait_for(lambda: total(file_records(dp, "restart.log"), dstport=9701)[1] >= 20_000, timeout=20,
             interval=0.5, what="the second connection's records after the restart")
    a.delete_flow_logs(FlowLogIds=[fl])
