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

import os
import subprocess
import time

import pytest

from test_terraform import CLI_CONFIG, PLUGINS, _skip_reason

PROVIDER = """\
provider "aws" {
  region                      = "%(region)s"
  access_key                  = "%(akid)s"
  secret_key                  = "%(secret)s"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    ec2     = "%(url)s"
    sts     = "%(url)s"
    route53 = "%(url)s"
  }
}
"""

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
    reason = _skip_reason()
    if reason:
        print(f"\nSKIP test_terraform_dns: {reason}")
        pytest.skip(reason)
    t0 = time.monotonic()
    s = server_factory()
    (tmp_path / "cli.tfrc").write_text(CLI_CONFIG % PLUGINS)
    _, akid, secret = s.creds("A")
    provider = PROVIDER % {"region": "us-east-1", "akid": akid, "secret": secret, "url": s.url}
    (tmp_path / "main.tf").write_text(main + provider)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(tmp_path / "cli.tfrc"),
           "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("TF_LOG", None)

    def tf(*args: str, ok=(0,)) -> subprocess.CompletedProcess:
        p = subprocess.run(["terraform", *args, "-no-color"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode in ok, (
            f"terraform {' '.join(args)} -> {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
            f"\n--- server log ---\n{s.log()[-2000:]}")
        return p

    tf("init", "-input=false")
    tf("apply", "-auto-approve", "-input=false")
    check_applied(s)
    plan = tf("plan", "-detailed-exitcode", "-input=false", ok=(0, 2))
    assert plan.returncode == 0, f"a second plan wants changes:\n{plan.stdout[-6000:]}"
    tf("destroy", "-auto-approve", "-input=false")
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
