"""VPC peering across accounts and regions: the seed workflow, the state machine, timers, filters.

Every test makes its own VPCs with its own CIDRs (10.1-10.49 here), so overlaps
are only where a test wants them. Tests that move the clock get their own
server (server_factory), so the shared module server's clock never jumps.
"""

from __future__ import annotations

import datetime
import uuid

import pytest

from helpers import (A_ID, B_ID, C_ID, active_peering, default_sg, error_code, expect_error,
                     is_id, listed_pcx_ids, main_route_table, make_vpc, pcx, pcx_gone, pcx_status,
                     request_peering, routes_to, tags_of, wait_pcx)

FAILED_MESSAGE = "Failed due to incorrect VPC-ID, Account ID, or overlapping CIDR range"
HOUR, DAY = 3600, 86400


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


# -- the seed workflow -----------------------------------------------------------------

def test_seed_workflow_cross_account(client):
    a, b = client("A"), client("B")
    va = make_vpc(a, "10.1.0.0/16")
    vb = make_vpc(b, "10.2.0.0/16")

    # A asks B.
    r = a.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=B_ID)["VpcPeeringConnection"]
    pid = r["VpcPeeringConnectionId"]
    assert is_id("pcx", pid)
    assert r["Status"]["Code"] == "initiating-request"
    assert r["Status"]["Message"] == f"Initiating Request to {B_ID}"
    assert r["RequesterVpcInfo"]["OwnerId"] == A_ID
    assert r["RequesterVpcInfo"]["VpcId"] == va
    assert r["RequesterVpcInfo"]["CidrBlock"] == "10.1.0.0/16"
    assert r["RequesterVpcInfo"]["Region"] == "us-east-1"
    assert r["RequesterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is False
    assert r["AccepterVpcInfo"]["OwnerId"] == B_ID
    assert r["AccepterVpcInfo"]["VpcId"] == vb
    assert r["AccepterVpcInfo"]["Region"] == "us-east-1"
    assert "CidrBlock" not in r["AccepterVpcInfo"]
    expires = r["ExpirationTime"]
    assert abs((expires - utcnow()) - datetime.timedelta(days=7)) < datetime.timedelta(minutes=5)

    a.get_waiter("vpc_peering_connection_exists").wait(
        VpcPeeringConnectionIds=[pid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    p = wait_pcx(a, pid, "pending-acceptance")
    assert p["Status"]["Message"] == f"Pending Acceptance by {B_ID}"

    # B sees the same connection; the accepter's CIDR stays hidden until active.
    pb = pcx(b, pid)
    assert pb["Status"]["Code"] == "pending-acceptance"
    assert pb["RequesterVpcInfo"]["VpcId"] == va
    assert pb["RequesterVpcInfo"]["OwnerId"] == A_ID
    assert pb["RequesterVpcInfo"]["CidrBlock"] == "10.1.0.0/16"
    assert pb["AccepterVpcInfo"]["VpcId"] == vb
    assert "CidrBlock" not in pb["AccepterVpcInfo"]
    assert "CidrBlock" not in pcx(a, pid)["AccepterVpcInfo"]
    assert pid in listed_pcx_ids(b)

    # Only the accepter may accept.
    with expect_error("OperationNotPermitted"):
        a.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    acc = b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)["VpcPeeringConnection"]
    assert acc["VpcPeeringConnectionId"] == pid
    assert acc["Status"]["Code"] in ("provisioning", "active")
    p = wait_pcx(a, pid, "active")
    assert p["Status"]["Message"] == "Active"
    assert p["AccepterVpcInfo"]["CidrBlock"] == "10.2.0.0/16"
    assert [c["CidrBlock"] for c in p["AccepterVpcInfo"]["CidrBlockSet"]] == ["10.2.0.0/16"]
    assert [c["CidrBlock"] for c in p["RequesterVpcInfo"]["CidrBlockSet"]] == ["10.1.0.0/16"]
    assert "ExpirationTime" not in p
    assert pcx_status(b, pid) == "active"

    # Routes on both sides.
    rta = main_route_table(a, va)["RouteTableId"]
    rtb = main_route_table(b, vb)["RouteTableId"]
    assert a.create_route(RouteTableId=rta, DestinationCidrBlock="10.2.0.0/16",
                          VpcPeeringConnectionId=pid)["Return"] is True
    assert b.create_route(RouteTableId=rtb, DestinationCidrBlock="10.1.0.0/16",
                          VpcPeeringConnectionId=pid)["Return"] is True
    for ec2, rt, dest in ((a, rta, "10.2.0.0/16"), (b, rtb, "10.1.0.0/16")):
        [route] = routes_to(ec2, rt, dest)
        assert route["VpcPeeringConnectionId"] == pid
        assert route["State"] == "active"
        assert route["Origin"] == "CreateRoute"

    # B lets A's default group in by reference.
    sga, sgb = default_sg(a, va), default_sg(b, vb)
    auth = b.authorize_security_group_ingress(GroupId=sgb, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "UserIdGroupPairs": [{"GroupId": sga, "UserId": A_ID}]}])
    assert auth["Return"] is True
    [rule] = auth["SecurityGroupRules"]
    assert rule["IsEgress"] is False
    assert rule["ReferencedGroupInfo"]["GroupId"] == sga
    assert rule["ReferencedGroupInfo"]["UserId"] == A_ID
    assert rule["ReferencedGroupInfo"].get("VpcPeeringConnectionId") == pid
    g = b.describe_security_groups(GroupIds=[sgb])["SecurityGroups"][0]
    [perm] = [x for x in g["IpPermissions"] if x.get("FromPort") == 443]
    assert perm["IpProtocol"] == "tcp" and perm["ToPort"] == 443
    [pair] = perm["UserIdGroupPairs"]
    assert pair["GroupId"] == sga
    assert pair["UserId"] == A_ID
    assert pair.get("VpcId") == va
    assert pair["VpcPeeringConnectionId"] == pid
    assert pair["PeeringStatus"] == "active"
    # A can see who references its group.
    refs = a.describe_security_group_references(GroupId=[sga])["SecurityGroupReferenceSet"]
    assert {(x["GroupId"], x["ReferencingVpcId"], x["VpcPeeringConnectionId"]) for x in refs} == {(sga, vb, pid)}

    # DNS resolution from the remote VPC needs DNS hostnames on both VPCs.
    dns_on = {"AllowDnsResolutionFromRemoteVpc": True}
    with expect_error("InvalidVpcPeeringConnectionState.DnsHostnamesDisabled"):
        a.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions=dns_on)
    a.modify_vpc_attribute(VpcId=va, EnableDnsHostnames={"Value": True})
    with expect_error("InvalidVpcPeeringConnectionState.DnsHostnamesDisabled"):
        a.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions=dns_on)
    b.modify_vpc_attribute(VpcId=vb, EnableDnsHostnames={"Value": True})
    m = a.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions=dns_on)
    assert m["RequesterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    assert "AccepterPeeringConnectionOptions" not in m
    with expect_error("OperationNotPermitted"):
        a.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, AccepterPeeringConnectionOptions=dns_on)
    with expect_error("OperationNotPermitted"):
        b.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions=dns_on)
    m = b.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, AccepterPeeringConnectionOptions=dns_on)
    assert m["AccepterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    p = pcx(a, pid)
    assert p["RequesterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    assert p["AccepterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is True

    # A deletes: routes turn into blackholes, B's rule goes stale.
    assert a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)["Return"] is True
    p = pcx(a, pid)
    assert p["Status"]["Code"] == "deleted"
    assert p["Status"]["Message"] == f"Deleted by {A_ID}"  # vpcd's documented choice
    assert pcx_status(b, pid) == "deleted"
    for ec2, rt, dest in ((a, rta, "10.2.0.0/16"), (b, rtb, "10.1.0.0/16")):
        [route] = routes_to(ec2, rt, dest)
        assert route["VpcPeeringConnectionId"] == pid
        assert route["State"] == "blackhole"
    stale = b.describe_stale_security_groups(VpcId=vb)["StaleSecurityGroupSet"]
    [sg] = [s for s in stale if s["GroupId"] == sgb]
    assert sg["VpcId"] == vb
    [sperm] = sg["StaleIpPermissions"]
    assert sperm["FromPort"] == 443 and sperm["ToPort"] == 443 and sperm["IpProtocol"] == "tcp"
    [spair] = sperm["UserIdGroupPairs"]
    assert spair["GroupId"] == sga
    assert spair["VpcPeeringConnectionId"] == pid
    assert spair.get("PeeringStatus") == "deleted"
    # A's VPC has no stale rules.
    assert a.describe_stale_security_groups(VpcId=va)["StaleSecurityGroupSet"] == []
    # Nothing more to do with a deleted connection.
    with expect_error("InvalidStateTransition"):
        a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("InvalidStateTransition"):
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)


