"""CreateDefaultVpc and CreateDefaultSubnet through boto3: refused while a
default VPC or a zone's default subnet exists; after the default VPC is
deleted, a new one comes with its gateway and a default subnet per zone."""

from __future__ import annotations

from helpers import expect_error


def default_vpc(ec2):
    vs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    return vs[0] if vs else None


def delete_default_vpc(ec2, vid: str):
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])[
            "InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=g["InternetGatewayId"], VpcId=vid)
        ec2.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vid)


def test_default_vpc_and_subnets(server_factory):
    s = server_factory()
    ec2 = s.client("A", "us-west-2")
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    old = default_vpc(ec2)
    assert old is not None
    with expect_error("DefaultVpcAlreadyExists") as h:
        ec2.create_default_vpc()
    assert h.error.response["Error"]["Message"] == "A Default VPC already exists for this account in this region."
    with expect_error("DefaultSubnetAlreadyExistsInAvailabilityZone"):
        ec2.create_default_subnet(AvailabilityZone=zones[0])

    delete_default_vpc(ec2, old["VpcId"])
    assert default_vpc(ec2) is None
    with expect_error("DefaultVpcDoesNotExist"):
        ec2.create_default_subnet(AvailabilityZone=zones[0])
    with expect_error("DryRunOperation", 412):
        ec2.create_default_vpc(DryRun=True)
    v = ec2.create_default_vpc()["Vpc"]
    assert v["IsDefault"] is True and v["CidrBlock"] == "172.31.0.0/16" and v["VpcId"] != old["VpcId"]
    assert default_vpc(ec2)["VpcId"] == v["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["Subnets"]
    assert sorted(x["AvailabilityZone"] for x in subnets) == sorted(zones)
    assert all(x["DefaultForAz"] and x["MapPublicIpOnLaunch"] for x in subnets)
    igws = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [v["VpcId"]]}])
    assert len(igws["InternetGateways"]) == 1
    # A zone's default subnet, deleted and made again.
    gone = [x for x in subnets if x["AvailabilityZone"] == zones[1]][0]
    ec2.delete_subnet(SubnetId=gone["SubnetId"])
    made = ec2.create_default_subnet(AvailabilityZone=zones[1])["Subnet"]
    assert made["DefaultForAz"] is True and made["AvailabilityZone"] == zones[1]
    assert made["CidrBlock"] == gone["CidrBlock"] and made["VpcId"] == v["VpcId"]
    with expect_error("InvalidParameterValue"):
        ec2.create_default_subnet(AvailabilityZone="us-east-1a")
    # Instances launched without a subnet land in the new default VPC.
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)["Instances"][0]
    assert inst["VpcId"] == v["VpcId"]
