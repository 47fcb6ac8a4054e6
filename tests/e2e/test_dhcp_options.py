"""DHCP options sets through boto3: the default set, create/describe/delete/associate, errors."""

from __future__ import annotations

import pytest

from helpers import A_ID, expect_error, is_id, make_vpc


def config_of(d: dict) -> dict[str, list[str]]:
    return {c["Key"]: [v["Value"] for v in c["Values"]] for c in d["DhcpConfigurations"]}


def vpc_dopt(ec2, vpc_id: str) -> str:
    return ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["DhcpOptionsId"]


@pytest.mark.parametrize("region,domain", [("us-east-1", "ec2.internal"),
                                           ("eu-west-2", "eu-west-2.compute.internal")])
def test_the_default_set_per_account_and_region(client, region, domain):
    ec2 = client("A", region)
    sets = ec2.describe_dhcp_options()["DhcpOptions"]
    assert len(sets) == 1, sets
    d = sets[0]
    assert is_id("dopt", d["DhcpOptionsId"]) and d["OwnerId"] == A_ID
    assert config_of(d) == {"domain-name": [domain], "domain-name-servers": ["AmazonProvidedDNS"]}
    # The default VPC and every new VPC use it.
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert default_vpc["DhcpOptionsId"] == d["DhcpOptionsId"]
    vid = make_vpc(ec2, "10.40.0.0/16")
    assert vpc_dopt(ec2, vid) == d["DhcpOptionsId"]
    # Terraform's aws_default_vpc_dhcp_options finds it with repeated (ANDed) key/value filters.
    found = ec2.describe_dhcp_options(Filters=[
        {"Name": "key", "Values": ["domain-name"]}, {"Name": "value", "Values": [domain]},
        {"Name": "key", "Values": ["domain-name-servers"]}, {"Name": "value", "Values": ["AmazonProvidedDNS"]},
        {"Name": "owner-id", "Values": [A_ID]}])["DhcpOptions"]
    assert [x["DhcpOptionsId"] for x in found] == [d["DhcpOptionsId"]]
    # Another account has its own.
    other = client("B", region).describe_dhcp_options()["DhcpOptions"]
    assert [x["DhcpOptionsId"] for x in other] != [d["DhcpOptionsId"]] and len(other) == 1
    ec2.delete_vpc(VpcId=vid)