def test_accept_reject_permissions(client):
    a, b, c = client("A"), client("B"), client("C")
    va, vb = make_vpc(a, "10.3.0.0/16"), make_vpc(b, "10.4.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    # A third account cannot see it at all.
    with expect_error("InvalidVpcPeeringConnectionID.NotFound"):
        c.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pid])
    with expect_error("InvalidVpcPeeringConnectionID.NotFound"):
        c.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    # The requester can neither accept nor reject; the accepter cannot delete a pending one.
    with expect_error("OperationNotPermitted"):
        a.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("OperationNotPermitted"):
        a.reject_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error(("OperationNotPermitted", "InvalidStateTransition")):
        b.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    # Options only on an active connection.
    with expect_error("OperationNotPermitted"):
        a.modify_vpc_peering_connection_options(
            VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions={"AllowDnsResolutionFromRemoteVpc": False})
    assert pcx_status(a, pid) == "pending-acceptance"

    assert b.reject_vpc_peering_connection(VpcPeeringConnectionId=pid)["Return"] is True
    p = pcx(a, pid)
    assert p["Status"]["Code"] == "rejected"
    assert p["Status"]["Message"] == f"Rejected by {B_ID}"  # vpcd's documented choice
    assert pcx_status(b, pid) == "rejected"
    with expect_error("InvalidStateTransition"):
        a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("InvalidStateTransition"):
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("InvalidStateTransition"):
        b.reject_vpc_peering_connection(VpcPeeringConnectionId=pid)
    # A rejected connection does not block a new request for the same pair.
    pid2 = request_peering(a, va, vb, B_ID)
    assert pid2 != pid
    wait_pcx(a, pid2, "pending-acceptance")
    # The requester may delete its own pending request.
    assert a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid2)["Return"] is True
    assert pcx_status(a, pid2) == "deleted"


