"""A production-style VPC through the real Terraform CLI and hashicorp/aws
against vpcd: IPv4 and IPv6, an internet gateway and an egress-only one, a
customer-managed prefix list used by a security group (inline and as an
`aws_vpc_security_group_ingress_rule`) and by a route, a gateway endpoint for
S3 on the private route table, and the VPC's default security group, route
table and network ACL adopted with `aws_default_*`.

``init``, ``apply``, a change of the prefix list and of a rule's description
(applied in place), ``plan -detailed-exitcode`` (nothing to do), ``destroy``;
then boto3 checks that nothing is left. Skipped, with the reason printed,
where ``terraform`` or the provider mirror is absent (see test_terraform.py).
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

variable "office_cidrs" {
  type    = list(string)
  default = ["198.51.100.0/24", "203.0.113.0/24"]
}

variable "https_description" {
  type    = string
  default = "https from the office"
}

resource "aws_vpc" "main" {
  provider                         = aws.a
  cidr_block                       = "10.40.0.0/16"
  assign_generated_ipv6_cidr_block = true
  enable_dns_hostnames             = true
  tags = { Name = "prod" }
}

resource "aws_default_security_group" "default" {
  provider = aws.a
  vpc_id   = aws_vpc.main.id
  tags     = { Name = "prod-default-locked" }
}

resource "aws_default_route_table" "default" {
  provider               = aws.a
  default_route_table_id = aws_vpc.main.default_route_table_id
  tags                   = { Name = "prod-default" }
}

resource "aws_default_network_acl" "default" {
  provider               = aws.a
  default_network_acl_id = aws_vpc.main.default_network_acl_id
  ingress {
    protocol   = -1
    rule_no    = 100
    action     = "allow"
    cidr_block = "0.0.0.0/0"
    from_port  = 0
    to_port    = 0
  }
  egress {
    protocol   = -1
    rule_no    = 100
    action     = "allow"
    cidr_block = "0.0.0.0/0"
    from_port  = 0
    to_port    = 0
  }
  subnet_ids = [aws_subnet.public.id, aws_subnet.private.id]
  lifecycle { ignore_changes = [subnet_ids] }
}

resource "aws_subnet" "public" {
  provider                = aws.a
  vpc_id                  = aws_vpc.main.id
  cidr_block              = "10.40.1.0/24"
  availability_zone       = "us-east-1a"
  map_public_ip_on_launch = true
  tags = { Name = "prod-public" }
}

resource "aws_subnet" "private" {
  provider                        = aws.a
  vpc_id                          = aws_vpc.main.id
  cidr_block                      = "10.40.2.0/24"
  ipv6_cidr_block                 = cidrsubnet(aws_vpc.main.ipv6_cidr_block, 8, 2)
  assign_ipv6_address_on_creation = true
  availability_zone               = "us-east-1b"
  tags = { Name = "prod-private" }
}

resource "aws_internet_gateway" "igw" {
  provider = aws.a
  vpc_id   = aws_vpc.main.id
}

resource "aws_egress_only_internet_gateway" "eigw" {
  provider = aws.a
  vpc_id   = aws_vpc.main.id
  tags     = { Name = "prod-eigw" }
}

resource "aws_route_table" "public" {
  provider = aws.a
  vpc_id   = aws_vpc.main.id
}

# Routes as their own resources (a table's inline routes and aws_route do not mix).
resource "aws_route" "public_default" {
  provider               = aws.a
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.igw.id
}

resource "aws_route_table_association" "public" {
  provider       = aws.a
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  provider = aws.a
  vpc_id   = aws_vpc.main.id
}

resource "aws_route" "private_v6_out" {
  provider                    = aws.a
  route_table_id              = aws_route_table.private.id
  destination_ipv6_cidr_block = "::/0"
  egress_only_gateway_id      = aws_egress_only_internet_gateway.eigw.id
}

resource "aws_route_table_association" "private" {
  provider       = aws.a
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}

resource "aws_ec2_managed_prefix_list" "office" {
  provider       = aws.a
  name           = "office"
  address_family = "IPv4"
  max_entries    = 5
  dynamic "entry" {
    for_each = var.office_cidrs
    content {
      cidr        = entry.value
      description = "office ${entry.key}"
    }
  }
  tags = { Name = "office" }
}

resource "aws_route" "office_via_igw" {
  provider                   = aws.a
  route_table_id             = aws_route_table.public.id
  destination_prefix_list_id = aws_ec2_managed_prefix_list.office.id
  gateway_id                 = aws_internet_gateway.igw.id
}

resource "aws_security_group" "web" {
  provider    = aws.a
  name        = "web"
  description = "web servers"
  vpc_id      = aws_vpc.main.id
  ingress {
    description     = "ssh from the office"
    from_port       = 22
    to_port         = 22
    protocol        = "tcp"
    prefix_list_ids = [aws_ec2_managed_prefix_list.office.id]
  }
  egress {
    from_port        = 0
    to_port          = 0
    protocol         = "-1"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }
}

resource "aws_security_group" "app" {
  provider    = aws.a
  name        = "app"
  description = "app servers"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "app_https" {
  provider          = aws.a
  security_group_id = aws_security_group.app.id
  prefix_list_id    = aws_ec2_managed_prefix_list.office.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = var.https_description
}

resource "aws_vpc_endpoint" "s3" {
  provider          = aws.a
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.us-east-1.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  tags              = { Name = "s3" }
}

data "aws_ec2_managed_prefix_list" "s3" {
  provider = aws.a
  name     = "com.amazonaws.us-east-1.s3"
}

output "s3_prefix_list" {
  value = aws_vpc_endpoint.s3.prefix_list_id
}
"""


