"""Route tables, routes (including to peering connections) and network ACLs."""

from __future__ import annotations

from helpers import (A_ID, B_ID, expect_error, is_id, main_route_table, make_vpc, request_peering,
                     routes_to, wait_pcx)


def rtb(ec2, rid):
    return ec2.describe_route_tables(RouteTableIds=[rid])["RouteTables"][0]


def acl(ec2, aid):
    return ec2.describe_network_acls(NetworkAclIds=[aid])["NetworkAcls"][0]


def entries(a, egress):
    return {e["RuleNumber"]: e for e in a["Entries"] if e["Egress"] is egress}


# -- route tables ------------------------------------------------------------------------

def test_route_table_lifecycle(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.90.0.0/16")
    rt = ec2.create_route_table(VpcId=vid, TagSpecifications=[
        {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "private"}]}])["RouteTable"]
    rid = rt["RouteTableId"]
    assert is_id("rtb", rid)
    assert rt["VpcId"] == vid
    assert rt["OwnerId"] == A_ID
    assert rt["Associations"] == []
    [local] = rt["Routes"]
    assert local["DestinationCidrBlock"] == "10.90.0.0/16"
    assert local["GatewayId"] == "local"
    assert local["State"] == "active"
    assert local["Origin"] == "CreateRouteTable"

    main = main_route_table(ec2, vid)
    assert main["RouteTableId"] != rid
    [main_assoc] = [x for x in main["Associations"] if x.get("Main")]

    # Associate a subnet; it leaves the main table's implicit care.
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.90.1.0/24")["Subnet"]["SubnetId"]
    r = ec2.associate_route_table(RouteTableId=rid, SubnetId=sid)
    assoc = r["AssociationId"]
    assert assoc.startswith("rtbassoc-")
    assert r["AssociationState"]["State"] == "associated"
    [a] = rtb(ec2, rid)["Associations"]
    assert (a["SubnetId"], a["RouteTableAssociationId"], a["Main"]) == (sid, assoc, False)
    got = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["RouteTables"]
    assert [x["RouteTableId"] for x in got] == [rid]
    with expect_error("Resource.AlreadyAssociated"):
        ec2.associate_route_table(RouteTableId=main["RouteTableId"], SubnetId=sid)

    # Move the subnet to a second table.
    rid2 = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    new = ec2.replace_route_table_association(AssociationId=assoc, RouteTableId=rid2)["NewAssociationId"]
    assert new.startswith("rtbassoc-")
    assert rtb(ec2, rid)["Associations"] == []
    assert [x["SubnetId"] for x in rtb(ec2, rid2)["Associations"]] == [sid]

    # A table with an association cannot be deleted; the main table cannot be deleted.
    with expect_error("DependencyViolation"):
        ec2.delete_route_table(RouteTableId=rid2)
    with expect_error("DependencyViolation"):
        ec2.delete_route_table(RouteTableId=main["RouteTableId"])
    ec2.disassociate_route_table(AssociationId=new)
    assert rtb(ec2, rid2)["Associations"] == []
    ec2.delete_route_table(RouteTableId=rid2)
    with expect_error("InvalidRouteTableID.NotFound"):
        ec2.describe_route_tables(RouteTableIds=[rid2])

    # Replace the main association: `rid` becomes the main table.
    new_main = ec2.replace_route_table_association(AssociationId=main_assoc["RouteTableAssociationId"],
                                                   RouteTableId=rid)["NewAssociationId"]
    assert main_route_table(ec2, vid)["RouteTableId"] == rid
    assert any(x.get("Main") and x["RouteTableAssociationId"] == new_main for x in rtb(ec2, rid)["Associations"])

    with expect_error("InvalidRouteTableId.Malformed"):
        ec2.describe_route_tables(RouteTableIds=["zz"])
    with expect_error("InvalidRouteTableID.NotFound"):
        ec2.delete_route_table(RouteTableId="rtb-0123456789abcdef0")
    with expect_error("InvalidVpcID.NotFound"):
        ec2.create_route_table(VpcId="vpc-0123456789abcdef0")


