"""AWS's exact answers where vpcd used to differ (issue 10, item 3), each pinned
through boto3: states in the answers of CreateVpc and AssociateVpcCidrBlock,
malformed group IDs, wording, zones of another region, unknown Dedicated Hosts."""

from __future__ import annotations

import pytest

from helpers import expect_error, make_vpc


def test_create_vpc_answers_pending_then_describes_available(client):
    ec2 = client("A")
    v = ec2.create_vpc(CidrBlock="10.38.0.0/16")["Vpc"]
    assert v["State"] == "pending"
    assert ec2.describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"][0]["State"] == "available"
    # The waiter SDKs and Terraform use sees it available.
    ec2.get_waiter("vpc_available").wait(VpcIds=[v["VpcId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 5})


def test_associate_vpc_cidr_block_answers_associating_then_associated(client):
    ec2 = client("A")
    vid = ec2.create_vpc(CidrBlock="10.38.0.0/16")["Vpc"]["VpcId"]
    a = ec2.associate_vpc_cidr_block(VpcId=vid, CidrBlock="10.39.0.0/16")["CidrBlockAssociation"]
    assert a["CidrBlockState"]["State"] == "associating"
    a6 = ec2.associate_vpc_cidr_block(VpcId=vid, AmazonProvidedIpv6CidrBlock=True)["Ipv6CidrBlockAssociation"]
    assert a6["Ipv6CidrBlockState"]["State"] == "associating"
    v = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]
    states = {c["AssociationId"]: c["CidrBlockState"]["State"] for c in v["CidrBlockAssociationSet"]}
    assert states[a["AssociationId"]] == "associated"
    assert v["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlockState"]["State"] == "associated"
    d = ec2.disassociate_vpc_cidr_block(AssociationId=a["AssociationId"])["CidrBlockAssociation"]
    assert d["CidrBlockState"]["State"] == "disassociating"


def test_malformed_group_ids_use_aws_wording(client):
    ec2 = client("A")
    with expect_error("InvalidGroupId.Malformed") as h:
        ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": ["nothex"]}])
    assert h.error.response["Error"]["Message"] == "The security group ID 'nothex' is malformed"
    with expect_error("InvalidGroupId.Malformed") as h:
        ec2.describe_security_groups(GroupIds=["xyz"])
    assert h.error.response["Error"]["Message"] == "The security group ID 'xyz' is malformed"
    # A well-formed unknown group simply matches nothing; a wildcard is not an ID.
    assert ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": ["sg-0123456789abcdef0"]}])["SecurityGroupRules"] == []
    ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": ["sg-*"]}])


def test_assign_ipv6_wording(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["CidrBlock"].replace(
        ".0.0/16", ".1.0/24"))["Subnet"]["SubnetId"]
    with expect_error("InvalidParameterValue") as h:
        ec2.modify_subnet_attribute(SubnetId=sid, AssignIpv6AddressOnCreation={"Value": True})
    assert h.error.response["Error"]["Message"] == (
        "Invalid value 'true' for assign-ipv6-address-on-creation. Cannot set assign-ipv6-address-on-creation "
        f"to true unless the subnet ({sid}) has an IPv6 CIDR block associated with it.")


def test_run_instances_placement(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    cidr = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["CidrBlock"]
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=cidr.replace(".0.0/16", ".1.0/24"))["Subnet"]["SubnetId"]
    with expect_error("InvalidParameterValue") as h:
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid,
                          Placement={"AvailabilityZone": "us-west-2a"})
    assert h.error.response["Error"]["Message"] == "Invalid availability zone: [us-west-2a]"
    with expect_error("InvalidHostID.NotFound") as h:
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid,
                          Placement={"HostId": "h-0123456789abcdef0"})
    assert h.error.response["Error"]["Message"] == "The host ID 'h-0123456789abcdef0' does not exist"
    with expect_error("InvalidHostID.Malformed"):
        ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid,
                          Placement={"HostId": "host-1"})
    assert ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [sid]}])["Reservations"] == []


