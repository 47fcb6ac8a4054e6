"""A host's life on a cluster: liveness, failover of new placements, deregistration
(docs/cluster.md, "A host's life").

One lab for the module: one etcd member, two API servers (with /metrics), three
simulated hosts (h<i> serves the i-th zone of us-east-1, us-west-2, eu-west-1), each
agent on a 3-second liveness lease. An agent killed here stays down until the test
starts it again; instances are never moved by a lapsed lease. Needs root and etcd;
fails (does not skip) without them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import urllib.request
from types import SimpleNamespace

import pytest

from helpers import default_sg, expect_error, main_route_table, wait_for
from labkit import VPCD_BIN, Lab, host_of, lab_for_module
from netprobe import last_output, netns_exec, netns_exists, netns_list, ping, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

ICMP_ALL = {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1}
REALIZE = 20.0
# The lab's liveness lease is 3 s; a loaded machine may take longer to notice.
LAPSE = 15.0

LAUNCHED: list[str] = []


@pytest.fixture(scope="module")
def lab():
    yield from lab_for_module(LAUNCHED, etcd=1, api=2, hosts=3, serve_args=["--metrics"])


host = host_of


def kill_agent(lab: Lab, name: str) -> None:
    h = host(lab, name)
    assert h["alive"], h
    os.kill(h["agent_pid"], signal.SIGKILL)  # the lab's status vouched that this pid is the host's agent
    wait_until(lambda: not host(lab, name)["alive"], timeout=5, what=f"the agent of {name} to die")


def start_agent(lab: Lab, name: str, zones: str | None = None) -> None:
    argv = [str(VPCD_BIN), "lab", "agent", "--data-dir", str(lab.dir), "--host", name]
    if zones:
        argv += ["--zones", zones]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    h = host(lab, name)
    # `lab agent` returns once the host is registered and live.
    assert h["alive"] and h["registered"] and h["live"], h


def lapsed(lab: Lab, name: str) -> None:
    wait_until(lambda: host(lab, name)["live"] is False, timeout=LAPSE, what=f"the liveness of {name} to lapse")


def vpcd_host(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VPCD_BIN), "host", *args, "--store", lab.record["store"],
                           "--store-prefix", lab.prefix], capture_output=True, text=True, timeout=60)


def host_list(lab: Lab) -> dict:
    out = vpcd_host(lab, "list", "--json")
    assert out.returncode == 0, out.stderr
    return {h["name"]: h for h in json.loads(out.stdout)}


def host_live_metric(lab: Lab, i: int) -> dict:
    """`vpcd_host_live{host=...}` of API server i: what it believes of each host."""
    with urllib.request.urlopen(f"{lab.endpoint(i)}/metrics", timeout=10) as r:
        text = r.read().decode()
    got = {}
    for line in text.splitlines():
        if line.startswith("vpcd_host_live{"):
            name = line.split('host="', 1)[1].split('"', 1)[0]
            got[name] = int(float(line.rsplit(" ", 1)[1]))
    return got


def etcd_delete(lab: Lab, key: str) -> int:
    """Deletes a key by hand through etcd's JSON gateway (as `etcdctl del` would); how many went."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    url = lab.live_etcd()[0]
    req = urllib.request.Request(f"{url}/v3/kv/deleterange", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(json.loads(r.read()).get("deleted", 0))


def vpc(ec2, cidr: str) -> SimpleNamespace:
    vid = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    v = SimpleNamespace(id=vid, cidr=cidr, sg=default_sg(ec2, vid), rtb=main_route_table(ec2, vid)["RouteTableId"])
    ec2.authorize_security_group_ingress(GroupId=v.sg, IpPermissions=[{**ICMP_ALL, "IpRanges": [{"CidrIp": cidr}]}])
    return v


def subnet(ec2, v: SimpleNamespace, cidr: str, zone: str) -> str:
    return ec2.create_subnet(VpcId=v.id, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]


def run(ec2, subnet_id: str) -> dict:
    return ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                             SubnetId=subnet_id)["Instances"][0]