def test_bad_ids_and_parameters(client):
    a = client("A")
    va = make_vpc(a, "10.10.0.0/16")
    with expect_error("InvalidVpcPeeringConnectionID.NotFound") as h:
        a.describe_vpc_peering_connections(VpcPeeringConnectionIds=["pcx-0123456789abcdef0"])
    assert "pcx-0123456789abcdef0" in h.error.response["Error"]["Message"]
    with expect_error("InvalidVpcPeeringConnectionId.Malformed"):
        a.describe_vpc_peering_connections(VpcPeeringConnectionIds=["nothex"])
    with expect_error("InvalidVpcPeeringConnectionId.Malformed"):
        a.accept_vpc_peering_connection(VpcPeeringConnectionId="vpc-0123456789abcdef0")
    with expect_error("InvalidVpcPeeringConnectionID.NotFound"):
        a.delete_vpc_peering_connection(VpcPeeringConnectionId="pcx-0123456789abcdef0")
    with expect_error("InvalidVpcID.NotFound"):
        a.create_vpc_peering_connection(VpcId="vpc-0123456789abcdef0", PeerVpcId=va)
    with expect_error("InvalidVpcID.Malformed"):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId="zz")
    with expect_error("InvalidParameterValue"):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId=va)
    with expect_error("InvalidParameterValue"):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId="vpc-0123456789abcdef0", PeerOwnerId="12345")
    with expect_error("InvalidParameterValue"):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId="vpc-0123456789abcdef0", PeerRegion="xx-nowhere-9")
    with expect_error("DryRunOperation", 412):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId="vpc-0123456789abcdef0", DryRun=True)
    assert not [p for p in a.describe_vpc_peering_connections()["VpcPeeringConnections"]
                if p["RequesterVpcInfo"]["VpcId"] == va]


# -- inter-region ------------------------------------------------------------------------

