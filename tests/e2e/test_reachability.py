"""The reachability analyzer, end to end: AWS's Network Insights API through boto3 and
the aws CLI, and `vpcd reach` on the same server's data directory.

Golden cases, one per vpcd diagnosis (see docs/reachability.md): transitive peering,
edge-to-edge through a peer's internet gateway, a peering still pending acceptance,
a missing route back from VPC-B, and a network ACL rule 100 denying the return
traffic on ephemeral ports; plus the positive seed workflow. Each builds its topology
through boto3 on a --no-dataplane server, analyses it with
CreateNetworkInsightsPath + StartNetworkInsightsAnalysis + DescribeNetworkInsightsAnalyses,
and runs `vpcd reach ... --data-dir <the server's data dir>`.

Where vpcd's diagnoses appear in the API (docs/reachability.md):
* one extra `Explanations` item per diagnosis, `ExplanationCode` = `VPCD_<KIND>`
  (e.g. `VPCD_TRANSITIVE_PEERING`), `State` = the message, `MissingComponent` = the fix;
* and one line per diagnosis in the analysis' `WarningMessage`:
  `vpcd diagnosis <kind>: <message> Fix: <fix>`.

Account boundaries (docs/reachability.md, "Account boundaries"): a path names only the
caller's own resources (another account's gives exactly the error a missing one gives),
and an analysis across a peering into another account's VPC, its destination given by
IP address, shows none of that account's IDs, ARNs or tags. The golden cases therefore
put both ends in one account unless they test the boundary itself.

Every test makes its own VPCs in 10.150-10.199.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import uuid
from types import SimpleNamespace

import ipaddress

import pytest
from botocore.exceptions import ClientError

from conftest import VPCD_BIN
from helpers import (A_ID, B_ID, C_ID, active_peering, default_sg, expect_error, is_id,
                     main_route_table, request_peering, wait_for, wait_pcx)

IMAGE = "ami-12345678"
INET_HOST = "198.51.100.10"
ACCOUNT_IDS = {"A": A_ID, "B": B_ID, "C": C_ID}


# -- topology helpers ------------------------------------------------------------------

def net(ec2, account: str, cidr: str) -> SimpleNamespace:
    """A VPC with one /24 subnet and one running instance at .10 (default group)."""
    vid = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    sub_cidr = cidr.replace(".0.0/16", ".1.0/24")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=sub_cidr)["Subnet"]["SubnetId"]
    ip = cidr.replace(".0.0/16", ".1.10")
    iid = ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, SubnetId=sid,
                            PrivateIpAddress=ip)["Instances"][0]["InstanceId"]
    wait_for(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
             ["State"]["Name"], lambda s: s == "running", timeout=5, what=f"{iid} running")
    return SimpleNamespace(ec2=ec2, account=account, id=vid, cidr=cidr, subnet=sid, inst=iid, ip=ip,
                           sg=default_sg(ec2, vid), rtb=main_route_table(ec2, vid)["RouteTableId"],
                           arn=f"arn:aws:ec2:us-east-1:{ACCOUNT_IDS[account]}:instance/{iid}")


def route(n: SimpleNamespace, dest: str, **target):
    n.ec2.create_route(RouteTableId=n.rtb, DestinationCidrBlock=dest, **target)


def allow_tcp(n: SimpleNamespace, port: int, cidr: str):
    n.ec2.authorize_security_group_ingress(GroupId=n.sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}])


def peered(client, cidr_a: str, cidr_b: str, routes: bool = True, port: int = 22,
           b_account: str = "A"):
    """VPC-A (account A) and VPC-B (account `b_account`, by default A too), peered (active);
    routes both ways; B admits tcp `port` from A."""
    a = net(client("A"), "A", cidr_a)
    b = net(client(b_account), b_account, cidr_b)
    pcx = active_peering(a.ec2, b.ec2, a.id, b.id, ACCOUNT_IDS[b_account])
    if routes:
        route(a, b.cidr, VpcPeeringConnectionId=pcx)
        route(b, a.cidr, VpcPeeringConnectionId=pcx)
    allow_tcp(b, port, a.cidr)
    return a, b, pcx


# -- API helpers -------------------------------------------------------------------------

def analyse(ec2, source: str, destination: str | None = None, protocol: str = "tcp",
            port: int | None = 22, **kw) -> dict:
    """Creates a path, starts an analysis, and returns the described analysis."""
    args = {"Source": source, "Protocol": protocol, **kw}
    if destination and is_ip(destination):
        args["DestinationIp"] = destination
    elif destination:
        args["Destination"] = destination
    if port is not None:
        args["DestinationPort"] = port
    path = ec2.create_network_insights_path(**args)["NetworkInsightsPath"]
    started = ec2.start_network_insights_analysis(
        NetworkInsightsPathId=path["NetworkInsightsPathId"])["NetworkInsightsAnalysis"]
    assert started["Status"] == "running"
    assert is_id("nia", started["NetworkInsightsAnalysisId"])
    [got] = ec2.describe_network_insights_analyses(
        NetworkInsightsAnalysisIds=[started["NetworkInsightsAnalysisId"]])["NetworkInsightsAnalyses"]
    assert got["Status"] == "succeeded", \
        f"analysis {got['Status']}: {got.get('StatusMessage')!r}"
    return got


def is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def codes(analysis: dict) -> set[str]:
    """The AWS explanation codes (vpcd's own VPCD_* items left out)."""
    return {e["ExplanationCode"] for e in analysis.get("Explanations", [])
            if not e["ExplanationCode"].startswith("VPCD_")}


def diagnoses(analysis: dict) -> dict[str, dict]:
    """vpcd's diagnoses by kind: {'transitive-peering': {'message':…, 'fix':…}}.

    Reads the VPCD_* explanation items and checks that WarningMessage says the same.
    """
    out = {}
    for e in analysis.get("Explanations", []):
        code = e["ExplanationCode"]
        if code.startswith("VPCD_"):
            kind = code[len("VPCD_"):].lower().replace("_", "-")
            assert e.get("State") and e.get("MissingComponent"), e
            out[kind] = {"message": e["State"], "fix": e["MissingComponent"]}
    warning = analysis.get("WarningMessage", "")
    for kind, d in out.items():
        line = f"vpcd diagnosis {kind}: {d['message']} Fix: {d['fix']}"
        assert line in warning.splitlines(), f"{line!r} not in WarningMessage {warning!r}"
    return out


def explanation(analysis: dict, code: str) -> dict:
    found = [e for e in analysis["Explanations"] if e["ExplanationCode"] == code]
    assert found, f"no {code} in {json.dumps(analysis['Explanations'], default=str)}"
    return found[0]


def reach(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VPCD_BIN), "reach", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=60)