def test_routes_to_internet_gateway(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.91.0.0/16")
    rid = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vid)

    assert ec2.create_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)["Return"] is True
    [r] = routes_to(ec2, rid, "0.0.0.0/0")
    assert r["GatewayId"] == igw
    assert r["State"] == "active"
    assert r["Origin"] == "CreateRoute"
    with expect_error("RouteAlreadyExists"):
        ec2.create_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    # Destinations are canonicalised.
    ec2.create_route(RouteTableId=rid, DestinationCidrBlock="198.51.100.77/24", GatewayId=igw)
    assert routes_to(ec2, rid, "198.51.100.0/24")
    with expect_error("RouteAlreadyExists"):
        ec2.create_route(RouteTableId=rid, DestinationCidrBlock="198.51.100.0/24", GatewayId=igw)
    with expect_error("InvalidParameterValue"):
        ec2.create_route(RouteTableId=rid, DestinationCidrBlock="not-a-cidr", GatewayId=igw)
    # Real AWS answers an unknown GatewayId with InvalidGatewayID.NotFound
    # ("The gateway ID '...' does not exist"), whatever kind of gateway it names.
    with expect_error("InvalidGatewayID.NotFound"):
        ec2.create_route(RouteTableId=rid, DestinationCidrBlock="203.0.113.0/24",
                         GatewayId="igw-0123456789abcdef0")
    # A gateway that is not attached to the table's VPC: "... belong to different networks".
    loose = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    with expect_error("InvalidParameterValue"):
        ec2.create_route(RouteTableId=rid, DestinationCidrBlock="203.0.113.0/24", GatewayId=loose)

    ec2.delete_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0")
    assert routes_to(ec2, rid, "0.0.0.0/0") == []
    with expect_error("InvalidRoute.NotFound"):
        ec2.delete_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0")
    with expect_error("InvalidRouteTableID.NotFound"):
        ec2.create_route(RouteTableId="rtb-0123456789abcdef0", DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)


def test_route_to_peering_is_blackhole_until_active(client):
    a, b = client("A"), client("B")
    va, vb = make_vpc(a, "10.92.0.0/16"), make_vpc(b, "10.93.0.0/16")
    pid = request_peering(a, va, vb, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    rid = main_route_table(a, va)["RouteTableId"]
    a.create_route(RouteTableId=rid, DestinationCidrBlock="10.93.0.0/16", VpcPeeringConnectionId=pid)
    # Part of the peer's range, down to a single address, is allowed too.
    a.create_route(RouteTableId=rid, DestinationCidrBlock="10.93.7.7/32", VpcPeeringConnectionId=pid)
    for dest in ("10.93.0.0/16", "10.93.7.7/32"):
        [r] = routes_to(a, rid, dest)
        assert r["VpcPeeringConnectionId"] == pid
        assert r["State"] == "blackhole"
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(a, pid, "active")
    for dest in ("10.93.0.0/16", "10.93.7.7/32"):
        assert routes_to(a, rid, dest)[0]["State"] == "active"

    # A connection that does not involve the table's VPC, and an unknown one.
    other = make_vpc(a, "10.94.0.0/16")
    other_rt = main_route_table(a, other)["RouteTableId"]
    with expect_error("InvalidParameterValue"):
        a.create_route(RouteTableId=other_rt, DestinationCidrBlock="10.93.0.0/16", VpcPeeringConnectionId=pid)
    with expect_error("InvalidVpcPeeringConnectionID.NotFound"):
        a.create_route(RouteTableId=rid, DestinationCidrBlock="10.95.0.0/16",
                       VpcPeeringConnectionId="pcx-0123456789abcdef0")


def test_replace_route(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.96.0.0/16")
    rid = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    g1 = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=g1, VpcId=vid)
    ec2.create_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=g1)
    b = client("B")
    vb = make_vpc(b, "10.97.0.0/16")
    pid = request_peering(ec2, vid, vb, B_ID)
    wait_pcx(ec2, pid, "pending-acceptance")
    ec2.replace_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", VpcPeeringConnectionId=pid)
    [r] = routes_to(ec2, rid, "0.0.0.0/0")
    assert r.get("VpcPeeringConnectionId") == pid and "GatewayId" not in r
    assert r["State"] == "blackhole"


# -- network ACLs -------------------------------------------------------------------------

def test_default_network_acl(client):
    ec2 = client("A")
    vid = ec2.create_vpc(CidrBlock="10.98.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.98.1.0/24")["Subnet"]["SubnetId"]
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vid]}])["NetworkAcls"]
    assert len(acls) == 1
    d = acls[0]
    assert d["IsDefault"] is True
    assert d["OwnerId"] == A_ID
    for egress in (False, True):
        e = entries(d, egress)
        assert set(e) == {100, 101, 32767, 32768}
        assert (e[100]["RuleAction"], e[100]["Protocol"], e[100]["CidrBlock"]) == ("allow", "-1", "0.0.0.0/0")
        assert (e[101]["RuleAction"], e[101]["Ipv6CidrBlock"]) == ("allow", "::/0")
        assert (e[32767]["RuleAction"], e[32767]["CidrBlock"]) == ("deny", "0.0.0.0/0")
        assert (e[32768]["RuleAction"], e[32768]["Ipv6CidrBlock"]) == ("deny", "::/0")
    [assoc] = d["Associations"]
    assert assoc["SubnetId"] == sid
    assert assoc["NetworkAclAssociationId"].startswith("aclassoc-")
    assert assoc["NetworkAclId"] == d["NetworkAclId"]
    got = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])["NetworkAcls"]
    assert [x["NetworkAclId"] for x in got] == [d["NetworkAclId"]]