def test_create_describe_filter_tag_associate_delete(client):
    ec2 = client("A", "us-west-1")
    created = ec2.create_dhcp_options(
        DhcpConfigurations=[
            {"Key": "ntp-servers", "Values": ["169.254.169.123"]},
            {"Key": "domain-name", "Values": ["corp.example"]},
            {"Key": "domain-name-servers", "Values": ["10.0.0.53", "AmazonProvidedDNS"]},
            {"Key": "netbios-name-servers", "Values": ["10.0.0.54"]},
            {"Key": "netbios-node-type", "Values": ["2"]},
        ],
        TagSpecifications=[{"ResourceType": "dhcp-options", "Tags": [{"Key": "Name", "Value": "corp"}]}],
    )["DhcpOptions"]
    dopt = created["DhcpOptionsId"]
    assert is_id("dopt", dopt) and created["OwnerId"] == A_ID
    assert created["Tags"] == [{"Key": "Name", "Value": "corp"}]
    # AWS's key order, values as given.
    assert [c["Key"] for c in created["DhcpConfigurations"]] == [
        "domain-name", "domain-name-servers", "ntp-servers", "netbios-name-servers", "netbios-node-type"]
    assert config_of(created)["domain-name-servers"] == ["10.0.0.53", "AmazonProvidedDNS"]
    assert ec2.describe_dhcp_options(DhcpOptionsIds=[dopt])["DhcpOptions"] == [created]

    # Filters: id, key, value (wildcards), tags.
    def ids(**kw):
        return [d["DhcpOptionsId"] for d in ec2.describe_dhcp_options(**kw)["DhcpOptions"]]
    assert ids(Filters=[{"Name": "dhcp-options-id", "Values": [dopt]}]) == [dopt]
    assert ids(Filters=[{"Name": "key", "Values": ["ntp-servers"]}]) == [dopt]
    assert ids(Filters=[{"Name": "value", "Values": ["corp.*"]}]) == [dopt]
    assert ids(Filters=[{"Name": "tag:Name", "Values": ["corp"]}]) == [dopt]
    assert ids(Filters=[{"Name": "tag-key", "Values": ["nope"]}]) == []
    with expect_error("InvalidParameterValue"):
        ec2.describe_dhcp_options(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])

    # Tags after the fact, and DescribeTags knows the type.
    ec2.create_tags(Resources=[dopt], Tags=[{"Key": "env", "Value": "test"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [dopt]}])["Tags"]
    assert {(t["Key"], t["ResourceType"]) for t in tags} == {("Name", "dhcp-options"), ("env", "dhcp-options")}

    # Pagination over the default set and ours.
    page = ec2.describe_dhcp_options(MaxResults=5)
    assert len(page["DhcpOptions"]) == 2 and "NextToken" not in page
    more = [ec2.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": [f"p{i}.example"]}])[
        "DhcpOptions"]["DhcpOptionsId"] for i in range(5)]
    first = ec2.describe_dhcp_options(MaxResults=5)
    assert len(first["DhcpOptions"]) == 5 and first["NextToken"]
    second = ec2.describe_dhcp_options(MaxResults=5, NextToken=first["NextToken"])
    seen = [d["DhcpOptionsId"] for d in first["DhcpOptions"] + second["DhcpOptions"]]
    assert len(seen) == 7 and len(set(seen)) == 7 and set(more) <= set(seen)
    with expect_error("InvalidParameterValue"):
        client("A", "us-west-1", validate=False).describe_dhcp_options(MaxResults=4)
    for m in more:
        ec2.delete_dhcp_options(DhcpOptionsId=m)

    # Options without a value are dropped (Terraform sends every key, empty ones too).
    sparse = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "ntp-servers", "Values": []}, {"Key": "netbios-node-type", "Values": [""]},
        {"Key": "domain-name", "Values": ["sparse.example"]}])["DhcpOptions"]
    assert config_of(sparse) == {"domain-name": ["sparse.example"]}
    ec2.delete_dhcp_options(DhcpOptionsId=sparse["DhcpOptionsId"])

    # Associate, then a set in use cannot be deleted; `default` detaches it.
    vid = make_vpc(ec2, "10.41.0.0/16")
    default_set = vpc_dopt(ec2, vid)
    with expect_error("DryRunOperation", 412):
        ec2.associate_dhcp_options(DhcpOptionsId=dopt, VpcId=vid, DryRun=True)
    assert vpc_dopt(ec2, vid) == default_set
    ec2.associate_dhcp_options(DhcpOptionsId=dopt, VpcId=vid)
    assert vpc_dopt(ec2, vid) == dopt
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "dhcp-options-id", "Values": [dopt]}])["Vpcs"]
    assert [v["VpcId"] for v in vpcs] == [vid]
    with expect_error("DependencyViolation") as h:
        ec2.delete_dhcp_options(DhcpOptionsId=dopt)
    assert h.error.response["Error"]["Message"] == \
        f"The dhcpOptions '{dopt}' has dependencies and cannot be deleted."
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=vid)
    assert vpc_dopt(ec2, vid) == "default"
    with expect_error("DryRunOperation", 412):
        ec2.delete_dhcp_options(DhcpOptionsId=dopt, DryRun=True)
    ec2.delete_dhcp_options(DhcpOptionsId=dopt)
    with expect_error("InvalidDhcpOptionID.NotFound") as h:
        ec2.describe_dhcp_options(DhcpOptionsIds=[dopt])
    assert h.error.response["Error"]["Message"] == f"The dhcpOption ID '{dopt}' does not exist"
    with expect_error("InvalidDhcpOptionsID.NotFound"):
        ec2.delete_dhcp_options(DhcpOptionsId=dopt)
    ec2.delete_vpc(VpcId=vid)


