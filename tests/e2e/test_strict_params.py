"""Issue 7 regressions at the HTTP boundary: strict list parameters (a list that
cannot be read is an error, never "empty" and so never "all"), the API version,
unknown session tokens, and parameter combinations AWS refuses."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import expect_error, make_vpc, tags_of
from test_auth import FORM, local, send


def call(server, params: list[tuple[str, str]], account="A", token: str | None = None,
         service="ec2") -> tuple[int, str | None, bytes]:
    """POSTs exactly these form parameters, SigV4-signed; returns (status, error code or None, body)."""
    _, akid, secret = server.creds(account)
    body = urllib.parse.urlencode(params)
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers={"Content-Type": FORM})
    SigV4Auth(Credentials(akid, secret, token), service, "us-east-1").add_auth(req)
    status, raw, _ = send(req)
    if status == 200:
        return status, None, raw
    root = ET.fromstring(raw)
    codes = [e.text for e in root.iter() if local(e.tag) == "Code"]
    assert codes, raw
    return status, codes[0], raw


def ec2_call(server, action: str, params: list[tuple[str, str]], **kw):
    return call(server, [("Action", action), ("Version", "2016-11-15"), *params], **kw)


TAGS = {"Name": "keep-me", "env": "prod", "team": "net"}


@pytest.fixture
def tagged_vpc(client):
    ec2 = client("A")
    vpc = make_vpc(ec2)
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": k, "Value": v} for k, v in TAGS.items()])
    return ec2, vpc


def vpc_tags(ec2, vpc: str) -> dict:
    return tags_of(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0])


@pytest.mark.parametrize("bad, code", [
    ([("Tag.18446744073709551616.Key", "x")], "UnknownParameter"),
    ([("Tag.-1.Key", "x")], "UnknownParameter"),
    ([("Tag.0.Key", "x")], "UnknownParameter"),
    ([("Tag.Key", "x")], "UnknownParameter"),
    ([("Tag", "x")], "UnknownParameter"),
    ([("Tag.1.key", "x")], "UnknownParameter"),
    ([("Tag.1.Value", "x")], "MissingParameter"),
    # One good entry does not excuse a bad one: nothing at all is deleted.
    ([("Tag.1.Key", "env"), ("Tag.2.Value", "net")], "MissingParameter"),
])
def test_delete_tags_with_an_unreadable_tag_list_deletes_nothing(server, tagged_vpc, bad, code):
    ec2, vpc = tagged_vpc
    status, got, _ = ec2_call(server, "DeleteTags", [("ResourceId.1", vpc), *bad])
    assert (status, got) == (400, code)
    assert vpc_tags(ec2, vpc) == TAGS


def test_delete_tags_still_deletes_what_it_is_asked_to(server, tagged_vpc):
    ec2, vpc = tagged_vpc
    assert ec2_call(server, "DeleteTags", [("ResourceId.1", vpc), ("Tag.1.Key", "env")])[0] == 200
    assert vpc_tags(ec2, vpc) == {"Name": "keep-me", "team": "net"}
    # Without any Tag parameter AWS deletes every tag: still so.
    assert ec2_call(server, "DeleteTags", [("ResourceId.1", vpc)])[0] == 200
    assert vpc_tags(ec2, vpc) == {}


def test_a_bad_resource_index_deletes_nothing(server, tagged_vpc):
    ec2, vpc = tagged_vpc
    status, code, _ = ec2_call(server, "DeleteTags", [("ResourceId.-1", vpc)])
    assert (status, code) == (400, "UnknownParameter")
    assert vpc_tags(ec2, vpc) == TAGS


def test_create_tags_with_a_bad_entry_adds_nothing(server, tagged_vpc):
    ec2, vpc = tagged_vpc
    status, code, _ = ec2_call(server, "CreateTags", [("ResourceId.1", vpc), ("Tag.1.Key", "new"),
                                                      ("Tag.2.Value", "orphan")])
    assert (status, code) == (400, "MissingParameter")
    assert vpc_tags(ec2, vpc) == TAGS


@pytest.mark.parametrize("name", ["VpcId.-1", "VpcId.0", "VpcId.x", "VpcId", "VpcId.1.Foo"])
def test_describe_with_a_bad_id_list_is_an_error_not_everything(server, client, name):
    ec2 = client("A")
    vpc = make_vpc(ec2)
    status, code, raw = ec2_call(server, "DescribeVpcs", [(name, vpc)])
    assert (status, code) == (400, "UnknownParameter"), raw
    assert f"The parameter {name} is not recognized".encode() in raw


def test_filters_need_a_name(server):
    status, code, raw = ec2_call(server, "DescribeVpcs", [("Filter.1.Value.1", "x")])
    assert (status, code) == (400, "MissingParameter")
    assert b"Filter.1.Name" in raw


def test_security_group_permission_with_a_misspelt_member_is_refused(server, client):
    ec2 = client("A")
    vpc = make_vpc(ec2)
    sg = ec2.create_security_group(GroupName="strict", Description="d", VpcId=vpc)["GroupId"]
    status, code, _ = ec2_call(server, "AuthorizeSecurityGroupIngress", [
        ("GroupId", sg), ("IpPermissions.1.IpProtocol", "tcp"), ("IpPermissions.1.FromPort", "22"),
        ("IpPermissions.1.ToPort", "22"), ("IpPermissions.1.IpRanges.1.CidrIP", "10.0.0.0/8"),
    ])
    assert (status, code) == (400, "UnknownParameter")
    assert ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"] == []


def test_version_is_required_and_must_be_the_one_served(server):
    status, code, raw = call(server, [("Action", "DescribeVpcs")])
    assert (status, code) == (400, "MissingParameter")
    assert b"Version" in raw
    status, code, raw = call(server, [("Action", "DescribeVpcs"), ("Version", "1999-01-01")])
    assert (status, code) == (400, "NoSuchVersion")
    assert b"1999-01-01" in raw
    assert call(server, [("Action", "DescribeVpcs"), ("Version", "2016-11-15")])[0] == 200


def test_sts_checks_its_own_version(server):
    status, code, _ = call(server, [("Action", "GetCallerIdentity"), ("Version", "2099-01-01")],
                           service="sts")
    assert (status, code) == (400, "NoSuchVersion")
    assert call(server, [("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
                service="sts")[0] == 200


def test_an_unknown_session_token_is_refused(server, client):
    ec2 = client("A")
    vpc = make_vpc(ec2)
    status, code, _ = ec2_call(server, "DeleteVpc", [("VpcId", vpc)], token="FwoGZXIvYXdzEBYaDK")
    assert (status, code) == (401, "AuthFailure")
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    status, code, _ = call(server, [("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
                           token="FwoGZXIvYXdzEBYaDK", service="sts")
    assert (status, code) == (403, "InvalidClientTokenId")


def test_icmpv6_with_an_ipv4_range_is_refused(client):
    ec2 = client("A")
    vpc = make_vpc(ec2)
    sg = ec2.create_security_group(GroupName="icmp6", Description="d", VpcId=vpc)["GroupId"]
    for proto in ("icmpv6", "58"):
        with expect_error("InvalidParameterCombination"):
            ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
                "IpProtocol": proto, "FromPort": -1, "ToPort": -1,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "icmpv6", "FromPort": -1, "ToPort": -1, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    perms = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"]
    assert [p["IpProtocol"] for p in perms] == ["icmpv6"]
    assert perms[0]["Ipv6Ranges"] == [{"CidrIpv6": "::/0"}] and perms[0]["IpRanges"] == []
