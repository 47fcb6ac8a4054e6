"""Subnet CIDR reservations and the remaining VPC and subnet attributes
through the real Terraform CLI and hashicorp/aws against vpcd:
`aws_ec2_subnet_cidr_reservation` (IPv4 explicit and prefix, IPv6), an
`aws_vpc` with `enable_network_address_usage_metrics` whose tenancy goes from
`dedicated` to `default` in place (ModifyVpcTenancy), and an `aws_subnet` with
`enable_dns64`. ``apply``, the in-place change, ``plan -detailed-exitcode``
(nothing to do), ``destroy``; boto3 checks in between. Skipped, with the reason
printed, where ``terraform`` or the provider mirror is absent."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from test_terraform import CLI_CONFIG, PLUGINS, PROVIDER, _skip_reason

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
    reason = _skip_reason()
    if reason:
        print(f"\nSKIP test_terraform_subnet_extras: {reason}")
        pytest.skip(reason)
    t0 = time.monotonic()
    s = server_factory()
    (tmp_path / "cli.tfrc").write_text(CLI_CONFIG % PLUGINS)
    _, akid, secret = s.creds("A")
    providers = PROVIDER % {"alias": "a", "region": "us-east-1", "akid": akid, "secret": secret, "url": s.url}
    (tmp_path / "main.tf").write_text(MAIN + providers)
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(tmp_path / "cli.tfrc"),
           "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("TF_LOG", None)
    if os.environ.get("VPCD_TF_DEBUG_LOG"):
        env["TF_LOG"] = "DEBUG"
        env["TF_LOG_PATH"] = os.environ["VPCD_TF_DEBUG_LOG"]

    def tf(*args: str, ok=(0,)) -> subprocess.CompletedProcess:
        started = time.monotonic()
        p = subprocess.run(["terraform", *args, "-no-color"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        print(f"terraform {args[0]}: {time.monotonic() - started:.1f}s")
        assert p.returncode in ok, (
            f"terraform {' '.join(args)} -> {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
            f"\n--- server log ---\n{s.log()[-2000:]}")
        return p

    def plan_is_empty(why: str, *var: str):
        plan = tf("plan", "-detailed-exitcode", "-input=false", *var, ok=(0, 2))
        assert plan.returncode == 0, f"{why}: a plan wants changes:\n{plan.stdout[-6000:]}"

    tf("init", "-input=false")
    tf("apply", "-auto-approve", "-input=false")
    ec2 = s.client("A")
    [vpc] = [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    vid = vpc["VpcId"]
    assert vpc["InstanceTenancy"] == "dedicated"
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableNetworkAddressUsageMetrics")[
        "EnableNetworkAddressUsageMetrics"]["Value"] is True
    [sub] = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]
    assert sub["EnableDns64"] is True
    got = ec2.get_subnet_cidr_reservations(SubnetId=sub["SubnetId"])
    assert sorted((r["Cidr"], r["ReservationType"]) for r in got["SubnetIpv4CidrReservations"]) == [
        ("10.41.1.16/28", "explicit"), ("10.41.1.64/26", "prefix")]
    assert [r["ReservationType"] for r in got["SubnetIpv6CidrReservations"]] == ["prefix"]
    plan_is_empty("after the first apply")

    # The tenancy goes to default in place (ModifyVpcTenancy), not by replacement.
    tf("apply", "-auto-approve", "-input=false", "-var", "tenancy=default")
    [vpc] = [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]]
    assert vpc["VpcId"] == vid and vpc["InstanceTenancy"] == "default"
    plan_is_empty("after the tenancy change", "-var", "tenancy=default")

    tf("destroy", "-auto-approve", "-input=false", "-var", "tenancy=default")
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    print(f"\nterraform subnet reservations and attributes apply/plan/change/destroy against vpcd: "
          f"{time.monotonic() - t0:.1f}s")
