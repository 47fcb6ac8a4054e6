"""The real Terraform CLI with the hashicorp/aws provider against vpcd.

Needs ``terraform`` on PATH and the provider (hashicorp/aws 5.100.0) in a local
filesystem mirror at ``/opt/tf-plugins`` (``$VPCD_TF_PLUGINS`` overrides it);
neither comes from a package registry, so the test is skipped, with the reason
printed, where they are absent.

The configuration is the seeds' two-account inter-region workflow (two VPCs
and subnets, a peering and its accepter, routes both ways, a security group)
with an ``aws_instance`` on each side, plus an internet gateway, a public
subnet and route table, a NAT gateway with its Elastic IP, an Elastic IP
associated with an instance, and an ``aws_network_interface`` attached to one.
``init``, ``apply``, ``plan -detailed-exitcode`` (must find nothing to do),
``destroy``; then boto3 checks that nothing is left.
"""

from __future__ import annotations

import time

from terraform_kit import Terraform, provider_block, require_terraform

MAIN = """\
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "5.100.0" }
  }
}
resource "aws_vpc" "a" {
  provider   = aws.a
  cidr_block = "10.10.0.0/16"
  tags       = { Name = "a" }
}
resource "aws_subnet" "a" {
  provider          = aws.a
  vpc_id            = aws_vpc.a.id
  cidr_block        = "10.10.1.0/24"
  availability_zone = "us-east-1a"
}
resource "aws_vpc" "b" {
  provider   = aws.b
  cidr_block = "10.20.0.0/16"
}
resource "aws_subnet" "b" {
  provider          = aws.b
  vpc_id            = aws_vpc.b.id
  cidr_block        = "10.20.1.0/24"
  availability_zone = "us-west-2a"
}
resource "aws_vpc_peering_connection" "ab" {
  provider      = aws.a
  vpc_id        = aws_vpc.a.id
  peer_vpc_id   = aws_vpc.b.id
  peer_owner_id = "222222222222"
  peer_region   = "us-west-2"
  auto_accept   = false
}
resource "aws_vpc_peering_connection_accepter" "b" {
  provider                  = aws.b
  vpc_peering_connection_id = aws_vpc_peering_connection.ab.id
  auto_accept               = true
}
resource "aws_route" "a_to_b" {
  provider                  = aws.a
  route_table_id            = aws_vpc.a.main_route_table_id
  destination_cidr_block    = aws_vpc.b.cidr_block
  vpc_peering_connection_id = aws_vpc_peering_connection.ab.id
  depends_on                = [aws_vpc_peering_connection_accepter.b]
}
resource "aws_route" "b_to_a" {
  provider                  = aws.b
  route_table_id            = aws_vpc.b.main_route_table_id
  destination_cidr_block    = aws_vpc.a.cidr_block
  vpc_peering_connection_id = aws_vpc_peering_connection.ab.id
  depends_on                = [aws_vpc_peering_connection_accepter.b]
}
resource "aws_security_group" "a" {
  provider = aws.a
  name     = "ping-from-b"
  vpc_id   = aws_vpc.a.id
  ingress {
    from_port   = -1
    to_port     = -1
    protocol    = "icmp"
    cidr_blocks = [aws_vpc.b.cidr_block]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
resource "aws_instance" "a" {
  provider               = aws.a
  ami                    = "ami-12345678"
  instance_type          = "t3.micro"
  subnet_id              = aws_subnet.a.id
  private_ip             = "10.10.1.10"
  vpc_security_group_ids = [aws_security_group.a.id]
  tags                   = { Name = "web-a" }
  metadata_options {
    http_tokens = "required"
  }
  root_block_device {
    volume_size = 10
    tags        = { Name = "root-a" }
  }
}
resource "aws_instance" "b" {
  provider      = aws.b
  ami           = "ami-87654321"
  instance_type = "t3.small"
  subnet_id     = aws_subnet.b.id
  private_ip    = "10.20.1.10"
  credit_specification {
    cpu_credits = "standard"
  }
}
resource "aws_internet_gateway" "a" {
  provider = aws.a
  vpc_id   = aws_vpc.a.id
}
resource "aws_subnet" "a_public" {
  provider                = aws.a
  vpc_id                  = aws_vpc.a.id
  cidr_block              = "10.10.2.0/24"
  availability_zone       = "us-east-1a"
  map_public_ip_on_launch = true
}
resource "aws_route_table" "a_public" {
  provider = aws.a
  vpc_id   = aws_vpc.a.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.a.id
  }
}
resource "aws_route_table_association" "a_public" {
  provider       = aws.a
  subnet_id      = aws_subnet.a_public.id
  route_table_id = aws_route_table.a_public.id
}
resource "aws_eip" "nat" {
  provider = aws.a
  domain   = "vpc"
}
resource "aws_nat_gateway" "a" {
  provider      = aws.a
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.a_public.id
  depends_on    = [aws_internet_gateway.a]
}
resource "aws_eip" "web" {
  provider   = aws.a
  domain     = "vpc"
  instance   = aws_instance.a.id
  depends_on = [aws_internet_gateway.a]
}
resource "aws_network_interface" "a_extra" {
  provider        = aws.a
  subnet_id       = aws_subnet.a.id
  private_ips     = ["10.10.1.20"]
  security_groups = [aws_security_group.a.id]
  attachment {
    instance     = aws_instance.a.id
    device_index = 1
  }
  # AssociateAddress with InstanceId needs a single interface (as in EC2).
  depends_on = [aws_eip.web]
}
"""