def show(p: subprocess.CompletedProcess) -> str:
    return f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


def cli_diagnoses(server, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`vpcd reach ... --json`: the process and its parsed output."""
    p = reach(server, *args, "--json")
    assert p.returncode in (0, 1), show(p)
    return p, json.loads(p.stdout)


# -- the API surface (no verdict needed) -------------------------------------------------

def test_path_lifecycle_filters_and_errors(server, client):
    a, b = client("A"), client("B")
    na = net(a, "A", "10.150.0.0/16")
    nb = net(a, "A", "10.151.0.0/16")  # A's own second VPC

    p = a.create_network_insights_path(
        Source=na.inst, Destination=nb.arn, Protocol="tcp", DestinationPort=443,
        TagSpecifications=[{"ResourceType": "network-insights-path",
                            "Tags": [{"Key": "Name", "Value": "a-to-b"}]}])["NetworkInsightsPath"]
    pid = p["NetworkInsightsPathId"]
    assert is_id("nip", pid)
    assert p["NetworkInsightsPathArn"] == f"arn:aws:ec2:us-east-1:{A_ID}:network-insights-path/{pid}"
    assert p["Source"] == na.inst
    assert p["SourceArn"] == f"arn:aws:ec2:us-east-1:{A_ID}:instance/{na.inst}"
    assert p["Destination"] == nb.inst
    assert p["DestinationArn"] == nb.arn
    assert p["Protocol"] == "tcp" and p["DestinationPort"] == 443
    assert p["Tags"] == [{"Key": "Name", "Value": "a-to-b"}]
    assert abs(p["CreatedDate"] - datetime.datetime.now(datetime.timezone.utc)) < datetime.timedelta(minutes=5)

    # An IP destination, AWS's way (FilterAtSource.DestinationAddress), and ICMP (a vpcd extension).
    p2 = a.create_network_insights_path(Source=na.inst, Protocol="tcp",
                                        FilterAtSource={"DestinationAddress": INET_HOST,
                                                        "DestinationPortRange": {"FromPort": 80, "ToPort": 80}})
    p2 = p2["NetworkInsightsPath"]
    assert "Destination" not in p2
    assert p2["FilterAtSource"] == {"DestinationAddress": INET_HOST,
                                    "DestinationPortRange": {"FromPort": 80, "ToPort": 80}}
    p3 = a.create_network_insights_path(Source=na.inst, DestinationIp=nb.ip, Protocol="icmp")["NetworkInsightsPath"]
    assert p3["Protocol"] == "icmp" and p3["DestinationIp"] == nb.ip

    # The same ClientToken gives the same path.
    tok = str(uuid.uuid4())
    again = [a.create_network_insights_path(Source=na.inst, Destination=nb.arn, Protocol="udp",
                                            DestinationPort=53, ClientToken=tok)["NetworkInsightsPath"]
             ["NetworkInsightsPathId"] for _ in range(2)]
    assert again[0] == again[1]

    # Describe: by ID, filters, paging.
    [d] = a.describe_network_insights_paths(NetworkInsightsPathIds=[pid])["NetworkInsightsPaths"]
    assert d == p
    by_tag = a.describe_network_insights_paths(Filters=[{"Name": "tag:Name", "Values": ["a-to-b"]}])
    assert [x["NetworkInsightsPathId"] for x in by_tag["NetworkInsightsPaths"]] == [pid]
    by_dest = a.describe_network_insights_paths(Filters=[{"Name": "destination", "Values": [nb.inst]},
                                                         {"Name": "protocol", "Values": ["tcp"]}])
    assert [x["NetworkInsightsPathId"] for x in by_dest["NetworkInsightsPaths"]] == [pid]
    mine = {x["NetworkInsightsPathId"] for x in a.describe_network_insights_paths()["NetworkInsightsPaths"]}
    assert {pid, p2["NetworkInsightsPathId"], p3["NetworkInsightsPathId"], again[0]} <= mine
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = a.describe_network_insights_paths(MaxResults=1, **kw)
        assert len(page["NetworkInsightsPaths"]) <= 1
        seen += [x["NetworkInsightsPathId"] for x in page["NetworkInsightsPaths"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(mine)

    # Another account sees none of it.
    assert pid not in {x["NetworkInsightsPathId"] for x in b.describe_network_insights_paths()["NetworkInsightsPaths"]}
    with expect_error("InvalidNetworkInsightsPathId.NotFound"):
        b.describe_network_insights_paths(NetworkInsightsPathIds=[pid])
    with expect_error("InvalidNetworkInsightsPathId.NotFound"):
        b.delete_network_insights_path(NetworkInsightsPathId=pid)

    # Errors.
    with expect_error("InvalidInstanceID.NotFound"):  # the source must be the caller's own
        b.create_network_insights_path(Source=na.arn, Destination=nb.inst, Protocol="tcp")
    with expect_error("InvalidParameterValue"):
        a.create_network_insights_path(Source=na.id, Destination=nb.arn, Protocol="tcp")
    with expect_error("InvalidParameterValue"):
        a.create_network_insights_path(Source=na.inst, Destination=nb.arn, Protocol="sctp")
    with expect_error("MissingParameter"):
        a.create_network_insights_path(Source=na.inst, Protocol="tcp")
    with expect_error("InvalidParameterCombination"):
        a.create_network_insights_path(Source=na.inst, Protocol="tcp", DestinationPort=22,
                                       FilterAtSource={"DestinationAddress": nb.ip})
    with expect_error("InvalidNetworkInsightsPathId.Malformed"):
        a.describe_network_insights_paths(NetworkInsightsPathIds=["nothex"])
    with expect_error("DryRunOperation", 412):
        a.create_network_insights_path(Source=na.inst, Destination=nb.arn, Protocol="tcp", DryRun=True)

    # Tags through CreateTags / DescribeTags.
    a.create_tags(Resources=[pid], Tags=[{"Key": "team", "Value": "net"}])
    tags = a.describe_tags(Filters=[{"Name": "resource-id", "Values": [pid]}])["Tags"]
    assert {(t["Key"], t["ResourceType"]) for t in tags} == {("Name", "network-insights-path"),
                                                              ("team", "network-insights-path")}

    # Delete.
    assert a.delete_network_insights_path(NetworkInsightsPathId=p3["NetworkInsightsPathId"])[
        "NetworkInsightsPathId"] == p3["NetworkInsightsPathId"]
    with expect_error("InvalidNetworkInsightsPathId.NotFound"):
        a.describe_network_insights_paths(NetworkInsightsPathIds=[p3["NetworkInsightsPathId"]])


def test_analysis_lifecycle(server, client):
    a, b = client("A"), client("B")
    na = net(a, "A", "10.152.0.0/16")
    nb = net(a, "A", "10.153.0.0/16")  # A's own, not peered
    pid = a.create_network_insights_path(Source=na.inst, Destination=nb.arn, Protocol="tcp",
                                         DestinationPort=22)["NetworkInsightsPath"]["NetworkInsightsPathId"]
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    started = a.start_network_insights_analysis(
        NetworkInsightsPathId=pid, TagSpecifications=[{"ResourceType": "network-insights-analysis",
                                                       "Tags": [{"Key": "k", "Value": "v"}]}])
    s = started["NetworkInsightsAnalysis"]
    nia = s["NetworkInsightsAnalysisId"]
    assert is_id("nia", nia)
    assert s["Status"] == "running"  # as AWS answers Start; the outcome comes from Describe
    assert s["NetworkInsightsPathId"] == pid
    assert s["NetworkInsightsAnalysisArn"] == f"arn:aws:ec2:us-east-1:{A_ID}:network-insights-analysis/{nia}"
    assert s["Tags"] == [{"Key": "k", "Value": "v"}]

    [d] = a.describe_network_insights_analyses(NetworkInsightsAnalysisIds=[nia])["NetworkInsightsAnalyses"]
    assert d["Status"] == "succeeded", d.get("StatusMessage")
    assert d["NetworkPathFound"] is False  # no peering between the two VPCs
    assert "disconnected-vpcs" in diagnoses(d), d["Explanations"]
    by_found = a.describe_network_insights_analyses(NetworkInsightsPathId=pid,
                                                    Filters=[{"Name": "path-found", "Values": ["false"]}])
    assert [x["NetworkInsightsAnalysisId"] for x in by_found["NetworkInsightsAnalyses"]] == [nia]
    assert a.describe_network_insights_analyses(
        NetworkInsightsPathId=pid, Filters=[{"Name": "path-found", "Values": ["true"]}])["NetworkInsightsAnalyses"] == []
    assert d["StartDate"] == s["StartDate"]
    by_path = a.describe_network_insights_analyses(NetworkInsightsPathId=pid)["NetworkInsightsAnalyses"]
    assert [x["NetworkInsightsAnalysisId"] for x in by_path] == [nia]
    in_window = a.describe_network_insights_analyses(
        NetworkInsightsPathId=pid, AnalysisStartTime=before,
        AnalysisEndTime=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1))
    assert [x["NetworkInsightsAnalysisId"] for x in in_window["NetworkInsightsAnalyses"]] == [nia]
    later = a.describe_network_insights_analyses(
        NetworkInsightsPathId=pid,
        AnalysisStartTime=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    assert later["NetworkInsightsAnalyses"] == []
    by_status = a.describe_network_insights_analyses(Filters=[{"Name": "status", "Values": [d["Status"]]}])
    assert nia in [x["NetworkInsightsAnalysisId"] for x in by_status["NetworkInsightsAnalyses"]]

    # vpcd analyses one destination port: a tcp path without one is accepted (as on AWS), and
    # its analysis fails saying so.
    portless = a.create_network_insights_path(Source=na.inst, Destination=nb.arn, Protocol="tcp")[
        "NetworkInsightsPath"]["NetworkInsightsPathId"]
    f = a.start_network_insights_analysis(NetworkInsightsPathId=portless)["NetworkInsightsAnalysis"]
    [f] = a.describe_network_insights_analyses(
        NetworkInsightsAnalysisIds=[f["NetworkInsightsAnalysisId"]])["NetworkInsightsAnalyses"]
    assert f["Status"] == "failed" and "DestinationPort" in f["StatusMessage"], f
    assert "NetworkPathFound" not in f
    by_status = a.describe_network_insights_analyses(NetworkInsightsPathId=portless,
                                                     Filters=[{"Name": "status", "Values": ["failed"]}])
    assert [x["NetworkInsightsAnalysisId"] for x in by_status["NetworkInsightsAnalyses"]] == [f["NetworkInsightsAnalysisId"]]

    # The aws CLI parses the same shapes.
    out = server.aws("A", "ec2", "describe-network-insights-analyses", "--network-insights-analysis-ids", nia)
    assert out["NetworkInsightsAnalyses"][0]["NetworkInsightsAnalysisId"] == nia

    # Only the owner sees it; the path cannot go while it has analyses (AWS refuses too).
    with expect_error("InvalidNetworkInsightsAnalysisId.NotFound"):
        b.describe_network_insights_analyses(NetworkInsightsAnalysisIds=[nia])
    with expect_error("InvalidNetworkInsightsPathId.NotFound"):
        b.start_network_insights_analysis(NetworkInsightsPathId=pid)
    with expect_error("AnalysisExistsForNetworkInsightsPath") as h:
        a.delete_network_insights_path(NetworkInsightsPathId=pid)
    assert nia in h.error.response["Error"]["Message"]
    assert a.delete_network_insights_analysis(NetworkInsightsAnalysisId=nia)["NetworkInsightsAnalysisId"] == nia
    with expect_error("InvalidNetworkInsightsAnalysisId.NotFound"):
        a.delete_network_insights_analysis(NetworkInsightsAnalysisId=nia)
    a.delete_network_insights_path(NetworkInsightsPathId=pid)


def test_records_survive_a_restart(server_factory):
    s = server_factory()
    a = s.client("A")
    n = net(a, "A", "10.154.0.0/16")
    pid = a.create_network_insights_path(Source=n.inst, DestinationIp="10.154.1.99", Protocol="tcp",
                                         DestinationPort=80)["NetworkInsightsPath"]["NetworkInsightsPathId"]
    nia = a.start_network_insights_analysis(NetworkInsightsPathId=pid)["NetworkInsightsAnalysis"][
        "NetworkInsightsAnalysisId"]
    before = a.describe_network_insights_analyses(NetworkInsightsAnalysisIds=[nia])["NetworkInsightsAnalyses"]
    s.kill9()
    s.start()
    a = s.client("A")
    assert a.describe_network_insights_paths(NetworkInsightsPathIds=[pid])["NetworkInsightsPaths"]
    after = a.describe_network_insights_analyses(NetworkInsightsAnalysisIds=[nia])["NetworkInsightsAnalyses"]
    for x in before + after:
        x.pop("ResponseMetadata", None)
    assert after == before


def test_cli_usage_errors(server):
    assert reach(server, "i-0123456789abcdef0").returncode == 2
    p = reach(server, "i-0123456789abcdef0", "i-0123456789abcdef1")
    assert p.returncode == 2 and "--protocol" in p.stderr, show(p)
    p = reach(server, "i-0123456789abcdef0", "i-0123456789abcdef1", "--protocol", "tcp")
    assert p.returncode == 2 and "--port" in p.stderr, show(p)
    p = reach(server, "i-0123456789abcdef0", "i-0123456789abcdef1", "--protocol", "tcp", "--port", "22")
    assert p.returncode == 2 and "no instance" in p.stderr, show(p)
    p = reach(server, "nonsense", "10.0.0.1", "--protocol", "icmp")
    assert p.returncode == 2, show(p)
    p = reach(server, "--matrix", "--probe")
    assert p.returncode == 2, show(p)
    p = subprocess.run([str(VPCD_BIN), "reach", "--matrix", "--data-dir", str(server.tmp / "nothing-here")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "no vpcd state" in p.stderr, show(p)


# -- the verdicts (need vpc_reach::analyze) ---------------------------------------

def test_seed_workflow_is_reachable_through_the_peering(server, client):
    a, b, pcx = peered(client, "10.160.0.0/16", "10.161.0.0/16")
    an = analyse(a.ec2, a.inst, b.arn, "tcp", 22)
    assert an["NetworkPathFound"] is True, json.dumps(an, default=str)
    assert not codes(an), an["Explanations"]
    assert diagnoses(an) == {}
    fwd = an["ForwardPathComponents"]
    assert [c["SequenceNumber"] for c in fwd] == list(range(1, len(fwd) + 1))
    assert fwd[0]["Component"]["Id"] in (a.inst, a.subnet) or \
        fwd[0]["Component"]["Id"].startswith("eni-"), fwd[0]
    through = [c for c in fwd if c["Component"]["Id"] == pcx
               or c.get("RouteTableRoute", {}).get("VpcPeeringConnectionId") == pcx]
    assert through, f"the forward path does not go through {pcx}: {json.dumps(fwd, default=str)}"
    pcx_hops = [c for c in fwd if c["Component"]["Id"] == pcx]
    for h in pcx_hops:
        assert h["Component"]["Arn"].endswith(f":vpc-peering-connection/{pcx}")
    assert any(c["Component"]["Id"] == b.inst or c.get("AttachedTo", {}).get("Id") == b.inst
               for c in fwd), "the forward path does not reach B's instance"
    assert an["ReturnPathComponents"], "a reachable TCP path has a return path"
    sg_rules = [c["SecurityGroupRule"] for c in fwd if "SecurityGroupRule" in c]
    assert any(r["Direction"] == "ingress" and r.get("Cidr") == a.cidr and r["SecurityGroupId"] == b.sg
               for r in sg_rules), f"B's admitting rule is not on the path: {sg_rules}"

    p = reach(server, a.inst, b.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 0, show(p)
    assert "REACHABLE" in p.stdout and "NOT REACHABLE" not in p.stdout, show(p)
    assert pcx in p.stdout, show(p)
    _, j = cli_diagnoses(server, a.inst, b.inst, "--protocol", "tcp", "--port", "22")
    assert j["reachable"] is True and j["diagnoses"] == []

    # The matrix over the two VPCs agrees: A reaches B on 22; B has no route-back problem but A's
    # default group admits only its own members, so B -> A is refused.
    p = reach(server, "--matrix", "--vpc", a.id, "--vpc", b.id, "--protocol", "tcp", "--port", "22",
              "--format", "json")
    assert p.returncode == 0, show(p)
    m = json.loads(p.stdout)
    cell = {(x["source"], x["destination"]): x for x in m["pairs"]}
    assert cell[(a.inst, b.inst)]["reachable"] is True
    assert cell[(b.inst, a.inst)]["reachable"] is False
    p = reach(server, "--matrix", "--vpc", a.id, "--vpc", b.id, "--protocol", "tcp", "--port", "22",
              "--format", "csv")
    assert p.returncode == 0, show(p)
    rows = [r.split(",") for r in p.stdout.strip().splitlines()]
    assert rows[0][0] == "source" and set(rows[0][1:]) == {a.inst, b.inst}
    col = {v: i for i, v in enumerate(rows[0])}
    row = {r[0]: r for r in rows[1:]}
    assert row[a.inst][col[b.inst]] == "Y" and row[b.inst][col[a.inst]] == "N"
    p = reach(server, "--matrix", "--vpc", a.id, "--vpc", b.id, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 0 and "✓" in p.stdout and "✗" in p.stdout, show(p)


def test_transitive_peering(server, client):
    a = net(client("A"), "A", "10.162.0.0/16")
    b = net(client("A"), "A", "10.163.0.0/16")
    c = net(client("A"), "A", "10.164.0.0/16")
    ab = active_peering(a.ec2, b.ec2, a.id, b.id, A_ID)
    bc = active_peering(b.ec2, c.ec2, b.id, c.id, A_ID)
    # Every table routes as if B would forward: A sends C's block to B, C sends A's to B.
    route(a, b.cidr, VpcPeeringConnectionId=ab)
    route(a, c.cidr, VpcPeeringConnectionId=ab)
    route(b, a.cidr, VpcPeeringConnectionId=ab)
    route(b, c.cidr, VpcPeeringConnectionId=bc)
    route(c, b.cidr, VpcPeeringConnectionId=bc)
    route(c, a.cidr, VpcPeeringConnectionId=bc)
    allow_tcp(c, 22, a.cidr)

    an = analyse(a.ec2, a.inst, c.arn, "tcp", 22)
    assert an["NetworkPathFound"] is False
    assert codes(an) & {"PCX_REQUIRES_ADDRESS_IN_VPC_CIDR", "DISCONNECTED_VPCS"}, an["Explanations"]
    d = diagnoses(an)
    assert "transitive-peering" in d, an["Explanations"]
    fix = d["transitive-peering"]["fix"]
    assert "peering" in fix and a.id in fix and c.id in fix, fix
    assert b.id in d["transitive-peering"]["message"], d

    # The aws CLI shows the same diagnosis.
    out = server.aws("A", "ec2", "describe-network-insights-analyses", "--network-insights-analysis-ids",
                     an["NetworkInsightsAnalysisId"])
    assert "VPCD_TRANSITIVE_PEERING" in {e["ExplanationCode"] for e in out["NetworkInsightsAnalyses"][0]["Explanations"]}

    p = reach(server, a.inst, c.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 1, show(p)
    assert "NOT REACHABLE" in p.stdout and "transitive-peering" in p.stdout and fix in p.stdout, show(p)
    _, j = cli_diagnoses(server, a.inst, c.inst, "--protocol", "tcp", "--port", "22")
    assert "transitive-peering" in {x["kind"] for x in j["diagnoses"]}


def test_edge_to_edge_through_the_peers_internet_gateway(server, client):
    a, b, pcx = peered(client, "10.165.0.0/16", "10.166.0.0/16")
    igw = b.ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    b.ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=b.id)
    route(b, "0.0.0.0/0", GatewayId=igw)
    route(a, "0.0.0.0/0", VpcPeeringConnectionId=pcx)  # A tries to use B's gateway

    an = analyse(a.ec2, a.inst, None, "tcp", None,
                 FilterAtSource={"DestinationAddress": INET_HOST,
                                 "DestinationPortRange": {"FromPort": 443, "ToPort": 443}})
    assert an["NetworkPathFound"] is False
    assert codes(an) & {"IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS", "GATEWAY_REJECTS_SPOOFED_TRAFFIC",
                        "PCX_REQUIRES_ADDRESS_IN_VPC_CIDR"}, an["Explanations"]
    d = diagnoses(an)
    assert "edge-to-edge" in d, an["Explanations"]
    assert igw in d["edge-to-edge"]["message"] or b.id in d["edge-to-edge"]["message"], d

    p = reach(server, a.inst, INET_HOST, "--protocol", "tcp", "--port", "443")
    assert p.returncode == 1, show(p)
    assert "edge-to-edge" in p.stdout and d["edge-to-edge"]["fix"] in p.stdout, show(p)


def test_peering_pending_acceptance(server, client):
    a = net(client("A"), "A", "10.167.0.0/16")
    b = net(client("B"), "B", "10.168.0.0/16")
    pcx = request_peering(a.ec2, a.id, b.id, B_ID)
    wait_pcx(a.ec2, pcx, "pending-acceptance")
    route(a, b.cidr, VpcPeeringConnectionId=pcx)  # a blackhole until B accepts
    allow_tcp(b, 22, a.cidr)

    # Across accounts: B's instance by its address (the peering is A's to see as well).
    an = analyse(a.ec2, a.inst, b.ip, "tcp", 22)
    assert an["NetworkPathFound"] is False
    assert codes(an) & {"BAD_STATE_ROUTE", "BAD_STATE"}, an["Explanations"]
    bad = [e for e in an["Explanations"] if e["ExplanationCode"] in ("BAD_STATE_ROUTE", "BAD_STATE")]
    assert any(e.get("VpcPeeringConnection", {}).get("Id") == pcx or e["Component"]["Id"] == pcx
               or e.get("RouteTableRoute", {}).get("VpcPeeringConnectionId") == pcx for e in bad), bad
    d = diagnoses(an)
    assert "peering-not-active" in d, an["Explanations"]
    assert pcx in d["peering-not-active"]["message"] and "pending-acceptance" in d["peering-not-active"]["message"], d
    assert "accept" in d["peering-not-active"]["fix"].lower(), d

    p = reach(server, a.inst, b.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 1, show(p)
    assert "peering-not-active" in p.stdout and pcx in p.stdout, show(p)


def test_missing_route_back_from_vpc_b(server, client):
    a, b, pcx = peered(client, "10.169.0.0/16", "10.170.0.0/16", routes=False)
    route(a, b.cidr, VpcPeeringConnectionId=pcx)  # there; no route back in B

    an = analyse(a.ec2, a.inst, b.arn, "tcp", 22)
    assert an["NetworkPathFound"] is False
    assert codes(an) & {"NO_ROUTE_TO_DESTINATION", "CANNOT_ROUTE"}, an["Explanations"]
    no_route = [e for e in an["Explanations"] if e["ExplanationCode"] in ("NO_ROUTE_TO_DESTINATION", "CANNOT_ROUTE")]
    assert any(e.get("RouteTable", {}).get("Id") == b.rtb or e["Component"]["Id"] == b.rtb
               or e.get("Vpc", {}).get("Id") == b.id for e in no_route), no_route
    d = diagnoses(an)
    assert "missing-return-route" in d, an["Explanations"]
    fix = d["missing-return-route"]["fix"]
    assert a.cidr in fix and pcx in fix, fix

    p = reach(server, a.inst, b.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 1, show(p)
    assert "missing-return-route" in p.stdout and fix in p.stdout, show(p)


def test_nacl_rule_100_denies_return_traffic(server, client):
    a, b, pcx = peered(client, "10.171.0.0/16", "10.172.0.0/16")
    acl = b.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [b.id]},
                                               {"Name": "default", "Values": ["true"]}])["NetworkAcls"][0]
    acl_id = acl["NetworkAclId"]
    # Outbound rule 100 now denies TCP to A's ephemeral ports; everything else is still allowed.
    b.ec2.replace_network_acl_entry(NetworkAclId=acl_id, RuleNumber=100, Egress=True, Protocol="6",
                                    RuleAction="deny", CidrBlock=a.cidr,
                                    PortRange={"From": 1024, "To": 65535})
    b.ec2.create_network_acl_entry(NetworkAclId=acl_id, RuleNumber=200, Egress=True, Protocol="-1",
                                   RuleAction="allow", CidrBlock="0.0.0.0/0")

    an = analyse(a.ec2, a.inst, b.arn, "tcp", 22)
    assert an["NetworkPathFound"] is False
    e = explanation(an, "SUBNET_ACL_RESTRICTION")
    assert e.get("Direction") == "egress", e
    assert e.get("Acl", {}).get("Id") == acl_id or e["Component"]["Id"] == acl_id, e
    rule = e["AclRule"]
    assert rule["RuleNumber"] == 100 and rule["RuleAction"] == "deny" and rule["Egress"] is True, rule
    assert rule["PortRange"] == {"From": 1024, "To": 65535}, rule
    # The forward path itself got through: the SYN reaches B.
    assert an["ForwardPathComponents"], "the forward path should be reported"
    d = diagnoses(an)
    assert "nacl-denies-return-traffic" in d, an["Explanations"]
    msg, fix = d["nacl-denies-return-traffic"]["message"], d["nacl-denies-return-traffic"]["fix"]
    assert acl_id in msg and "rule 100" in msg and "ephemeral" in msg, d
    # The fix: an outbound allow numbered below 100 for the client's ephemeral ports.
    assert acl_id in fix and "outbound" in fix and "below 100" in fix and "32768-60999" in fix, d

    p = reach(server, a.inst, b.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 1, show(p)
    assert "SUBNET_ACL_RESTRICTION" in p.stdout and "nacl-denies-return-traffic" in p.stdout, show(p)
    assert "rule 100" in p.stdout, show(p)


@pytest.mark.parametrize("protocol", ["icmp"])
def test_icmp_is_a_vpcd_extension(server, client, protocol):
    a, b, pcx = peered(client, "10.173.0.0/16", "10.174.0.0/16")
    b.ec2.authorize_security_group_ingress(GroupId=b.sg, IpPermissions=[
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": a.cidr}]}])
    an = analyse(a.ec2, a.inst, b.arn, protocol, None)
    assert an["NetworkPathFound"] is True, an.get("Explanations")
    p = reach(server, a.inst, b.ip, "--protocol", "icmp")
    assert p.returncode == 0, show(p)


# -- account boundaries ----------------------------------------------------------------

def error_of(fn, **kw) -> tuple[str, str, int]:
    """(code, message, HTTP status) of the ClientError `fn(**kw)` raises."""
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    r = ei.value.response
    return r["Error"]["Code"], r["Error"]["Message"], r["ResponseMetadata"]["HTTPStatusCode"]


def test_another_accounts_resource_is_as_unknown_as_a_missing_one(server, client):
    a = net(client("A"), "A", "10.175.0.0/16")
    b = net(client("B"), "B", "10.176.0.0/16")
    missing = "i-0123456789abcdef0"
    assert missing != a.inst
    missing_arn = f"arn:aws:ec2:us-east-1:{A_ID}:instance/{missing}"

    def same(got: tuple, want: tuple, foreign_id: str):
        code, msg, status = got
        assert code == want[0] == "InvalidInstanceID.NotFound", (got, want)
        assert msg.replace(foreign_id, missing) == want[1], (got, want)
        assert status == want[2] == 400, (got, want)

    create = b.ec2.create_network_insights_path
    for foreign, absent in [(a.inst, missing), (a.arn, missing_arn)]:
        # As destination and as source, by bare ID and by ARN.
        same(error_of(create, Source=b.inst, Destination=foreign, Protocol="tcp", DestinationPort=22),
             error_of(create, Source=b.inst, Destination=absent, Protocol="tcp", DestinationPort=22), a.inst)
        same(error_of(create, Source=foreign, Destination=b.inst, Protocol="tcp", DestinationPort=22),
             error_of(create, Source=absent, Destination=b.inst, Protocol="tcp", DestinationPort=22), a.inst)
    # Nothing was made.
    assert b.ec2.describe_network_insights_paths()["NetworkInsightsPaths"] == []

    # StartNetworkInsightsAnalysis: FilterInArns, FilterOutArns and AdditionalAccounts likewise.
    pid = create(Source=b.inst, DestinationIp=a.ip, Protocol="tcp", DestinationPort=22)[
        "NetworkInsightsPath"]["NetworkInsightsPathId"]
    start = b.ec2.start_network_insights_analysis
    for param in ("FilterInArns", "FilterOutArns"):
        same(error_of(start, NetworkInsightsPathId=pid, **{param: [a.arn]}),
             error_of(start, NetworkInsightsPathId=pid, **{param: [missing_arn]}), a.inst)
    nobody = "999999999999"
    code, msg, status = error_of(start, NetworkInsightsPathId=pid, AdditionalAccounts=[A_ID])
    assert (code, msg.replace(A_ID, nobody), status) == \
        error_of(start, NetworkInsightsPathId=pid, AdditionalAccounts=[nobody])
    assert code == "InvalidParameterValue", (code, msg)
    # The caller's own resources and account are fine.
    own = start(NetworkInsightsPathId=pid, FilterInArns=[b.arn], AdditionalAccounts=[B_ID])
    assert own["NetworkInsightsAnalysis"]["FilterInArns"] == [b.arn]


def tag_everything(n: SimpleNamespace, pcx: str) -> list[str]:
    """Names every resource of `n`'s VPC (and its own view of `pcx`); returns the values."""
    ec2 = n.ec2
    eni = ec2.describe_instances(InstanceIds=[n.inst])["Reservations"][0]["Instances"][0][
        "NetworkInterfaces"][0]["NetworkInterfaceId"]
    acl = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [n.id]}])["NetworkAcls"][0][
        "NetworkAclId"]
    names = []
    for rid in (n.id, n.subnet, n.inst, eni, n.sg, n.rtb, acl, pcx):
        value = f"secret-{n.account}-{rid}"
        ec2.create_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": value}])
        names.append(value)
    n.eni, n.acl = eni, acl
    return names


