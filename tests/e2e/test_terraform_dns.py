"""Terraform's DHCP options and Route 53 private zone resources against vpcd.

The same set-up as ``test_terraform.py`` (the real CLI, hashicorp/aws 5.100.0
from a local mirror; skipped with the reason printed where they are absent):
``aws_vpc_dhcp_options`` with every key, ``aws_vpc_dhcp_options_association``,
``aws_route53_zone`` (private, two ``vpc`` blocks) and ``aws_route53_record``
(A, CNAME, TXT, SRV, an alias to an instance's name); ``apply``, ``plan
-detailed-exitcode`` (must find nothing to do), ``destroy``; boto3 checks
what exists in between and that nothing is left.
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
resource "aws_vpc" "app" {
  cidr_block           = "10.30.0.0/16"
  enable_dns_hostnames = true
}
resource "aws_vpc" "ops" {
  cidr_block           = "10.31.0.0/16"
  enable_dns_hostnames = true
}
resource "aws_vpc_dhcp_options" "corp" {
  domain_name          = "corp.example"
  domain_name_servers  = ["AmazonProvidedDNS"]
  ntp_servers          = ["169.254.169.123"]
  netbios_name_servers = ["10.30.0.10"]
  netbios_node_type    = 2
  tags                 = { Name = "corp" }
}
resource "aws_vpc_dhcp_options_association" "app" {
  vpc_id          = aws_vpc.app.id
  dhcp_options_id = aws_vpc_dhcp_options.corp.id
}
resource "aws_subnet" "app" {
  vpc_id     = aws_vpc.app.id
  cidr_block = "10.30.1.0/24"
}
resource "aws_instance" "db" {
  ami           = "ami-12345678"
  instance_type = "t3.micro"
  subnet_id     = aws_subnet.app.id
  private_ip    = "10.30.1.10"
}
resource "aws_route53_zone" "corp" {
  name    = "corp.example"
  comment = "private"
  vpc {
    vpc_id = aws_vpc.app.id
  }
  vpc {
    vpc_id = aws_vpc.ops.id
  }
  tags = { env = "test" }
}
resource "aws_route53_record" "db" {
  zone_id = aws_route53_zone.corp.zone_id
  name    = "db.corp.example"
  type    = "A"
  ttl     = 60
  records = [aws_instance.db.private_ip]
}
resource "aws_route53_record" "www" {
  zone_id = aws_route53_zone.corp.zone_id
  name    = "www"
  type    = "CNAME"
  ttl     = 300
  records = ["db.corp.example"]
}
resource "aws_route53_record" "txt" {
  zone_id = aws_route53_zone.corp.zone_id
  name    = "corp.example"
  type    = "TXT"
  ttl     = 300
  records = ["v=spf1 -all"]
}
resource "aws_route53_record" "srv" {
  zone_id = aws_route53_zone.corp.zone_id
  name    = "_pg._tcp.corp.example"
  type    = "SRV"
  ttl     = 300
  records = ["1 5 5432 db.corp.example"]
}
resource "aws_route53_record" "app" {
  zone_id = aws_route53_zone.corp.zone_id
  name    = "app.corp.example"
  type    = "A"
  alias {
    name                   = aws_instance.db.private_dns
    zone_id                = aws_route53_zone.corp.zone_id
    evaluate_target_health = false
  }
}
"""


def run_terraform(server_factory, tmp_path, main: str, check_applied, check_destroyed):
    require_terraform("test_terraform_dns")
    t0 = time.monotonic()
    s = server_factory()
    tf = Terraform(s, tmp_path, main + provider_block(s, "A", "us-east-1",
                                                      services=("ec2", "sts", "route53")))
    tf.init_and_apply()
    check_applied(s)
    tf.plan_is_empty("after the apply")
    tf.destroy()
    check_destroyed(s)
    print(f"\nterraform init/apply/plan/destroy against vpcd: {time.monotonic() - t0:.1f}s")