def test_bad_requests_are_refused_and_change_nothing(client):
    ec2 = client("A", "ap-south-1")
    before = ec2.describe_dhcp_options()["DhcpOptions"]
    vid = make_vpc(ec2, "10.42.0.0/16")
    for cfg in (
        [{"Key": "domain-name-servers", "Values": ["10.0.0.300"]}],
        [{"Key": "domain-name-servers", "Values": [f"10.0.0.{i}" for i in range(1, 6)]}],
        [{"Key": "netbios-node-type", "Values": ["3"]}],
        [{"Key": "domain-name", "Values": ["bad..name"]}],
        [{"Key": "domain-name", "Values": ["a.example", "b.example"]}],
        [{"Key": "ntp-servers", "Values": ["AmazonProvidedDNS"]}],
        [{"Key": "routers", "Values": ["10.0.0.1"]}],
        [{"Key": "domain-name", "Values": ["a.example"]}, {"Key": "domain-name", "Values": ["b.example"]}],
    ):
        with expect_error("InvalidParameterValue"):
            ec2.create_dhcp_options(DhcpConfigurations=cfg)
    with expect_error("MissingParameter"):
        client("A", "ap-south-1", validate=False).create_dhcp_options(DhcpConfigurations=[])
    with expect_error("InvalidParameterValue"):
        ec2.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": ["x.example"]}],
                                TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}])
    with expect_error("DryRunOperation", 412):
        ec2.create_dhcp_options(DhcpConfigurations=[{"Key": "domain-name", "Values": ["x.example"]}], DryRun=True)
    assert ec2.describe_dhcp_options()["DhcpOptions"] == before

    # IDs: malformed, unknown, another account's.
    with expect_error("InvalidDhcpOptionsId.Malformed") as h:
        ec2.describe_dhcp_options(DhcpOptionsIds=["xyz"])
    assert h.error.response["Error"]["Message"] == 'Invalid id: "xyz" (expecting "dopt-...")'
    with expect_error("InvalidDhcpOptionID.NotFound"):
        ec2.describe_dhcp_options(DhcpOptionsIds=["dopt-xyz"])
    with expect_error("InvalidDhcpOptionsId.Malformed"):
        ec2.associate_dhcp_options(DhcpOptionsId="vpc-0123456789abcdef0", VpcId=vid)
    with expect_error("InvalidDhcpOptionsId.Malformed"):
        ec2.delete_dhcp_options(DhcpOptionsId="nope")
    with expect_error("InvalidDhcpOptionID.NotFound"):
        ec2.associate_dhcp_options(DhcpOptionsId="dopt-0123456789abcdef0", VpcId=vid)
    theirs = client("B", "ap-south-1").describe_dhcp_options()["DhcpOptions"][0]["DhcpOptionsId"]
    with expect_error("InvalidDhcpOptionID.NotFound"):
        ec2.associate_dhcp_options(DhcpOptionsId=theirs, VpcId=vid)
    with expect_error("InvalidDhcpOptionsID.NotFound"):
        ec2.delete_dhcp_options(DhcpOptionsId=theirs)
    mine = before[0]["DhcpOptionsId"]
    with expect_error("InvalidVpcID.NotFound"):
        ec2.associate_dhcp_options(DhcpOptionsId=mine, VpcId="vpc-0123456789abcdef0")
    with expect_error("InvalidVpcID.NotFound"):
        ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId="vpc-0123456789abcdef0")
    assert vpc_dopt(ec2, vid) == mine
    ec2.delete_vpc(VpcId=vid)