def ids_of(n: SimpleNamespace) -> list[str]:
    """Every ID of `n`'s side a peer must not see (its VPC ID is shown by the peering itself)."""
    ec2 = n.ec2
    out = [n.subnet, n.inst, n.eni, n.sg, n.rtb, n.acl]
    for g in ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [n.sg]}])["SecurityGroupRules"]:
        out.append(g["SecurityGroupRuleId"])
    for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [n.id]}])["RouteTables"]:
        out.append(t["RouteTableId"])
        out += [x["RouteTableAssociationId"] for x in t.get("Associations", [])]
    return out


def raw(resp: dict) -> str:
    return json.dumps(resp, default=str)


def peered_across_accounts(client, cidr_a: str, cidr_b: str, routes_back: bool = True):
    """A's VPC (account A) and B's (account B), peered (B requests); B routes to A, A routes
    back (unless not `routes_back`); A admits tcp 22 from B."""
    a = net(client("A"), "A", cidr_a)
    b = net(client("B"), "B", cidr_b)
    pcx = active_peering(b.ec2, a.ec2, b.id, a.id, A_ID)
    route(b, a.cidr, VpcPeeringConnectionId=pcx)
    if routes_back:
        route(a, b.cidr, VpcPeeringConnectionId=pcx)
    allow_tcp(a, 22, b.cidr)
    return a, b, pcx