def test_custom_network_acl(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.99.0.0/16")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
    c = ec2.create_network_acl(VpcId=vid)["NetworkAcl"]
    aid = c["NetworkAclId"]
    assert is_id("acl", aid)
    assert c["IsDefault"] is False
    assert c["VpcId"] == vid
    assert c["Associations"] == []
    for egress in (False, True):
        assert set(entries(c, egress)) == {32767}
        assert entries(c, egress)[32767]["RuleAction"] == "deny"

    # Entries.
    ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Protocol="6", RuleAction="allow",
                                 Egress=False, CidrBlock="10.0.0.0/8", PortRange={"From": 443, "To": 443})
    e = entries(acl(ec2, aid), False)[110]
    assert (e["Protocol"], e["RuleAction"], e["CidrBlock"]) == ("6", "allow", "10.0.0.0/8")
    assert e["PortRange"] == {"From": 443, "To": 443}
    with expect_error("NetworkAclEntryAlreadyExists"):
        ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Protocol="-1", RuleAction="deny",
                                     Egress=False, CidrBlock="0.0.0.0/0")
    # The same number in the other direction is a different entry.
    ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Protocol="6", RuleAction="allow",
                                 Egress=True, CidrBlock="10.0.0.0/8", PortRange={"From": 1024, "To": 65535})
    ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=120, Protocol="1", RuleAction="allow",
                                 Egress=False, CidrBlock="10.0.0.0/8", IcmpTypeCode={"Type": -1, "Code": -1})
    assert entries(acl(ec2, aid), False)[120]["IcmpTypeCode"] == {"Type": -1, "Code": -1}

    ec2.replace_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Protocol="6", RuleAction="deny",
                                  Egress=False, CidrBlock="10.0.0.0/8", PortRange={"From": 443, "To": 443})
    assert entries(acl(ec2, aid), False)[110]["RuleAction"] == "deny"
    assert entries(acl(ec2, aid), True)[110]["RuleAction"] == "allow"
    ec2.delete_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Egress=False)
    assert 110 not in entries(acl(ec2, aid), False)
    assert 110 in entries(acl(ec2, aid), True)
    with expect_error("InvalidNetworkAclEntry.NotFound"):
        ec2.delete_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Egress=False)
    with expect_error("InvalidNetworkAclEntry.NotFound"):
        ec2.replace_network_acl_entry(NetworkAclId=aid, RuleNumber=999, Protocol="-1", RuleAction="deny",
                                      Egress=False, CidrBlock="0.0.0.0/0")

    # Move the subnet from the default ACL to this one, and back.
    default = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                                 {"Name": "default", "Values": ["true"]}])["NetworkAcls"][0]
    [old] = [x for x in default["Associations"] if x["SubnetId"] == sid]
    new = ec2.replace_network_acl_association(AssociationId=old["NetworkAclAssociationId"],
                                              NetworkAclId=aid)["NewAssociationId"]
    assert new.startswith("aclassoc-")
    assert [(x["SubnetId"], x["NetworkAclAssociationId"]) for x in acl(ec2, aid)["Associations"]] == [(sid, new)]
    assert sid not in {x["SubnetId"] for x in acl(ec2, default["NetworkAclId"])["Associations"]}
    with expect_error("DependencyViolation"):
        ec2.delete_network_acl(NetworkAclId=aid)
    ec2.replace_network_acl_association(AssociationId=new, NetworkAclId=default["NetworkAclId"])
    assert acl(ec2, aid)["Associations"] == []
    ec2.delete_network_acl(NetworkAclId=aid)
    with expect_error("InvalidNetworkAclID.NotFound"):
        ec2.describe_network_acls(NetworkAclIds=[aid])
    with expect_error("InvalidNetworkAclId.Malformed"):
        ec2.describe_network_acls(NetworkAclIds=["zz"])
    with expect_error("InvalidNetworkAclID.NotFound"):
        ec2.create_network_acl_entry(NetworkAclId="acl-0123456789abcdef0", RuleNumber=1, Protocol="-1",
                                     RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0")