def test_terraform_dhcp_options_and_a_private_zone(server_factory, tmp_path):
    def applied(s):
        ec2 = s.client("A")
        sets = {d["DhcpOptionsId"]: d for d in ec2.describe_dhcp_options()["DhcpOptions"]}
        corp = [d for d in sets.values() if {"Key": "Name", "Value": "corp"} in d.get("Tags", [])]
        assert len(corp) == 1, sets
        conf = {c["Key"]: [v["Value"] for v in c["Values"]] for c in corp[0]["DhcpConfigurations"]}
        assert conf == {"domain-name": ["corp.example"], "domain-name-servers": ["AmazonProvidedDNS"],
                        "ntp-servers": ["169.254.169.123"], "netbios-name-servers": ["10.30.0.10"],
                        "netbios-node-type": ["2"]}, conf
        by_cidr = {v["CidrBlock"]: v["DhcpOptionsId"] for v in ec2.describe_vpcs()["Vpcs"]}
        assert by_cidr["10.30.0.0/16"] == corp[0]["DhcpOptionsId"]
        assert by_cidr["10.31.0.0/16"] != corp[0]["DhcpOptionsId"]
        r53 = s.client("A", service="route53")
        zones = r53.list_hosted_zones()["HostedZones"]
        assert [(z["Name"], z["Config"]) for z in zones] == [("corp.example.", {"Comment": "private",
                                                                                 "PrivateZone": True})]
        zid = zones[0]["Id"]
        vpcs = {v["VPCId"] for v in r53.get_hosted_zone(Id=zid)["VPCs"]}
        vpc_ids = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]}
        assert vpcs == vpc_ids
        sets = {(r["Name"], r["Type"]): r for r in r53.list_resource_record_sets(HostedZoneId=zid)[
            "ResourceRecordSets"]}
        assert sets[("db.corp.example.", "A")]["ResourceRecords"] == [{"Value": "10.30.1.10"}]
        assert sets[("www.corp.example.", "CNAME")]["ResourceRecords"] == [{"Value": "db.corp.example"}]
        assert sets[("app.corp.example.", "A")]["AliasTarget"]["DNSName"] == "ip-10-30-1-10.ec2.internal."
        assert ("_pg._tcp.corp.example.", "SRV") in sets and ("corp.example.", "TXT") in sets
        tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zid.split("/")[-1])
        assert tags["ResourceTagSet"]["Tags"] == [{"Key": "env", "Value": "test"}]

    def destroyed(s):
        ec2 = s.client("A")
        assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
        assert len(ec2.describe_dhcp_options()["DhcpOptions"]) == 1      # the default set only
        assert s.client("A", service="route53").list_hosted_zones()["HostedZones"] == []

    run_terraform(server_factory, tmp_path, MAIN, applied, destroyed)


HOSTNAMES = """\
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "5.100.0" }
  }
}
resource "aws_vpc" "v6" {
  cidr_block                       = "10.32.0.0/16"
  assign_generated_ipv6_cidr_block = true
  enable_dns_hostnames             = true
}
resource "aws_subnet" "v6" {
  vpc_id                                         = aws_vpc.v6.id
  cidr_block                                     = "10.32.1.0/24"
  ipv6_cidr_block                                = cidrsubnet(aws_vpc.v6.ipv6_cidr_block, 8, 1)
  private_dns_hostname_type_on_launch            = "resource-name"
  enable_resource_name_dns_a_record_on_launch    = true
  enable_resource_name_dns_aaaa_record_on_launch = true
}
resource "aws_instance" "web" {
  ami                = "ami-12345678"
  instance_type      = "t3.micro"
  subnet_id          = aws_subnet.v6.id
  ipv6_address_count = 1
  private_dns_name_options {
    hostname_type                        = "ip-name"
    enable_resource_name_dns_a_record    = true
    enable_resource_name_dns_aaaa_record = false
  }
}
"""


def test_terraform_subnet_and_instance_hostname_options(server_factory, tmp_path):
    def applied(s):
        ec2 = s.client("A")
        sub = [x for x in ec2.describe_subnets()["Subnets"] if x["CidrBlock"] == "10.32.1.0/24"]
        assert len(sub) == 1, sub
        assert sub[0]["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "resource-name",
                                                           "EnableResourceNameDnsARecord": True,
                                                           "EnableResourceNameDnsAAAARecord": True}
        insts = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        assert len(insts) == 1, insts
        assert insts[0]["PrivateDnsNameOptions"] == {"HostnameType": "ip-name",
                                                     "EnableResourceNameDnsARecord": True,
                                                     "EnableResourceNameDnsAAAARecord": False}
        assert insts[0]["PrivateDnsName"].startswith("ip-10-32-1-"), insts[0]["PrivateDnsName"]

    def destroyed(s):
        ec2 = s.client("A")
        assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []

    run_terraform(server_factory, tmp_path, HOSTNAMES, applied, destroyed)