def launch(ec2, subnet_id: str) -> SimpleNamespace:
    i = run(ec2, subnet_id)
    inst = SimpleNamespace(id=i["InstanceId"], ip=i["PrivateIpAddress"], host=i["Placement"].get("HostId"))
    LAUNCHED.append(inst.id)
    wait_until(lambda: netns_exists(inst.id), timeout=REALIZE, what=f"the namespace of {inst.id}")
    return inst


def described(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def realized_by(lab: Lab, instance_id: str) -> str:
    """The host whose agent made the instance's namespace (its `lo` carries the host's tag)."""
    hosts = lab.status()["hosts"]

    def owners():
        out = subprocess.run(["ip", "-n", instance_id, "-d", "link", "show", "lo"], capture_output=True,
                             text=True).stdout
        return [h["name"] for h in hosts if f"alias vpcd{h['tag']}" in out]

    found = wait_until(owners, timeout=REALIZE, what=f"the owner marker on {instance_id}")
    assert len(found) == 1, found
    return found[0]


def vxlan_peers(lab: Lab, on: str) -> set[str]:
    """The underlay addresses the VXLAN links of host `on`'s routers have forwarding entries to."""
    tag = host(lab, on)["tag"]
    peers: set[str] = set()
    for ns in netns_list():
        if not ns.startswith(f"vpcd{tag}-"):
            continue
        p = netns_exec(ns, "bridge", "-j", "fdb", "show")
        for e in json.loads(p.stdout or "[]"):
            if e.get("ifname", "").startswith("x-") and e.get("dst"):
                peers.add(e["dst"])
    return peers


def test_a_dead_hosts_zone_takes_new_instances_elsewhere_and_keeps_its_own(lab):
    a0, a1 = lab.client(0, "A"), lab.client(1, "A")
    v = vpc(a0, "10.91.0.0/16")
    sa = subnet(a0, v, "10.91.1.0/24", "us-east-1a")
    sb = subnet(a0, v, "10.91.2.0/24", "us-east-1b")
    # h3 serves zone a too, after h1 by name.
    kill_agent(lab, "h3")
    start_agent(lab, "h3", zones="us-east-1c,us-east-1a,us-west-2c,eu-west-1c")
    i1, ib = launch(a0, sa), launch(a0, sb)
    assert (i1.host, ib.host) == ("h1", "h2")
    assert realized_by(lab, i1.id) == "h1"
    assert ping(i1.id, ib.ip, timeout=REALIZE), last_output()

    # h1's agent dies. Its kernel state carries on; once its lease lapsed, new
    # instances of zone a go to h3, through either server, and h1 keeps its own.
    kill_agent(lab, "h1")
    lapsed(lab, "h1")
    assert host_list(lab)["h1"]["live"] is False
    wait_for(lambda: host_live_metric(lab, 1).get("h1") == 0, timeout=5, what="server 1 to see h1 not live")
    i2 = launch(a1, sa)
    assert i2.host == "h3" and realized_by(lab, i2.id) == "h3"
    for c in (a0, a1):
        old = described(c, i1.id)
        assert old["State"]["Name"] == "running" and old["Placement"]["HostId"] == "h1", old
    assert netns_exists(i1.id) and realized_by(lab, i1.id) == "h1"
    assert ping(i1.id, ib.ip), last_output()
    assert ping(i2.id, ib.ip, timeout=REALIZE), last_output()

    # No live host serves zone a (nor c, h3's alone): AWS's capacity error, on
    # both servers, naming the zones that have capacity; nothing is launched.
    kill_agent(lab, "h3")
    lapsed(lab, "h3")
    sc = subnet(a0, v, "10.91.3.0/24", "us-east-1c")
    before = {i["InstanceId"] for r in a0.describe_instances()["Reservations"] for i in r["Instances"]}
    for c in (a0, a1):
        with expect_error("InsufficientInstanceCapacity", status=500) as e:
            run(c, sa)
        msg = e.error.response["Error"]["Message"]
        assert msg.startswith("We currently do not have sufficient t3.micro capacity in the Availability Zone "
                              "you requested (us-east-1a).") and msg.endswith("choosing us-east-1b."), msg
    with expect_error("InsufficientInstanceCapacity", status=500):
        run(a1, sc)
    after = {i["InstanceId"] for r in a0.describe_instances()["Reservations"] for i in r["Instances"]}
    assert after == before

    # Both agents back: live again; zone a's first live host by name is h1 again,
    # and the instances of the subnet on h1 and h3 reach each other over the underlay.
    start_agent(lab, "h1")
    start_agent(lab, "h3")
    wait_for(lambda: host_live_metric(lab, 0).get("h1") == 1, timeout=5, what="server 0 to see h1 live")
    i3 = launch(a0, sa)
    assert i3.host == "h1" and realized_by(lab, i3.id) == "h1"
    assert ping(i1.id, i2.ip, timeout=REALIZE), last_output()
    assert ping(i2.id, i3.ip, timeout=REALIZE), last_output()
    assert described(a1, i2.id)["Placement"]["HostId"] == "h3"


def test_a_host_is_removed_only_when_dead_and_empty_and_comes_back_with_its_agent(lab):
    c0, c1 = lab.client(0, "C"), lab.client(1, "C")
    v = vpc(c0, "10.92.0.0/16")
    sd = subnet(c0, v, "10.92.3.0/24", "us-east-1c")
    sb = subnet(c0, v, "10.92.2.0/24", "us-east-1b")
    ib = launch(c0, sb)
    idd = launch(c0, sd)
    assert idd.host == "h3" and realized_by(lab, idd.id) == "h3"
    # Whatever else an earlier test left on h3 goes; the host must hold only this test's.
    for acct in ("A", "B", "C"):
        ec2 = lab.client(0, acct)
        others = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                  if i["Placement"].get("HostId") == "h3" and i["State"]["Name"] != "terminated"
                  and i["InstanceId"] != idd.id]
        if others:
            ec2.terminate_instances(InstanceIds=others)
    h3 = host(lab, "h3")
    assert ping(ib.id, idd.ip, timeout=REALIZE), last_output()
    # The other hosts' routers flood to h3 over VXLAN (the control for the removal below).
    wait_until(lambda: h3["underlay_address"] in vxlan_peers(lab, "h2"), timeout=REALIZE,
               what="h2's VXLAN entries towards h3")

    # A live agent whose registration is deleted by hand registers again.
    assert etcd_delete(lab, f"{lab.prefix}/settings/host/h3") == 1
    wait_until(lambda: lab.etcd_get(f"{lab.prefix}/settings/host/h3"), timeout=REALIZE,
               what="h3's agent to register again")
    # Refused while its agent is live.
    out = vpcd_host(lab, "remove", "h3")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out
    assert "host h3 is live" in out.stderr, out.stderr
    out = vpcd_host(lab, "teardown", "h3")
    assert out.returncode != 0 and "host h3 is live" in out.stderr, out.stderr
    assert netns_exists(idd.id)
    # Refused while an instance is placed on it, dead or not.
    kill_agent(lab, "h3")
    lapsed(lab, "h3")
    listed = host_list(lab)["h3"]
    assert listed["live"] is False and listed["instances"] >= 1 and listed["zones"][0] == "us-east-1c", listed
    out = vpcd_host(lab, "remove", "h3")
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out
    assert "still holds" in out.stderr and idd.id in out.stderr and "terminate them first" in out.stderr, out.stderr
    assert lab.etcd_get(f"{lab.prefix}/settings/host/h3") is not None
    # An unknown host is refused too.
    out = vpcd_host(lab, "remove", "h9")
    assert out.returncode != 0 and 'no host "h9" is registered' in out.stderr, out.stderr

    # Its kernel objects go with `host teardown` (the agent is stopped): the
    # instance's namespace and every namespace of h3's data-plane tag, and
    # nothing of another host's.
    h3_prefix = f"vpcd{h3['tag']}-"
    assert any(n.startswith(h3_prefix) for n in netns_list())
    out = vpcd_host(lab, "teardown", "h3")
    assert out.returncode == 0 and "removed the kernel objects of host h3" in out.stdout, out
    assert not netns_exists(idd.id)
    assert not [n for n in netns_list() if n.startswith(h3_prefix)]
    assert netns_exists(ib.id) and any(n.startswith(f"vpcd{host(lab, 'h2')['tag']}-") for n in netns_list())
    out = vpcd_host(lab, "teardown", "h9")
    assert out.returncode != 0 and 'no host "h9" is registered' in out.stderr, out.stderr

    # Terminated, the host can go: its registration and gateway records leave the
    # store, both API servers forget it, and the other hosts' VXLAN entries towards it go.
    assert lab.etcd_get(f"{lab.prefix}/settings/gateway/h3") is not None
    c1.terminate_instances(InstanceIds=[idd.id])
    wait_for(lambda: described(c0, idd.id)["State"]["Name"] == "terminated", timeout=10, what="terminated")
    out = wait_for(lambda: vpcd_host(lab, "remove", "h3"), pred=lambda o: o.returncode == 0, timeout=15,
                   what="the removal once every instance on h3 is terminated", interval=0.5)
    assert "removed host h3" in out.stdout
    assert lab.etcd_get(f"{lab.prefix}/settings/host/h3") is None
    assert lab.etcd_get(f"{lab.prefix}/settings/gateway/h3") is None
    assert "h3" not in host_list(lab)
    for i in (0, 1):
        wait_for(lambda i=i: "h3" not in host_live_metric(lab, i) and host_live_metric(lab, i).get("h1") == 1,
                 timeout=5, what=f"server {i} to forget h3")
    wait_until(lambda: h3["underlay_address"] not in vxlan_peers(lab, "h2"), timeout=REALIZE,
               what="h2 to forget its VXLAN entries towards h3")
    for c in (c0, c1):
        with expect_error("InsufficientInstanceCapacity", status=500):
            run(c, sd)
    out = vpcd_host(lab, "remove", "h3")
    assert out.returncode != 0 and "is registered" in out.stderr, out.stderr

    # Its agent, started again, registers it again: it takes new instances of its zone.
    start_agent(lab, "h3")
    assert host_list(lab)["h3"]["live"] is True
    wait_until(lambda: h3["underlay_address"] in vxlan_peers(lab, "h2"), timeout=REALIZE,
               what="h2's VXLAN entries towards h3 again")
    wait_until(lambda: lab.etcd_get(f"{lab.prefix}/settings/gateway/h3") is not None, timeout=REALIZE,
               what="h3's gateways published again")
    back = launch(c1, sd)
    assert back.host == "h3" and realized_by(lab, back.id) == "h3"
    assert ping(ib.id, back.ip, timeout=REALIZE), last_output()


def test_host_commands_need_a_cluster_store(tmp_path):
    # Without --store (SQLite in a data directory) there are no hosts: one clear line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPCD_STORE")}
    for args in (["list"], ["remove", "h1"]):
        out = subprocess.run([str(VPCD_BIN), "host", *args], capture_output=True, text=True, timeout=30,
                             env=env, cwd=tmp_path)
        assert out.returncode != 0, out
        assert out.stderr.strip() == ("vpcd: hosts exist only on a cluster: give --store etcd://HOST:PORT[,...] "
                                      "(or VPCD_STORE)"), out.stderr
    # `vpcd host remove` needs the host's name.
    out = subprocess.run([str(VPCD_BIN), "host", "remove", "--store", "etcd://127.0.0.1:1"], capture_output=True,
                         text=True, timeout=30, env=env, cwd=tmp_path)
    assert out.returncode != 0 and "<NAME>" in out.stderr, out.stderr