def test_inter_region_peering(server_factory):
    # Own server with 1 s transitions, so `deleting` is observable without racing the timer.
    s = server_factory(limits={"peering_transition_ms": 1000})
    a = s.client("A", "us-east-1")
    a_west = s.client("A", "us-west-2")
    b_east = s.client("B", "us-east-1")
    b_west = s.client("B", "us-west-2")
    va = make_vpc(a, "10.6.0.0/16")
    vb = make_vpc(b_west, "10.7.0.0/16")
    r = a.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=B_ID,
                                        PeerRegion="us-west-2")["VpcPeeringConnection"]
    pid = r["VpcPeeringConnectionId"]
    assert r["RequesterVpcInfo"]["Region"] == "us-east-1"
    assert r["AccepterVpcInfo"]["Region"] == "us-west-2"
    wait_pcx(a, pid, "pending-acceptance")
    assert pcx_status(b_west, pid) == "pending-acceptance"

    # It exists in A's us-east-1 and B's us-west-2 only.
    assert pcx_gone(a_west, pid)
    assert pcx_gone(b_east, pid)
    # Accepting must happen in the accepter's region.
    with expect_error("OperationNotPermitted"):
        b_east.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert pcx_status(b_west, pid) == "pending-acceptance"
    acc = b_west.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)["VpcPeeringConnection"]
    assert acc["Status"]["Code"] == "provisioning"
    assert acc["Status"]["Message"] == "Provisioning"
    p = wait_pcx(b_west, pid, "active")
    assert p["AccepterVpcInfo"]["CidrBlock"] == "10.7.0.0/16"
    assert p["AccepterVpcInfo"]["Region"] == "us-west-2"
    assert pcx_status(a, pid) == "active"
    active = {"Name": "status-code", "Values": ["active"]}
    assert pid in {x["VpcPeeringConnectionId"] for x in
                   a.describe_vpc_peering_connections(Filters=[active])["VpcPeeringConnections"]}
    assert pid in {x["VpcPeeringConnectionId"] for x in
                   b_west.describe_vpc_peering_connections(Filters=[active])["VpcPeeringConnections"]}
    assert pid not in listed_pcx_ids(b_east)

    # Security-group references do not cross regions.
    sga, sgb = default_sg(a, va), default_sg(b_west, vb)
    with expect_error("InvalidGroup.NotFound"):
        b_west.authorize_security_group_ingress(GroupId=sgb, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "UserIdGroupPairs": [{"GroupId": sga, "UserId": A_ID}]}])

    # Options: each side in its own region; no ClassicLink flags across regions.
    with expect_error("OperationNotPermitted"):
        a.modify_vpc_peering_connection_options(
            VpcPeeringConnectionId=pid,
            RequesterPeeringConnectionOptions={"AllowEgressFromLocalClassicLinkToRemoteVpc": True})
    a.modify_vpc_attribute(VpcId=va, EnableDnsHostnames={"Value": True})
    b_west.modify_vpc_attribute(VpcId=vb, EnableDnsHostnames={"Value": True})
    dns_on = {"AllowDnsResolutionFromRemoteVpc": True}
    with expect_error("OperationNotPermitted"):
        b_east.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid,
                                                     AccepterPeeringConnectionOptions=dns_on)
    b_west.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, AccepterPeeringConnectionOptions=dns_on)
    assert pcx(a, pid)["AccepterVpcInfo"]["PeeringOptions"]["AllowDnsResolutionFromRemoteVpc"] is True

    # Inter-region delete passes through `deleting`.
    a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert pcx_status(a, pid) == "deleting"
    assert pcx_status(b_west, pid) == "deleting"
    wait_pcx(a, pid, "deleted")
    wait_pcx(b_west, pid, "deleted")


def test_inter_region_same_account(client):
    east, west = client("A", "us-east-1"), client("A", "us-west-2")
    va, vw = make_vpc(east, "10.8.0.0/16"), make_vpc(west, "10.9.0.0/16")
    pid = east.create_vpc_peering_connection(VpcId=va, PeerVpcId=vw, PeerRegion="us-west-2")[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    wait_pcx(east, pid, "pending-acceptance")
    with expect_error("OperationNotPermitted") as e:
        east.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert e.error.response["Error"]["Message"] == (
        f"Incorrect region (us-east-1) specified for this request. "
        f"VPC peering connection {pid} must be accepted in region us-west-2")
    with expect_error("OperationNotPermitted") as e:
        east.reject_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert e.error.response["Error"]["Message"] == (
        f"Incorrect region (us-east-1) specified for this request. "
        f"VPC peering connection {pid} must be accepted or rejected in region us-west-2")
    west.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(east, pid, "active")


# -- failures -----------------------------------------------------------------------------

def test_overlapping_cidrs_fail(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.5.0.0/16"), make_vpc(b, "10.5.128.0/17")
    r = a.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=B_ID)["VpcPeeringConnection"]
    pid = r["VpcPeeringConnectionId"]
    assert r["Status"]["Code"] == "initiating-request"  # not an API error
    p = wait_pcx(a, pid, "failed")
    assert p["Status"]["Message"] == FAILED_MESSAGE
    # `failed` is for the requester's eyes only.
    assert pcx_gone(b, pid)
    assert pid not in listed_pcx_ids(b)
    # Nothing can be done with it.
    with expect_error("InvalidStateTransition"):
        a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("InvalidVpcPeeringConnectionID.NotFound"):
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)