def test_analysis_across_a_peering_shows_none_of_the_peers_ids(server, client):
    a, b, pcx = peered_across_accounts(client, "10.177.0.0/16", "10.178.0.0/16")
    secret_names = tag_everything(a, pcx)
    tag_everything(b, pcx)
    secret_ids = ids_of(a)
    assert len(secret_ids) >= 8, secret_ids

    # B's path to A's instance by address, and every response of its analysis.
    p = b.ec2.create_network_insights_path(Source=b.inst, DestinationIp=a.ip,
                                           Protocol="tcp", DestinationPort=22)
    s = b.ec2.start_network_insights_analysis(
        NetworkInsightsPathId=p["NetworkInsightsPath"]["NetworkInsightsPathId"])
    d = b.ec2.describe_network_insights_analyses(
        NetworkInsightsAnalysisIds=[s["NetworkInsightsAnalysis"]["NetworkInsightsAnalysisId"]])
    [an] = d["NetworkInsightsAnalyses"]
    assert an["Status"] == "succeeded" and an["NetworkPathFound"] is True, raw(an)
    for resp in (p, s, d):
        text = raw(resp)
        for secret in secret_ids + secret_names:
            assert secret not in text, f"A's {secret} shown to B: {text}"
    text = raw(d)
    # What B may see: the peering (with B's own Name for it), A's VPC ID (as
    # DescribeVpcPeeringConnections shows it), the kinds of A's components, and B's side in full.
    assert pcx in text and a.id in text, text
    assert f"secret-B-{pcx}" in text, text
    fwd = an["ForwardPathComponents"]
    withheld = [c for c in fwd if "Id" not in c["Component"]]
    assert withheld, raw(fwd)
    assert all("Arn" not in c["Component"] and c["Component"]["Name"].startswith("the peer VPC's")
               for c in withheld), raw(withheld)
    assert "the peer VPC's network interface" in {c["Component"]["Name"] for c in withheld}, raw(withheld)
    assert not any("SecurityGroupRule" in c or "AclRule" in c or "RouteTableRoute" in c for c in withheld)
    for own_id in (b.inst, b.eni, b.subnet, b.rtb):
        assert own_id in text, f"B's own {own_id} is missing: {text}"

    # A's own analysis over the same peering still names A's resources (and none of B's).
    t = analyse(a.ec2, a.inst, b.ip, "tcp", 22)
    own_text = raw(t)
    for own_id in (a.inst, a.eni, a.subnet, a.rtb):
        assert own_id in own_text, f"{own_id} not in A's own analysis: {own_text}"
    assert f"secret-A-{a.inst}" in own_text or f"secret-A-{a.eni}" in own_text, own_text
    for secret in ids_of(b):
        assert secret not in own_text, f"B's {secret} shown to A: {own_text}"


def test_blockers_on_the_peers_side_are_explained_without_its_ids(server, client):
    a, b, pcx = peered_across_accounts(client, "10.179.0.0/16", "10.180.0.0/16", routes_back=False)
    secret_names = tag_everything(a, pcx)
    tag_everything(b, pcx)
    secret_ids = ids_of(a)

    an = analyse(b.ec2, b.inst, a.ip, "tcp", 22)
    text = raw(an)
    assert an["NetworkPathFound"] is False
    for secret in secret_ids + secret_names:
        assert secret not in text, f"A's {secret} shown to B: {text}"
    d = diagnoses(an)
    assert "missing-return-route" in d, an["Explanations"]
    said = d["missing-return-route"]["message"] + " " + d["missing-return-route"]["fix"]
    assert "[the peer VPC's route table]" in said, d
    assert codes(an) & {"NO_ROUTE_TO_DESTINATION", "CANNOT_ROUTE"}, an["Explanations"]

    # The operator's `vpcd reach` sees every account and names A's route table.
    p = reach(server, b.inst, a.inst, "--protocol", "tcp", "--port", "22")
    assert p.returncode == 1 and a.rtb in p.stdout, show(p)
