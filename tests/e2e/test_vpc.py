"""VPCs, subnets, internet gateways, tags, filters, pagination, DryRun, regions and zones."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from helpers import A_ID, B_ID, expect_error, is_id, main_route_table, make_vpc, tags_of


def vpc_of(ec2, vpc_id):
    vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert len(vpcs) == 1
    return vpcs[0]


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1, vpcs
    return vpcs[0]


# -- default VPC -----------------------------------------------------------------

@pytest.mark.parametrize("region", ["us-east-1", "eu-west-2"])
def test_default_vpc_and_subnets(client, region):
    ec2 = client("A", region)
    v = default_vpc(ec2)
    assert v["CidrBlock"] == "172.31.0.0/16"
    assert v["IsDefault"] is True
    assert v["State"] == "available"
    assert v["OwnerId"] == A_ID
    assert is_id("vpc", v["VpcId"])
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["Subnets"]
    assert len(subnets) == 3
    assert sorted(s["AvailabilityZone"] for s in subnets) == [f"{region}{z}" for z in "abc"]
    assert sorted(s["CidrBlock"] for s in subnets) == ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]
    for s in subnets:
        assert s["DefaultForAz"] is True
        assert s["MapPublicIpOnLaunch"] is True
        assert s["AvailableIpAddressCount"] == 4091
        assert s["State"] == "available"
    # The default-for-az filter finds the same three.
    dfa = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    assert {s["SubnetId"] for s in dfa} == {s["SubnetId"] for s in subnets}
    # DescribeAccountAttributes names it.
    attrs = ec2.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
    assert attrs[0]["AttributeValues"][0]["AttributeValue"] == v["VpcId"]


def test_default_vpc_is_per_account_and_region(client):
    ids = {(acct, region): default_vpc(client(acct, region))["VpcId"]
           for acct in ("A", "B") for region in ("us-east-1", "us-west-2")}
    assert len(set(ids.values())) == 4
    # Stable: asking again gives the same one, not a second default VPC.
    assert default_vpc(client("A", "us-east-1"))["VpcId"] == ids[("A", "us-east-1")]


def test_default_vpc_internet_gateway(client):
    ec2 = client("A")
    vid = default_vpc(ec2)["VpcId"]
    igws = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])["InternetGateways"]
    assert len(igws) == 1
    assert is_id("igw", igws[0]["InternetGatewayId"])
    assert igws[0]["Attachments"] == [{"VpcId": vid, "State": "available"}]


def test_default_vpc_main_route_table(client):
    ec2 = client("A")
    vid = default_vpc(ec2)["VpcId"]
    igw = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])["InternetGateways"][0]["InternetGatewayId"]
    rt = main_route_table(ec2, vid)
    assert is_id("rtb", rt["RouteTableId"])
    routes = {r["DestinationCidrBlock"]: r for r in rt["Routes"] if "DestinationCidrBlock" in r}
    assert routes["172.31.0.0/16"]["GatewayId"] == "local"
    assert routes["172.31.0.0/16"]["State"] == "active"
    assert routes["0.0.0.0/0"]["GatewayId"] == igw
    assert routes["0.0.0.0/0"]["State"] == "active"
    assert any(a.get("Main") for a in rt["Associations"])


def test_default_vpc_security_group(client):
    ec2 = client("A")
    vid = default_vpc(ec2)["VpcId"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    g = groups[0]
    assert g["Description"] == "default VPC security group"
    assert g["OwnerId"] == A_ID
    # Inbound: everything from itself. Outbound: everything.
    assert len(g["IpPermissions"]) == 1
    inbound = g["IpPermissions"][0]
    assert inbound["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in inbound["UserIdGroupPairs"]] == [g["GroupId"]]
    assert [p["UserId"] for p in inbound["UserIdGroupPairs"]] == [A_ID]
    outbound = g["IpPermissionsEgress"]
    assert len(outbound) == 1 and outbound[0]["IpProtocol"] == "-1"
    assert [r["CidrIp"] for r in outbound[0]["IpRanges"]] == ["0.0.0.0/0"]


def test_default_vpc_network_acl(client):
    ec2 = client("A")
    vid = default_vpc(ec2)["VpcId"]
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                              {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
    assert len(acls) == 1
    acl = acls[0]
    assert acl["IsDefault"] is True
    assert is_id("acl", acl["NetworkAclId"])
    for egress in (False, True):
        entries = {e["RuleNumber"]: e for e in acl["Entries"] if e["Egress"] is egress}
        assert entries[100]["RuleAction"] == "allow"
        assert entries[100]["CidrBlock"] == "0.0.0.0/0"
        assert entries[100]["Protocol"] == "-1"
        assert entries[32767]["RuleAction"] == "deny"
        assert entries[32767]["CidrBlock"] == "0.0.0.0/0"
    # The default subnets are associated with it.
    subnets = {s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]}
    assert {a["SubnetId"] for a in acl["Associations"]} == subnets


# -- regions and zones ------------------------------------------------------------

def test_describe_regions(client):
    ec2 = client("A")
    regions = {r["RegionName"]: r for r in ec2.describe_regions()["Regions"]}
    for name in ("us-east-1", "us-west-2", "eu-west-1"):
        assert name in regions
        assert regions[name]["Endpoint"] == f"ec2.{name}.amazonaws.com"
    only = ec2.describe_regions(RegionNames=["us-west-2"])["Regions"]
    assert [r["RegionName"] for r in only] == ["us-west-2"]
    filt = ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["eu-*"]}])["Regions"]
    assert filt and all(r["RegionName"].startswith("eu-") for r in filt)
    with expect_error("InvalidParameterValue"):
        ec2.describe_regions(RegionNames=["xx-nowhere-9"])


@pytest.mark.parametrize("region,code", [("us-east-1", "use1"), ("us-west-2", "usw2")])
def test_describe_availability_zones(client, region, code):
    ec2 = client("A", region)
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [f"{region}a", f"{region}b", f"{region}c"]
    assert [z["ZoneId"] for z in zones] == [f"{code}-az1", f"{code}-az2", f"{code}-az3"]
    for z in zones:
        assert z["State"] == "available"
        assert z["RegionName"] == region
    one = ec2.describe_availability_zones(ZoneNames=[f"{region}b"])["AvailabilityZones"]
    assert [z["ZoneName"] for z in one] == [f"{region}b"]


# -- CreateVpc ------------------------------------------------------------------------

def test_create_vpc_with_tags(client):
    ec2 = client("A")
    r = ec2.create_vpc(CidrBlock="10.50.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "tagged"}, {"Key": "env", "Value": ""}]}])["Vpc"]
    assert is_id("vpc", r["VpcId"])
    assert r["CidrBlock"] == "10.50.0.0/16"
    assert r["IsDefault"] is False
    assert r["OwnerId"] == A_ID
    assert r["InstanceTenancy"] == "default"
    assert r["State"] in ("pending", "available")
    assert tags_of(r) == {"Name": "tagged", "env": ""}
    assoc = r["CidrBlockAssociationSet"]
    assert len(assoc) == 1 and assoc[0]["CidrBlock"] == "10.50.0.0/16"
    assert assoc[0]["AssociationId"].startswith("vpc-cidr-assoc-")
    v = vpc_of(ec2, r["VpcId"])
    assert v["State"] == "available"
    assert tags_of(v) == {"Name": "tagged", "env": ""}
    assert v["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
    # A new VPC: DNS support on, DNS hostnames off.
    assert ec2.describe_vpc_attribute(VpcId=r["VpcId"], Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"] is True
    assert ec2.describe_vpc_attribute(VpcId=r["VpcId"], Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is False


def test_create_vpc_canonicalises_cidr(client):
    ec2 = client("A")
    r = ec2.create_vpc(CidrBlock="10.51.7.9/16")["Vpc"]
    assert r["CidrBlock"] == "10.51.0.0/16"


def test_create_vpc_tag_spec_wrong_type(client):
    ec2 = client("A")
    with expect_error("InvalidParameterValue"):
        ec2.create_vpc(CidrBlock="10.52.0.0/16", TagSpecifications=[
            {"ResourceType": "subnet", "Tags": [{"Key": "k", "Value": "v"}]}])
    assert ec2.describe_vpcs(Filters=[{"Name": "cidr-block", "Values": ["10.52.0.0/16"]}])["Vpcs"] == []


@pytest.mark.parametrize("cidr,code", [
    ("10.0.0.0/8", "InvalidVpc.Range"),
    ("10.0.0.0/15", "InvalidVpc.Range"),
    ("10.0.0.0/29", "InvalidVpc.Range"),
    ("garbage", "InvalidParameterValue"),
    ("10.0.0.300/16", "InvalidParameterValue"),
    ("10.0.0.0", "InvalidParameterValue"),
])
def test_create_vpc_invalid_cidr(client, cidr, code):
    ec2 = client("A")
    before = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    with expect_error(code):
        ec2.create_vpc(CidrBlock=cidr)
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} == before


def test_create_vpc_missing_cidr(client):
    with expect_error("MissingParameter"):
        client("A").create_vpc()


def test_vpc_limit_exceeded(server_factory):
    s = server_factory()  # AWS default quotas: 5 VPCs per region, the default VPC included
    a = s.client("A")
    assert len(a.describe_vpcs()["Vpcs"]) == 1
    for i in range(4):
        make_vpc(a, f"10.{i}.0.0/16")
    with expect_error("VpcLimitExceeded"):
        a.create_vpc(CidrBlock="10.9.0.0/16")
    assert len(a.describe_vpcs()["Vpcs"]) == 5
    # The quota is per account and per region.
    make_vpc(s.client("A", "us-west-2"), "10.9.0.0/16")
    make_vpc(s.client("B"), "10.9.0.0/16")
    # Deleting one frees a slot.
    victim = [v["VpcId"] for v in a.describe_vpcs()["Vpcs"] if not v["IsDefault"]][0]
    a.delete_vpc(VpcId=victim)
    make_vpc(a, "10.9.0.0/16")


def test_dry_run_create_vpc(client):
    ec2 = client("A")
    with expect_error("DryRunOperation", 412) as h:
        ec2.create_vpc(CidrBlock="10.53.0.0/16", DryRun=True)
    assert "DryRun flag is set" in h.error.response["Error"]["Message"]
    assert ec2.describe_vpcs(Filters=[{"Name": "cidr-block", "Values": ["10.53.0.0/16"]}])["Vpcs"] == []
    with expect_error("DryRunOperation", 412):
        ec2.describe_vpcs(DryRun=True)
    vid = make_vpc(ec2, "10.53.0.0/16")
    with expect_error("DryRunOperation", 412):
        ec2.delete_vpc(VpcId=vid, DryRun=True)
    assert vpc_of(ec2, vid)["VpcId"] == vid
    with expect_error("DryRunOperation", 412):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": "dry", "Value": "run"}], DryRun=True)
    assert tags_of(vpc_of(ec2, vid)) == {}


@pytest.mark.parametrize("bad", ["notavpc", "vpc-", "vpc", "subnet-0123456789abcdef0"])
def test_malformed_vpc_ids(client, bad):
    ec2 = client("A")
    with expect_error("InvalidVpcID.Malformed"):
        ec2.describe_vpcs(VpcIds=[bad])
    with expect_error("InvalidVpcID.Malformed"):
        ec2.delete_vpc(VpcId=bad)


def test_unknown_ids(client):
    ec2 = client("A")
    with expect_error("InvalidVpcID.NotFound") as h:
        ec2.describe_vpcs(VpcIds=["vpc-0123456789abcdef0"])
    assert "vpc-0123456789abcdef0" in h.error.response["Error"]["Message"]
    # One unknown id fails the whole call even when others exist.
    vid = make_vpc(ec2)
    with expect_error("InvalidVpcID.NotFound"):
        ec2.describe_vpcs(VpcIds=[vid, "vpc-0123456789abcdef0"])
    # Legacy 8-hex ids are well-formed.
    with expect_error("InvalidVpcID.NotFound"):
        ec2.describe_vpcs(VpcIds=["vpc-1a2b3c4d"])
    with expect_error("InvalidSubnetID.Malformed"):
        ec2.describe_subnets(SubnetIds=["zz"])
    with expect_error("InvalidSubnetID.NotFound"):
        ec2.describe_subnets(SubnetIds=["subnet-0123456789abcdef0"])


# -- CIDR blocks and attributes ---------------------------------------------------------

def test_associate_and_disassociate_cidr_blocks(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.54.0.0/16")
    r = ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="10.55.0.0/16")
    assert r["VpcId"] == vid
    a4 = r["CidrBlockAssociation"]
    assert a4["CidrBlock"] == "10.55.0.0/16"
    assert a4["CidrBlockState"]["State"] in ("associating", "associated")
    v = vpc_of(ec2, vid)
    assert v["CidrBlock"] == "10.54.0.0/16"  # the primary does not change
    assert {(c["CidrBlock"], c["CidrBlockState"]["State"]) for c in v["CidrBlockAssociationSet"]} == {
        ("10.54.0.0/16", "associated"), ("10.55.0.0/16", "associated")}
    # The secondary block can hold subnets.
    ec2.create_subnet(VpcId=vid, CidrBlock="10.55.1.0/24")
    # Filter by any associated block.
    found = ec2.describe_vpcs(Filters=[{"Name": "cidr-block-association.cidr-block", "Values": ["10.55.0.0/16"]}])["Vpcs"]
    assert [x["VpcId"] for x in found] == [vid]

    # Overlapping, and from a different RFC 1918 range: refused.
    with expect_error("InvalidVpc.Range"):
        ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="10.54.128.0/17")
    with expect_error("InvalidVpc.Range"):
        ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="192.168.0.0/16")
    with expect_error("InvalidVpc.Range"):
        ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="10.56.0.0/29")

    # Amazon-provided IPv6: a /56.
    r6 = ec2.associate_vpc_cidr_block(VpcId=vid, AmazonProvidedIpv6CidrBlock=True)["Ipv6CidrBlockAssociation"]
    assert r6["AssociationId"].startswith("vpc-cidr-assoc-")
    v6 = vpc_of(ec2, vid)["Ipv6CidrBlockAssociationSet"]
    assert len(v6) == 1
    net6 = ipaddress.ip_network(v6[0]["Ipv6CidrBlock"])
    assert net6.version == 6 and net6.prefixlen == 56
    assert v6[0]["Ipv6CidrBlockState"]["State"] == "associated"
    assert v6[0]["AssociationId"] == r6["AssociationId"]

    # Disassociating: the primary cannot go; a block with subnets cannot go; a free secondary can.
    primary = [c for c in vpc_of(ec2, vid)["CidrBlockAssociationSet"] if c["CidrBlock"] == "10.54.0.0/16"][0]
    with expect_error("OperationNotPermitted"):
        ec2.disassociate_vpc_cidr_block(AssociationId=primary["AssociationId"])
    # Real AWS: "InvalidCidrBlock.InUse: The vpc vpc-... currently has a subnet within CIDR block ..."
    # (hashicorp/terraform-provider-aws#9592, #29077).
    with expect_error("InvalidCidrBlock.InUse"):
        ec2.disassociate_vpc_cidr_block(AssociationId=a4["AssociationId"])
    a4b = ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="10.57.0.0/16")["CidrBlockAssociation"]
    d = ec2.disassociate_vpc_cidr_block(AssociationId=a4b["AssociationId"])
    assert d["VpcId"] == vid
    assert d["CidrBlockAssociation"]["CidrBlock"] == "10.57.0.0/16"
    assert d["CidrBlockAssociation"]["CidrBlockState"]["State"] in ("disassociating", "disassociated")
    live = {c["CidrBlock"] for c in vpc_of(ec2, vid)["CidrBlockAssociationSet"]
            if c["CidrBlockState"]["State"] == "associated"}
    assert live == {"10.54.0.0/16", "10.55.0.0/16"}
    # The main route table has local routes for the live blocks only.
    local = {r["DestinationCidrBlock"] for r in main_route_table(ec2, vid)["Routes"]
             if r.get("GatewayId") == "local" and "DestinationCidrBlock" in r}
    assert local == {"10.54.0.0/16", "10.55.0.0/16"}
    v56 = ipaddress.ip_network(v6[0]["Ipv6CidrBlock"])
    s6 = ec2.create_subnet(VpcId=vid, CidrBlock="10.54.9.0/24",
                           Ipv6CidrBlock=str(next(v56.subnets(new_prefix=64))))["Subnet"]["SubnetId"]
    with expect_error("InvalidCidrBlock.InUse"):
        ec2.disassociate_vpc_cidr_block(AssociationId=r6["AssociationId"])
    ec2.delete_subnet(SubnetId=s6)
    ec2.disassociate_vpc_cidr_block(AssociationId=r6["AssociationId"])
    assert [c for c in vpc_of(ec2, vid)["Ipv6CidrBlockAssociationSet"]
            if c["Ipv6CidrBlockState"]["State"] == "associated"] == []
    with expect_error("InvalidVpcCidrBlockAssociationID.NotFound"):
        ec2.disassociate_vpc_cidr_block(AssociationId="vpc-cidr-assoc-0123456789abcdef0")


def test_create_vpc_with_ipv6(client):
    ec2 = client("A")
    v = ec2.create_vpc(CidrBlock="10.58.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    blocks = vpc_of(ec2, v["VpcId"])["Ipv6CidrBlockAssociationSet"]
    assert len(blocks) == 1
    assert ipaddress.ip_network(blocks[0]["Ipv6CidrBlock"]).prefixlen == 56
    # The main route table routes it locally; the default group lets it out.
    v6 = blocks[0]["Ipv6CidrBlock"]
    local = [r for r in main_route_table(ec2, v["VpcId"])["Routes"] if r.get("DestinationIpv6CidrBlock") == v6]
    assert [(r["GatewayId"], r["State"]) for r in local] == [("local", "active")]
    g = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["SecurityGroups"][0]
    assert any(x.get("CidrIpv6") == "::/0" for p in g["IpPermissionsEgress"] for x in p.get("Ipv6Ranges", []))
    # Each VPC gets its own block.
    w = ec2.create_vpc(CidrBlock="10.59.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    other = vpc_of(ec2, w["VpcId"])["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
    assert not ipaddress.ip_network(other).overlaps(ipaddress.ip_network(blocks[0]["Ipv6CidrBlock"]))


def test_vpc_dns_attributes(client):
    ec2 = client("A")
    vid = make_vpc(ec2)

    def attr(name):
        r = ec2.describe_vpc_attribute(VpcId=vid, Attribute=name)
        assert r["VpcId"] == vid
        return r[name[0].upper() + name[1:]]["Value"]

    assert attr("enableDnsHostnames") is False
    # One attribute per call (real AWS: "Fields for multiple attribute types specified").
    with expect_error("InvalidParameterCombination"):
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True}, EnableDnsSupport={"Value": True})
    assert attr("enableDnsHostnames") is False
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    assert attr("enableDnsHostnames") is True
    assert attr("enableDnsSupport") is True
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": False})
    assert attr("enableDnsHostnames") is False
    # Hostnames need DNS support.
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsSupport={"Value": False})
    assert attr("enableDnsSupport") is False
    with expect_error("InvalidParameterValue"):
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    assert attr("enableDnsHostnames") is False
    with expect_error("InvalidVpcID.NotFound"):
        ec2.describe_vpc_attribute(VpcId="vpc-0123456789abcdef0", Attribute="enableDnsSupport")


# -- subnets ------------------------------------------------------------------------------

def test_subnets(client):
    ec2 = client("A")
    v = ec2.create_vpc(CidrBlock="10.60.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    vid = v["VpcId"]
    s = ec2.create_subnet(VpcId=vid, CidrBlock="10.60.1.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    assert is_id("subnet", s["SubnetId"])
    assert s["VpcId"] == vid
    assert s["CidrBlock"] == "10.60.1.0/24"
    assert s["AvailabilityZone"] == "us-east-1b"
    assert s["AvailabilityZoneId"] == "use1-az2"
    assert s["AvailableIpAddressCount"] == 251
    assert s["DefaultForAz"] is False
    assert s["MapPublicIpOnLaunch"] is False
    assert s["OwnerId"] == A_ID
    assert s["SubnetArn"] == f"arn:aws:ec2:us-east-1:{A_ID}:subnet/{s['SubnetId']}"
    small = ec2.create_subnet(VpcId=vid, CidrBlock="10.60.9.16/28", AvailabilityZoneId="use1-az3")["Subnet"]
    assert small["AvailableIpAddressCount"] == 11
    assert small["AvailabilityZone"] == "us-east-1c"

    with expect_error("InvalidSubnet.Conflict"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.1.128/25")
    with expect_error("InvalidSubnet.Conflict"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.0.0/20")
    with expect_error("InvalidSubnet.Range"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.61.0.0/24")  # outside the VPC
    with expect_error("InvalidSubnet.Range"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.2.0/29")  # too small
    with expect_error("InvalidParameterValue"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.3.0/24", AvailabilityZone="us-east-1z")
    with expect_error("InvalidParameterValue"):
        ec2.create_subnet(VpcId=vid, CidrBlock="not-a-cidr")
    with expect_error("InvalidVpcID.NotFound"):
        ec2.create_subnet(VpcId="vpc-0123456789abcdef0", CidrBlock="10.60.3.0/24")

    # IPv6: a /64 inside the VPC's /56.
    v56 = ipaddress.ip_network(vpc_of(ec2, vid)["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"])
    sub64 = list(v56.subnets(new_prefix=64))
    s6 = ec2.create_subnet(VpcId=vid, CidrBlock="10.60.4.0/24", Ipv6CidrBlock=str(sub64[1]))["Subnet"]
    assoc = s6["Ipv6CidrBlockAssociationSet"]
    assert [a["Ipv6CidrBlock"] for a in assoc] == [str(sub64[1])]
    assert assoc[0]["Ipv6CidrBlockState"]["State"] in ("associating", "associated")
    with expect_error("InvalidSubnet.Conflict"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.5.0/24", Ipv6CidrBlock=str(sub64[1]))
    outside = ipaddress.ip_network("2001:db8:1234:5600::/64")
    with expect_error("InvalidSubnet.Range"):
        ec2.create_subnet(VpcId=vid, CidrBlock="10.60.5.0/24", Ipv6CidrBlock=str(outside))
    # An IPv6 block added later to an existing subnet.
    r = ec2.associate_subnet_cidr_block(SubnetId=s["SubnetId"], Ipv6CidrBlock=str(sub64[2]))
    assert r["SubnetId"] == s["SubnetId"]
    assert r["Ipv6CidrBlockAssociation"]["Ipv6CidrBlock"] == str(sub64[2])

    # Filters.
    got = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                        {"Name": "availability-zone", "Values": ["us-east-1b"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [s["SubnetId"]]
    got = ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["10.60.9.16/28"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [small["SubnetId"]]

    # Delete.
    ec2.delete_subnet(SubnetId=small["SubnetId"])
    with expect_error("InvalidSubnetID.NotFound"):
        ec2.describe_subnets(SubnetIds=[small["SubnetId"]])
    with expect_error("InvalidSubnetID.NotFound"):
        ec2.delete_subnet(SubnetId=small["SubnetId"])


def test_modify_subnet_attribute(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.62.0.0/16")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.62.0.0/24")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    got = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                        {"Name": "map-public-ip-on-launch", "Values": ["true"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [sid]
    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": False})
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["MapPublicIpOnLaunch"] is False
    # IPv6 auto-assign needs an IPv6 block on the subnet.
    with expect_error("InvalidParameterValue"):
        ec2.modify_subnet_attribute(SubnetId=sid, AssignIpv6AddressOnCreation={"Value": True})


# -- internet gateways and dependencies ----------------------------------------------------

def test_internet_gateway_lifecycle(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.63.0.0/16")
    g = ec2.create_internet_gateway(TagSpecifications=[
        {"ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": "gw"}]}])["InternetGateway"]
    gid = g["InternetGatewayId"]
    assert is_id("igw", gid)
    assert g["Attachments"] == []
    assert tags_of(g) == {"Name": "gw"}

    ec2.attach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    d = ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"][0]
    assert d["Attachments"] == [{"VpcId": vid, "State": "available"}]
    assert d["OwnerId"] == A_ID

    g2 = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    with expect_error("Resource.AlreadyAssociated"):
        ec2.attach_internet_gateway(InternetGatewayId=g2, VpcId=vid)
    other = make_vpc(ec2, "10.64.0.0/16")
    with expect_error("Resource.AlreadyAssociated"):
        ec2.attach_internet_gateway(InternetGatewayId=gid, VpcId=other)

    with expect_error("DependencyViolation"):
        ec2.delete_internet_gateway(InternetGatewayId=gid)
    with expect_error("DependencyViolation"):
        ec2.delete_vpc(VpcId=vid)

    with expect_error("Gateway.NotAttached"):
        ec2.detach_internet_gateway(InternetGatewayId=g2, VpcId=vid)
    ec2.detach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    assert ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"][0]["Attachments"] == []
    with expect_error("Gateway.NotAttached"):
        ec2.detach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    ec2.delete_internet_gateway(InternetGatewayId=gid)
    with expect_error("InvalidInternetGatewayID.NotFound"):
        ec2.describe_internet_gateways(InternetGatewayIds=[gid])
    with expect_error("InvalidInternetGatewayID.NotFound"):
        ec2.attach_internet_gateway(InternetGatewayId=gid, VpcId=vid)
    ec2.delete_vpc(VpcId=vid)


def test_delete_vpc_dependencies(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.65.0.0/16")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.65.0.0/24")["Subnet"]["SubnetId"]
    with expect_error("DependencyViolation") as h:
        ec2.delete_vpc(VpcId=vid)
    assert vid in h.error.response["Error"]["Message"]
    assert vpc_of(ec2, vid)["VpcId"] == vid
    ec2.delete_subnet(SubnetId=sid)
    ec2.delete_vpc(VpcId=vid)
    with expect_error("InvalidVpcID.NotFound"):
        ec2.describe_vpcs(VpcIds=[vid])
    # Its main route table, default security group and default network ACL went with it.
    by_vpc = [{"Name": "vpc-id", "Values": [vid]}]
    assert ec2.describe_route_tables(Filters=by_vpc)["RouteTables"] == []
    assert ec2.describe_security_groups(Filters=by_vpc)["SecurityGroups"] == []
    assert ec2.describe_network_acls(Filters=by_vpc)["NetworkAcls"] == []
    with expect_error("InvalidVpcID.NotFound"):
        ec2.delete_vpc(VpcId=vid)


# -- filters and pagination ---------------------------------------------------------------

def test_vpc_filters(client):
    ec2 = client("A")
    suite = f"filters-{uuid.uuid4().hex[:8]}"
    spec = lambda name: [{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name},
                                                         {"Key": "suite", "Value": suite}]}]
    web1 = make_vpc(ec2, "10.66.0.0/16", TagSpecifications=spec("web-1"))
    web2 = make_vpc(ec2, "10.67.0.0/16", TagSpecifications=spec("web-2"))
    db1 = make_vpc(ec2, "10.68.0.0/16", TagSpecifications=spec("db-1"))
    mine = {"Name": "tag:suite", "Values": [suite]}

    def ids(*filters):
        return {v["VpcId"] for v in ec2.describe_vpcs(Filters=list(filters))["Vpcs"]}

    assert ids(mine) == {web1, web2, db1}
    assert ids({"Name": "vpc-id", "Values": [web2]}) == {web2}
    assert ids({"Name": "cidr-block", "Values": ["10.68.0.0/16"]}) == {db1}
    assert ids({"Name": "cidr", "Values": ["10.68.0.0/16"]}) == {db1}
    assert ids(mine, {"Name": "tag:Name", "Values": ["web-*"]}) == {web1, web2}
    assert ids(mine, {"Name": "tag:Name", "Values": ["web-?"]}) == {web1, web2}
    assert ids(mine, {"Name": "tag:Name", "Values": ["web-1", "db-1"]}) == {web1, db1}  # values OR
    assert ids(mine, {"Name": "tag:Name", "Values": ["Web-1"]}) == set()  # case-sensitive
    assert ids(mine, {"Name": "tag-key", "Values": ["Name"]}) == {web1, web2, db1}
    assert ids({"Name": "tag-key", "Values": ["no-such-key-" + suite]}) == set()
    assert ids(mine, {"Name": "tag-value", "Values": ["db-*"]}) == {db1}
    assert ids(mine, {"Name": "is-default", "Values": ["false"]}) == {web1, web2, db1}
    default = ids({"Name": "is-default", "Values": ["true"]})
    assert len(default) == 1 and not default & {web1, web2, db1}
    assert ids(mine, {"Name": "owner-id", "Values": [A_ID]}) == {web1, web2, db1}
    assert ids(mine, {"Name": "owner-id", "Values": [B_ID]}) == set()
    assert ids(mine, {"Name": "state", "Values": ["available"]}) == {web1, web2, db1}
    # Filters AND together; combined with ids, both apply.
    assert ids({"Name": "vpc-id", "Values": [web1]}, {"Name": "tag:Name", "Values": ["db-1"]}) == set()
    got = ec2.describe_vpcs(VpcIds=[web1, db1], Filters=[{"Name": "tag:Name", "Values": ["web-*"]}])["Vpcs"]
    assert [v["VpcId"] for v in got] == [web1]


@pytest.mark.parametrize("op", ["describe_vpcs", "describe_subnets", "describe_internet_gateways"])
def test_unknown_filter(client, op):
    with expect_error("InvalidParameterValue"):
        getattr(client("A"), op)(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])


def test_paginate_vpcs(client):
    ec2 = client("A")
    made = {make_vpc(ec2) for _ in range(7)}
    everything = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]]
    assert len(everything) == len(set(everything))
    pages = list(ec2.get_paginator("describe_vpcs").paginate(MaxResults=5))
    assert len(pages) >= 2
    assert all(len(p["Vpcs"]) <= 5 for p in pages)
    assert all(len(p["Vpcs"]) == 5 for p in pages[:-1])
    seen = [v["VpcId"] for p in pages for v in p["Vpcs"]]
    assert len(seen) == len(set(seen)), "a VPC appeared on two pages"
    assert sorted(seen) == sorted(everything)
    assert made <= set(seen)
    raw = client("A", validate=False)
    with expect_error("InvalidParameterValue"):
        raw.describe_vpcs(MaxResults=4)
    with expect_error("InvalidParameterValue"):
        raw.describe_vpcs(MaxResults=1001)
    with expect_error(("InvalidNextToken", "InvalidPaginationToken")):
        raw.describe_vpcs(MaxResults=5, NextToken="not-a-token")


def test_paginate_subnets(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.69.0.0/16")
    made = {ec2.create_subnet(VpcId=vid, CidrBlock=f"10.69.{i}.0/24")["Subnet"]["SubnetId"] for i in range(12)}
    pages = list(ec2.get_paginator("describe_subnets").paginate(
        Filters=[{"Name": "vpc-id", "Values": [vid]}], MaxResults=5))
    assert [len(p["Subnets"]) for p in pages] == [5, 5, 2]
    seen = [s["SubnetId"] for p in pages for s in p["Subnets"]]
    assert len(seen) == 12 and set(seen) == made
    # Walking by hand with NextToken gives the same.
    first = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}], MaxResults=5)
    assert first.get("NextToken")
    second = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}], MaxResults=5,
                                  NextToken=first["NextToken"])
    assert not {s["SubnetId"] for s in first["Subnets"]} & {s["SubnetId"] for s in second["Subnets"]}


# -- tags ---------------------------------------------------------------------------------------

def test_tags(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.70.0.0/16")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.70.0.0/24")["Subnet"]["SubnetId"]
    ec2.create_tags(Resources=[vid, sid], Tags=[{"Key": "team", "Value": "net"}, {"Key": "empty", "Value": ""}])

    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid, sid]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in rows) == sorted([
        (vid, "vpc", "team", "net"), (vid, "vpc", "empty", ""),
        (sid, "subnet", "team", "net"), (sid, "subnet", "empty", "")])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid, sid]},
                                      {"Name": "key", "Values": ["team"]}])["Tags"]
    assert {t["ResourceId"] for t in rows} == {vid, sid}
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid, sid]},
                                      {"Name": "resource-type", "Values": ["subnet"]}])["Tags"]
    assert {t["ResourceId"] for t in rows} == {sid}

    # Overwrite by key.
    ec2.create_tags(Resources=[vid], Tags=[{"Key": "team", "Value": "platform"}])
    assert tags_of(vpc_of(ec2, vid)) == {"team": "platform", "empty": ""}
    # Delete with a non-matching value: no effect. With the matching value, or key only: gone.
    ec2.delete_tags(Resources=[vid], Tags=[{"Key": "team", "Value": "net"}])
    assert tags_of(vpc_of(ec2, vid)) == {"team": "platform", "empty": ""}
    ec2.delete_tags(Resources=[vid], Tags=[{"Key": "team", "Value": "platform"}])
    ec2.delete_tags(Resources=[vid], Tags=[{"Key": "empty"}])
    assert tags_of(vpc_of(ec2, vid)) == {}
    assert tags_of(ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]) == {"team": "net", "empty": ""}

    # EC2 allows any character in tags: they must survive signing, XML and storage.
    odd = {"Name with spaces": "héllo wörld ✓", "xml": "a&b<c>\"d'e", "=+:/@._-": "日本語"}
    ec2.create_tags(Resources=[vid], Tags=[{"Key": k, "Value": v} for k, v in odd.items()])
    assert tags_of(vpc_of(ec2, vid)) == odd
    got = ec2.describe_vpcs(Filters=[{"Name": "tag:xml", "Values": ["a&b<c>\"d'e"]}])["Vpcs"]
    assert [v["VpcId"] for v in got] == [vid]
    ec2.delete_tags(Resources=[vid])  # no Tags: removes them all
    assert tags_of(vpc_of(ec2, vid)) == {}

    # Errors.
    with expect_error("InvalidParameterValue"):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": "aws:reserved", "Value": "x"}])
    with expect_error("InvalidParameterValue"):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": "k" * 128, "Value": "x"}])
    with expect_error("InvalidParameterValue"):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": "k", "Value": "v" * 257}])
    with expect_error("TagLimitExceeded"):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    assert tags_of(vpc_of(ec2, vid)) == {}
    with expect_error("InvalidVpcID.NotFound"):
        ec2.create_tags(Resources=["vpc-0123456789abcdef0"], Tags=[{"Key": "k", "Value": "v"}])
    with expect_error("InvalidID"):
        ec2.create_tags(Resources=["bogus"], Tags=[{"Key": "k", "Value": "v"}])