def test_terraform_two_accounts_with_instances_eip_and_nat(server_factory, tmp_path):
    require_terraform("test_terraform")
    t0 = time.monotonic()
    s = server_factory()
    providers = provider_block(s, "A", "us-east-1", alias="a") + \
        provider_block(s, "B", "us-west-2", alias="b")
    tf = Terraform(s, tmp_path, MAIN + providers)
    tf.init_and_apply()

    a, b = s.client("A"), s.client("B", region="us-west-2")
    running = [i for r in a.describe_instances()["Reservations"] for i in r["Instances"]]
    assert [i["State"]["Name"] for i in running] == ["running"]
    ia = running[0]
    assert ia["PrivateIpAddress"] == "10.10.1.10"
    assert ia["MetadataOptions"]["HttpTokens"] == "required"
    assert len(ia["NetworkInterfaces"]) == 2
    web = [x for x in a.describe_addresses()["Addresses"] if x.get("InstanceId")]
    assert len(web) == 1 and web[0]["InstanceId"] == ia["InstanceId"]
    assert [g["State"] for g in a.describe_nat_gateways()["NatGateways"]] == ["available"]
    root = a.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                        "Values": [ia["InstanceId"]]}])["Volumes"]
    assert [v["Size"] for v in root] == [10]
    ib = b.describe_instances()["Reservations"][0]["Instances"][0]
    assert ib["InstanceType"] == "t3.small"
    assert b.describe_instance_credit_specifications(InstanceIds=[ib["InstanceId"]])[
        "InstanceCreditSpecifications"][0]["CpuCredits"] == "standard"

    tf.plan_is_empty("after the apply")

    tf.destroy()
    for ec2 in (a, b):
        assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
        states = {i["State"]["Name"] for r in ec2.describe_instances()["Reservations"]
                  for i in r["Instances"]}
        assert states <= {"terminated"}
        assert ec2.describe_addresses()["Addresses"] == []
        assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []
        assert ec2.describe_volumes()["Volumes"] == []
        assert {g["State"] for g in ec2.describe_nat_gateways()["NatGateways"]} <= {"deleted"}
        assert ec2.describe_vpc_peering_connections(Filters=[
            {"Name": "status-code", "Values": ["active", "pending-acceptance"]}])[
            "VpcPeeringConnections"] == []
        assert [g for g in ec2.describe_security_groups()["SecurityGroups"]
                if g["GroupName"] != "default"] == []
    print(f"\nterraform init/apply/plan/destroy against vpcd: {time.monotonic() - t0:.1f}s")