def test_terraform_production_vpc(server_factory, tmp_path):
    require_terraform("test_terraform_production")
    t0 = time.monotonic()
    s = server_factory()
    tf = Terraform(s, tmp_path, MAIN + provider_block(s, "A", "us-east-1", alias="a"))
    changed = ("-var", 'office_cidrs=["198.51.100.0/24","203.0.113.0/24","192.0.2.0/24"]',
               "-var", "https_description=https from the offices")

    tf.init_and_apply()
    ec2 = s.client("A")
    [vpc] = [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    vid = vpc["VpcId"]
    [pl] = [p for p in ec2.describe_managed_prefix_lists()["PrefixLists"] if p["OwnerId"] != "AWS"]
    assert sorted(e["Cidr"] for e in ec2.get_managed_prefix_list_entries(PrefixListId=pl["PrefixListId"])[
        "Entries"]) == ["198.51.100.0/24", "203.0.113.0/24"]
    [ep] = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    tables = {t["RouteTableId"]: t for t in ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"]}
    [private] = [t for t in tables.values() if ep["RouteTableIds"] == [t["RouteTableId"]]]
    kinds = {r.get("DestinationPrefixListId") or r.get("DestinationIpv6CidrBlock") or r.get("DestinationCidrBlock"):
             r.get("GatewayId") or r.get("EgressOnlyInternetGatewayId") for r in private["Routes"]}
    assert kinds["::/0"].startswith("eigw-") and kinds[tf("output", "-raw", "s3_prefix_list").stdout] == \
        ep["VpcEndpointId"], kinds
    assoc = ec2.get_managed_prefix_list_associations(PrefixListId=pl["PrefixListId"])["PrefixListAssociations"]
    assert len(assoc) == 3, assoc  # two groups and the public route table

    # Changes made in place: a new entry (a new version of the list, the route re-expanded)
    # and a rule's new description (ModifySecurityGroupRules).
    tf("apply", "-auto-approve", "-input=false", *changed)
    got = ec2.describe_managed_prefix_lists(PrefixListIds=[pl["PrefixListId"]])["PrefixLists"][0]
    assert got["Version"] == 2
    descs = {r.get("Description") for r in ec2.describe_security_group_rules()["SecurityGroupRules"]}
    assert "https from the offices" in descs
    # Planned again: nothing to do (this also covers the first apply's state, as
    # the change touched only the list's entries and one description).
    tf.plan_is_empty("after the change", *changed)

    tf.destroy("-var", 'office_cidrs=["198.51.100.0/24","203.0.113.0/24","192.0.2.0/24"]')
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    assert [p for p in ec2.describe_managed_prefix_lists()["PrefixLists"] if p["OwnerId"] != "AWS"] == []
    assert ec2.describe_vpc_endpoints()["VpcEndpoints"] == []
    assert ec2.describe_egress_only_internet_gateways()["EgressOnlyInternetGateways"] == []
    assert [g for g in ec2.describe_internet_gateways()["InternetGateways"]
            if g["Attachments"] and g["Attachments"][0]["VpcId"] == vid] == []
    print(f"\nterraform production VPC apply/plan/change/destroy against vpcd: {time.monotonic() - t0:.1f}s")
