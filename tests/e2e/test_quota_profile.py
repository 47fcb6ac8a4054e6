"""`vpcd serve --quotas relaxed`: the quota profile for test suites written
against an emulator (quotas raised, no state-transition delays), and AWS's
defaults without it."""

from __future__ import annotations

import pytest

from helpers import B_ID, expect_error, pcx_status


def make_vpcs(ec2, n: int) -> list[str]:
    return [ec2.create_vpc(CidrBlock=f"10.{i}.0.0/16")["Vpc"]["VpcId"] for i in range(n)]


def test_aws_defaults_refuse_the_sixth_vpc(server_factory):
    s = server_factory()
    a = s.client("A")
    a.describe_vpcs()  # makes the default VPC: one of the five
    make_vpcs(a, 4)
    with expect_error("VpcLimitExceeded"):
        a.create_vpc(CidrBlock="10.200.0.0/16")


@pytest.fixture
def relaxed(server_factory):
    return server_factory(serve_args=["--quotas", "relaxed"])


def test_relaxed_profile_raises_quotas(relaxed):
    a = relaxed.client("A")
    assert len(make_vpcs(a, 12)) == 12
    assert len(a.describe_vpcs()["Vpcs"]) == 13  # and the default VPC


def test_relaxed_profile_has_no_transition_delays(relaxed):
    a, b = relaxed.client("A"), relaxed.client("B")
    va = a.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    vb = b.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    pid = a.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=B_ID)[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    # No `initiating-request` to wait out, and no `provisioning` after accept.
    assert pcx_status(a, pid) == "pending-acceptance"
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    assert pcx_status(a, pid) == "active"

    sub = a.create_subnet(VpcId=va, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    iid = a.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                          SubnetId=sub)["Instances"][0]["InstanceId"]
    state = a.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_a_limits_file_overrides_the_profile(server_factory, tmp_path):
    s = server_factory(serve_args=["--quotas", "relaxed"], limits={"vpcs_per_region": 3})
    a = s.client("A")
    a.describe_vpcs()
    make_vpcs(a, 2)
    with expect_error("VpcLimitExceeded"):
        a.create_vpc(CidrBlock="10.200.0.0/16")
