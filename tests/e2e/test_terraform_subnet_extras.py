"""Subnet CIDR reservations and the remaining VPC and subnet attributes
through the real Terraform CLI and hashicorp/aws against vpcd:
`aws_ec2_subnet_cidr_reservation` (IPv4 explicit and prefix, IPv6), an
`aws_vpc` with `enable_network_address_usage_metrics` whose tenancy goes from
`dedicated` to `default` in place (ModifyVpcTenancy), an `aws_subnet` with
`enable_dns64`, and an IPv6-only `aws_subnet` (`ipv6_native`). ``apply``, the in-place change, ``plan -detailed-exitcode``
(nothing to do), ``destroy``; boto3 checks in between. Skipped, with the reason
printed, where ``terraform`` or the provider mirror is absent."""

from __future__ import annotations

import time

from terraform_kit import Terraform, provider_block, require_terraform

MAIN = """\
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "5.100.0" }
  }
}

variable "tenancy" {
  type    = string
  default = "dedicated"
}

resource "aws_vpc" "main" {
  provider                             = aws.a
  cidr_block                           = "10.41.0.0/16"
  assign_generated_ipv6_cidr_block     = true
  instance_tenancy                     = var.tenancy
  enable_network_address_usage_metrics = true
  tags = { Name = "extras" }
}

resource "aws_subnet" "main" {
  provider          = aws.a
  vpc_id            = aws_vpc.main.id
  cidr_block        = "10.41.1.0/24"
  ipv6_cidr_block   = cidrsubnet(aws_vpc.main.ipv6_cidr_block, 8, 1)
  enable_dns64      = true
  availability_zone = "us-east-1a"
}

resource "aws_subnet" "v6only" {
  provider                                       = aws.a
  vpc_id                                         = aws_vpc.main.id
  ipv6_native                                    = true
  ipv6_cidr_block                                = cidrsubnet(aws_vpc.main.ipv6_cidr_block, 8, 2)
  assign_ipv6_address_on_creation                = true
  enable_resource_name_dns_aaaa_record_on_launch = true
  availability_zone                              = "us-east-1a"
}

resource "aws_ec2_subnet_cidr_reservation" "appliances" {
  provider         = aws.a
  subnet_id        = aws_subnet.main.id
  cidr_block       = "10.41.1.16/28"
  reservation_type = "explicit"
  description      = "appliances"
}

resource "aws_ec2_subnet_cidr_reservation" "prefixes" {
  provider         = aws.a
  subnet_id        = aws_subnet.main.id
  cidr_block       = "10.41.1.64/26"
  reservation_type = "prefix"
}

resource "aws_ec2_subnet_cidr_reservation" "v6" {
  provider         = aws.a
  subnet_id        = aws_subnet.main.id
  cidr_block       = cidrsubnet(aws_subnet.main.ipv6_cidr_block, 16, 1)
  reservation_type = "prefix"
}
"""


def test_terraform_subnet_reservations_and_attributes(server_factory, tmp_path):
    require_terraform("test_terraform_subnet_extras")
    t0 = time.monotonic()
    s = server_factory()
    tf = Terraform(s, tmp_path, MAIN + provider_block(s, "A", "us-east-1", alias="a"))
    tf.init_and_apply()
    ec2 = s.client("A")
    [vpc] = [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    vid = vpc["VpcId"]
    assert vpc["InstanceTenancy"] == "dedicated"
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableNetworkAddressUsageMetrics")[
        "EnableNetworkAddressUsageMetrics"]["Value"] is True
    [sub] = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                          {"Name": "ipv6-native", "Values": ["false"]}])["Subnets"]
    assert sub["EnableDns64"] is True
    [v6only] = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                             {"Name": "ipv6-native", "Values": ["true"]}])["Subnets"]
    assert "CidrBlock" not in v6only and v6only["AssignIpv6AddressOnCreation"] is True
    assert v6only["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "resource-name",
                                                       "EnableResourceNameDnsARecord": False,
                                                       "EnableResourceNameDnsAAAARecord": True}
    got = ec2.get_subnet_cidr_reservations(SubnetId=sub["SubnetId"])
    assert sorted((r["Cidr"], r["ReservationType"]) for r in got["SubnetIpv4CidrReservations"]) == [
        ("10.41.1.16/28", "explicit"), ("10.41.1.64/26", "prefix")]
    assert [r["ReservationType"] for r in got["SubnetIpv6CidrReservations"]] == ["prefix"]
    tf.plan_is_empty("after the first apply")

    # The tenancy goes to default in place (ModifyVpcTenancy), not by replacement.
    tf("apply", "-auto-approve", "-input=false", "-var", "tenancy=default")
    [vpc] = [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    assert vpc["VpcId"] == vid and vpc["InstanceTenancy"] == "default"
    tf.plan_is_empty("after the tenancy change", "-var", "tenancy=default")

    tf.destroy("-var", "tenancy=default")
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    print(f"\nterraform subnet reservations and attributes apply/plan/change/destroy against vpcd: "
          f"{time.monotonic() - t0:.1f}s")