def test_overlap_with_secondary_cidr_fails(client):
    a, b = client("A"), client("B")
    va = make_vpc(a, "10.11.0.0/16")
    a.associate_vpc_cidr_block(VpcId=va, CidrBlock="10.12.0.0/16")
    vb = make_vpc(b, "10.12.64.0/20")  # clear of A's primary, inside A's secondary
    pid = request_peering(a, va, vb, B_ID)
    assert wait_pcx(a, pid, "failed")["Status"]["Message"] == FAILED_MESSAGE


def test_same_account_overlap_fails(client):
    a = client("A")
    v1, v2 = make_vpc(a, "10.13.0.0/16"), make_vpc(a, "10.13.0.0/16")
    pid = a.create_vpc_peering_connection(VpcId=v1, PeerVpcId=v2)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    wait_pcx(a, pid, "failed")


def test_ipv6_blocks_do_not_overlap(client):
    # Amazon-provided /56 blocks are unique, so two IPv6 VPCs peer fine. (An IPv6 overlap
    # needs BYOIP blocks, which vpcd does not offer.)
    a, b = client("A"), client("B")
    va = a.create_vpc(CidrBlock="10.14.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    vb = b.create_vpc(CidrBlock="10.15.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    pid = active_peering(a, b, va, vb)
    p = pcx(a, pid)
    v6 = [x["Ipv6CidrBlock"] for x in p["AccepterVpcInfo"].get("Ipv6CidrBlockSet", [])]
    assert v6 == [b.describe_vpcs(VpcIds=[vb])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]]