# Issue 10, item 4: an ID with its type's prefix but an ill-formed rest is
# looked up and not found, as AWS answers; only a wrong prefix is Malformed.
# (method, parameter name, takes a list, prefix, NotFound code, Malformed code)
ID_KINDS = [
    ("describe_vpcs", "VpcIds", True, "vpc", "InvalidVpcID.NotFound", "InvalidVpcID.Malformed"),
    ("describe_subnets", "SubnetIds", True, "subnet", "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"),
    ("describe_route_tables", "RouteTableIds", True, "rtb", "InvalidRouteTableID.NotFound",
     "InvalidRouteTableId.Malformed"),
    ("describe_internet_gateways", "InternetGatewayIds", True, "igw", "InvalidInternetGatewayID.NotFound",
     "InvalidInternetGatewayId.Malformed"),
    ("describe_security_groups", "GroupIds", True, "sg", "InvalidGroup.NotFound", "InvalidGroupId.Malformed"),
    ("describe_network_acls", "NetworkAclIds", True, "acl", "InvalidNetworkAclID.NotFound",
     "InvalidNetworkAclId.Malformed"),
    ("describe_vpc_peering_connections", "VpcPeeringConnectionIds", True, "pcx",
     "InvalidVpcPeeringConnectionID.NotFound", "InvalidVpcPeeringConnectionId.Malformed"),
    ("describe_instances", "InstanceIds", True, "i", "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"),
    ("describe_network_interfaces", "NetworkInterfaceIds", True, "eni", "InvalidNetworkInterfaceID.NotFound",
     "InvalidNetworkInterfaceID.Malformed"),
    ("describe_nat_gateways", "NatGatewayIds", True, "nat", "NatGatewayNotFound", "NatGatewayMalformed"),
    ("describe_addresses", "AllocationIds", True, "eipalloc", "InvalidAllocationID.NotFound",
     "InvalidAllocationID.Malformed"),
    ("describe_volumes", "VolumeIds", True, "vol", "InvalidVolume.NotFound", "InvalidVolumeID.Malformed"),
    ("describe_managed_prefix_lists", "PrefixListIds", True, "pl", "InvalidPrefixListID.NotFound",
     "InvalidPrefixListId.Malformed"),
    ("describe_vpc_endpoints", "VpcEndpointIds", True, "vpce", "InvalidVpcEndpointId.NotFound",
     "InvalidVpcEndpointId.Malformed"),
    ("describe_egress_only_internet_gateways", "EgressOnlyInternetGatewayIds", True, "eigw",
     "InvalidEgressOnlyInternetGatewayId.NotFound", "InvalidEgressOnlyInternetGatewayId.Malformed"),
    ("describe_dhcp_options", "DhcpOptionsIds", True, "dopt", "InvalidDhcpOptionID.NotFound",
     "InvalidDhcpOptionsId.Malformed"),
    ("describe_network_insights_paths", "NetworkInsightsPathIds", True, "nip",
     "InvalidNetworkInsightsPathId.NotFound", "InvalidNetworkInsightsPathId.Malformed"),
    ("delete_subnet_cidr_reservation", "SubnetCidrReservationId", False, "scr",
     "InvalidSubnetCidrReservationID.NotFound", "InvalidSubnetCidrReservationID.Malformed"),
]


@pytest.mark.parametrize("method,param,listed,prefix,not_found,malformed", ID_KINDS,
                         ids=[k[3] for k in ID_KINDS])
def test_prefix_correct_but_ill_formed_ids_are_not_found(client, method, param, listed, prefix, not_found,
                                                         malformed):
    ec2 = client("A")
    call = getattr(ec2, method)
    bad = f"{prefix}-does_not_exist"
    with expect_error(not_found) as h:
        call(**{param: [bad] if listed else bad})
    assert bad in h.error.response["Error"]["Message"]
    # A wrong or missing prefix is still Malformed.
    for wrong in ("does_not_exist", f"{prefix}-", f"x{prefix}-0123456789abcdef0"):
        with expect_error(malformed):
            call(**{param: [wrong] if listed else wrong})