def test_cidr_added_while_pending(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.16.0.0/16"), make_vpc(b, "10.17.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    # The requester may not add any CIDR while its request is pending.
    with expect_error("OperationNotPermitted"):
        a.associate_vpc_cidr_block(VpcId=va, CidrBlock="10.18.0.0/16")
    # The accepter may; a non-overlapping one changes nothing...
    b.associate_vpc_cidr_block(VpcId=vb, CidrBlock="10.19.0.0/16")
    assert pcx_status(a, pid) == "pending-acceptance"
    # ...an overlapping one fails the request.
    b.associate_vpc_cidr_block(VpcId=vb, CidrBlock="10.16.0.0/20")
    assert wait_pcx(a, pid, "failed")["Status"]["Message"] == FAILED_MESSAGE


def test_cidr_added_while_active(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.20.0.0/16"), make_vpc(b, "10.21.0.0/16")
    pid = active_peering(a, b, va, vb)
    with expect_error("InvalidVpc.Range"):
        b.associate_vpc_cidr_block(VpcId=vb, CidrBlock="10.20.0.0/24")
    b.associate_vpc_cidr_block(VpcId=vb, CidrBlock="10.22.0.0/16")
    p = pcx(a, pid)
    assert p["Status"]["Code"] == "active"
    assert {c["CidrBlock"] for c in p["AccepterVpcInfo"]["CidrBlockSet"]} == {"10.21.0.0/16", "10.22.0.0/16"}


@pytest.mark.parametrize("case", ["wrong-owner", "no-such-vpc", "wrong-region"])
def test_wrong_peer_fails(client, case):
    a, b = client("A"), client("B")
    base = {"wrong-owner": 23, "no-such-vpc": 25, "wrong-region": 27}[case]
    va, vb = make_vpc(a, f"10.{base}.0.0/16"), make_vpc(b, f"10.{base + 1}.0.0/16")
    kw = {
        "wrong-owner": dict(PeerVpcId=vb, PeerOwnerId=C_ID),
        "no-such-vpc": dict(PeerVpcId="vpc-0123456789abcdef0", PeerOwnerId=B_ID),
        "wrong-region": dict(PeerVpcId=vb, PeerOwnerId=B_ID, PeerRegion="eu-west-1"),
    }[case]
    r = a.create_vpc_peering_connection(VpcId=va, **kw)["VpcPeeringConnection"]
    assert r["Status"]["Code"] == "initiating-request"
    p = wait_pcx(a, r["VpcPeeringConnectionId"], "failed")
    assert p["Status"]["Message"] == FAILED_MESSAGE
    # B's real VPC never sees it.
    assert r["VpcPeeringConnectionId"] not in listed_pcx_ids(b)


def test_duplicate_requests(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.29.0.0/16"), make_vpc(b, "10.30.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    assert request_peering(a, va, vb, B_ID) == pid  # while initiating
    wait_pcx(a, pid, "pending-acceptance")
    assert request_peering(a, va, vb, B_ID) == pid  # while pending
    with expect_error("VpcPeeringConnectionAlreadyExists"):
        b.create_vpc_peering_connection(VpcId=vb, PeerVpcId=va, PeerOwnerId=A_ID)
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(a, pid, "active")
    assert request_peering(a, va, vb, B_ID) == pid  # while active
    with expect_error("VpcPeeringConnectionAlreadyExists"):
        b.create_vpc_peering_connection(VpcId=vb, PeerVpcId=va, PeerOwnerId=A_ID)
    # Once deleted, a new request makes a new connection.
    b.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)  # either owner may delete an active one
    assert pcx_status(a, pid) == "deleted"
    pid2 = request_peering(a, va, vb, B_ID)
    assert pid2 != pid


def test_outstanding_request_limit(server_factory):
    s = server_factory(limits={"outstanding_peerings_per_account": 2})
    a, b = s.client("A"), s.client("B")
    va = make_vpc(a, "10.31.0.0/16")
    peers = [make_vpc(b, f"10.{32 + i}.0.0/16") for i in range(3)]
    request_peering(a, va, peers[0], B_ID)
    p2 = request_peering(a, va, peers[1], B_ID)
    with expect_error("OutstandingVpcPeeringConnectionLimitExceeded"):
        a.create_vpc_peering_connection(VpcId=va, PeerVpcId=peers[2], PeerOwnerId=B_ID)
    # Accepting one frees a slot.
    wait_pcx(a, p2, "pending-acceptance")
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=p2)
    request_peering(a, va, peers[2], B_ID)


# -- timers and visibility windows (each on its own server, moving its clock) --------------

def test_pending_request_expires(server_factory):
    s = server_factory()
    a, b = s.client("A"), s.client("B")
    va, vb = make_vpc(a, "10.1.0.0/16"), make_vpc(b, "10.2.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    rid = main_route_table(a, va)["RouteTableId"]
    a.create_route(RouteTableId=rid, DestinationCidrBlock="10.2.0.0/16", VpcPeeringConnectionId=pid)
    s.advance(6 * DAY)
    assert pcx_status(a, pid) == "pending-acceptance"
    s.advance(1 * DAY)
    p = pcx(a, pid)
    assert p["Status"]["Code"] == "expired"
    assert p["Status"]["Message"] == "Expired"  # vpcd's documented choice
    [route] = routes_to(a, rid, "10.2.0.0/16")
    assert route["State"] == "blackhole"
    assert pcx_status(b, pid) == "expired"
    with expect_error("InvalidStateTransition"):
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    with expect_error("InvalidStateTransition"):
        a.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    s.advance(1 * DAY)
    assert pcx_status(a, pid) == "expired"
    assert pcx_status(b, pid) == "expired"
    s.advance(2 * DAY)
    assert pcx_gone(a, pid)
    assert pcx_gone(b, pid)
    assert pid not in listed_pcx_ids(a)


def test_rejected_visibility_windows(server_factory):
    s = server_factory()
    a, b = s.client("A"), s.client("B")
    va, vb = make_vpc(a, "10.1.0.0/16"), make_vpc(b, "10.2.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    b.reject_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert pcx_status(a, pid) == "rejected"
    assert pcx_status(b, pid) == "rejected"
    s.advance(2 * HOUR - 60)
    assert pcx_status(b, pid) == "rejected"
    s.advance(120)
    assert pcx_gone(b, pid)  # the accepter sees it for 2 hours
    assert pcx_status(a, pid) == "rejected"
    s.advance(2 * DAY - 2 * HOUR - 120)
    assert pcx_status(a, pid) == "rejected"
    s.advance(120)
    assert pcx_gone(a, pid)  # the requester for 2 days


def test_deleted_visibility_windows(server_factory):
    s = server_factory()
    a, b = s.client("A"), s.client("B")
    va, vb = make_vpc(a, "10.1.0.0/16"), make_vpc(b, "10.2.0.0/16")
    pid = active_peering(a, b, va, vb)
    b.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    s.advance(2 * HOUR + 60)
    assert pcx_gone(b, pid)  # the side that deleted: 2 hours
    assert pcx_status(a, pid) == "deleted"  # the other side: 2 days
    s.advance(2 * DAY)
    assert pcx_gone(a, pid)


def test_failed_visibility_window(server_factory):
    s = server_factory()
    a = s.client("A")
    va, vb = make_vpc(a, "10.1.0.0/16"), make_vpc(s.client("B"), "10.1.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "failed")
    s.advance(2 * HOUR - 60)
    assert pcx_status(a, pid) == "failed"
    s.advance(120)
    assert pcx_gone(a, pid)


def test_expiry_survives_restart(server_factory):
    s = server_factory()
    a = s.client("A")
    va, vb = make_vpc(a, "10.1.0.0/16"), make_vpc(s.client("B"), "10.2.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    s.advance(5 * DAY)
    s.kill9()
    s.start()
    assert pcx_status(a, pid) == "pending-acceptance"
    s.advance(2 * DAY)
    assert pcx_status(a, pid) == "expired"


# -- describe: filters, tags, pagination -----------------------------------------------------

def test_describe_filters_and_per_side_tags(client):
    a, b = client("A"), client("B")
    suite = uuid.uuid4().hex[:8]
    va = make_vpc(a, "10.35.0.0/16")
    vb1, vb2 = make_vpc(b, "10.36.0.0/16"), make_vpc(b, "10.37.0.0/16")
    p1 = a.create_vpc_peering_connection(
        VpcId=va, PeerVpcId=vb1, PeerOwnerId=B_ID,
        TagSpecifications=[{"ResourceType": "vpc-peering-connection",
                            "Tags": [{"Key": "team", "Value": "alpha"}, {"Key": "suite", "Value": suite}]}],
    )["VpcPeeringConnection"]
    assert tags_of(p1) == {"team": "alpha", "suite": suite}
    p1 = p1["VpcPeeringConnectionId"]
    p2 = active_peering(a, b, va, vb2)
    wait_pcx(a, p1, "pending-acceptance")
    # Each side tags its own view.
    b.create_tags(Resources=[p1], Tags=[{"Key": "team", "Value": "beta"}])
    assert tags_of(pcx(a, p1)) == {"team": "alpha", "suite": suite}
    assert tags_of(pcx(b, p1)) == {"team": "beta"}

    def ids(ec2, *filters):
        return {p["VpcPeeringConnectionId"] for p in
                ec2.describe_vpc_peering_connections(Filters=list(filters))["VpcPeeringConnections"]}

    mine = {"Name": "requester-vpc-info.vpc-id", "Values": [va]}
    assert ids(a, mine) == {p1, p2}
    assert ids(a, mine, {"Name": "status-code", "Values": ["active"]}) == {p2}
    assert ids(a, mine, {"Name": "status-code", "Values": ["pending-acceptance"]}) == {p1}
    assert ids(a, mine, {"Name": "status-code", "Values": ["active", "pending-acceptance"]}) == {p1, p2}
    assert ids(a, {"Name": "accepter-vpc-info.vpc-id", "Values": [vb2]}) == {p2}
    assert ids(a, mine, {"Name": "accepter-vpc-info.owner-id", "Values": [B_ID]}) == {p1, p2}
    assert ids(a, mine, {"Name": "requester-vpc-info.owner-id", "Values": [B_ID]}) == set()
    assert ids(a, mine, {"Name": "requester-vpc-info.cidr-block", "Values": ["10.35.0.0/16"]}) == {p1, p2}
    assert ids(a, {"Name": "vpc-peering-connection-id", "Values": [p2]}) == {p2}
    assert ids(a, {"Name": "tag:team", "Values": ["alpha"]}) >= {p1}
    assert ids(a, {"Name": "tag:suite", "Values": [suite]}) == {p1}
    assert ids(a, {"Name": "tag:team", "Values": ["beta"]}) & {p1, p2} == set()
    assert ids(b, {"Name": "tag:team", "Values": ["beta"]}) >= {p1}
    assert ids(b, {"Name": "tag:suite", "Values": [suite]}) == set()
    assert ids(b, {"Name": "tag-key", "Values": ["team"]}) & {p1, p2} == {p1}
    assert ids(a, mine, {"Name": "status-message", "Values": ["Active"]}) == {p2}
    # DescribeTags shows the caller's view only.
    rows = a.describe_tags(Filters=[{"Name": "resource-id", "Values": [p1]}])["Tags"]
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in rows} == {
        ("team", "alpha", "vpc-peering-connection"), ("suite", suite, "vpc-peering-connection")}


def test_describe_paginator(client):
    a, b = client("A"), client("B")
    va = make_vpc(a, "10.38.0.0/16")
    made = {request_peering(a, va, make_vpc(b, f"10.{39 + i}.0.0/16"), B_ID) for i in range(7)}
    flt = [{"Name": "requester-vpc-info.vpc-id", "Values": [va]}]
    pages = list(a.get_paginator("describe_vpc_peering_connections").paginate(Filters=flt, MaxResults=5))
    assert [len(p["VpcPeeringConnections"]) for p in pages] == [5, 2]
    seen = [p["VpcPeeringConnectionId"] for page in pages for p in page["VpcPeeringConnections"]]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == made
    # Without filters the paginator returns the same as one unpaginated call.
    everything = [p["VpcPeeringConnectionId"] for p in a.describe_vpc_peering_connections()["VpcPeeringConnections"]]
    paged = [p["VpcPeeringConnectionId"] for page in
             a.get_paginator("describe_vpc_peering_connections").paginate(MaxResults=5)
             for p in page["VpcPeeringConnections"]]
    assert sorted(paged) == sorted(everything)
    assert len(paged) == len(set(paged))


def test_delete_vpc_with_peerings(client):
    a, b = client("A"), client("B")
    # A VPC that has received another account's pending request cannot be deleted...
    va, vb = make_vpc(a, "10.46.0.0/16"), make_vpc(b, "10.47.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    with expect_error("DependencyViolation"):
        b.delete_vpc(VpcId=vb)
    # ...but the requester's VPC can; its pending request goes with it.
    a.delete_vpc(VpcId=va)
    assert pcx_status(b, pid) == "deleted"
    # Deleting a VPC with an active peering deletes the peering.
    va2, vb2 = make_vpc(a, "10.48.0.0/16"), make_vpc(b, "10.49.0.0/16")
    pid2 = active_peering(a, b, va2, vb2)
    b.delete_vpc(VpcId=vb2)
    assert pcx_status(a, pid2) == "deleted"
    assert error_code(b.delete_vpc, VpcId=vb) is None


# -- more rules ---------------------------------------------------------------------------------

def test_sg_reference_needs_active_peering_and_stale_clears_on_repeer(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.50.0.0/16"), make_vpc(b, "10.51.0.0/16")
    sga, sgb = default_sg(a, va), default_sg(b, vb)
    perm = {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "UserIdGroupPairs": [{"GroupId": sga, "UserId": A_ID}]}
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    with expect_error("InvalidGroup.NotFound"):  # not active yet
        b.authorize_security_group_ingress(GroupId=sgb, IpPermissions=[perm])
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(b, pid, "active")
    b.authorize_security_group_ingress(GroupId=sgb, IpPermissions=[perm])
    assert b.describe_stale_security_groups(VpcId=vb)["StaleSecurityGroupSet"] == []
    b.delete_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert [g["GroupId"] for g in b.describe_stale_security_groups(VpcId=vb)["StaleSecurityGroupSet"]] == [sgb]
    # The rule is kept, not removed.
    g = b.describe_security_groups(GroupIds=[sgb])["SecurityGroups"][0]
    assert any(p.get("FromPort") == 8080 for p in g["IpPermissions"])
    # Peering the same two VPCs again makes the rule live again.
    active_peering(a, b, va, vb)
    assert b.describe_stale_security_groups(VpcId=vb)["StaleSecurityGroupSet"] == []


def test_active_peerings_per_vpc_limit(server_factory):
    s = server_factory(limits={"active_peerings_per_vpc": 1})
    a, b, c = s.client("A"), s.client("B"), s.client("C")
    va, vb, vc = make_vpc(a, "10.1.0.0/16"), make_vpc(b, "10.2.0.0/16"), make_vpc(c, "10.3.0.0/16")
    active_peering(a, b, va, vb)
    pid = request_peering(c, vc, vb, B_ID)
    wait_pcx(c, pid, "pending-acceptance")
    with expect_error("ActiveVpcPeeringConnectionPerVpcLimitExceeded"):
        b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert pcx_status(b, pid) == "pending-acceptance"


def test_same_account_same_region(client):
    a = client("A")
    v1, v2 = make_vpc(a, "10.52.0.0/16"), make_vpc(a, "10.53.0.0/16")
    r = a.create_vpc_peering_connection(VpcId=v1, PeerVpcId=v2)["VpcPeeringConnection"]
    assert r["AccepterVpcInfo"]["OwnerId"] == A_ID
    pid = r["VpcPeeringConnectionId"]
    wait_pcx(a, pid, "pending-acceptance")
    a.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)  # the same principal accepts
    wait_pcx(a, pid, "active")
    for v in (v1, v2):
        a.modify_vpc_attribute(VpcId=v, EnableDnsHostnames={"Value": True})
    dns_on = {"AllowDnsResolutionFromRemoteVpc": True}
    m = a.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pid, RequesterPeeringConnectionOptions=dns_on,
                                                AccepterPeeringConnectionOptions=dns_on)
    assert m["RequesterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    assert m["AccepterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
