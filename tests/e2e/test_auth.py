"""Authentication and account isolation: SigV4 (header and query forms), STS, accounts."""

from __future__ import annotations

import datetime
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from unittest import mock

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import A_ID, B_ID, expect_error, make_vpc

FORM = "application/x-www-form-urlencoded; charset=utf-8"
DESCRIBE_VPCS = "Action=DescribeVpcs&Version=2016-11-15"


def send(req: AWSRequest) -> tuple[int, bytes, dict]:
    """Sends a (signed or unsigned) AWSRequest with urllib; returns status, body, headers."""
    data = req.body if req.body else None
    if isinstance(data, str):
        data = data.encode()
    r = urllib.request.Request(req.url, data=data, method=req.method,
                               headers={k: v for k, v in req.headers.items()})
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ec2_error(body: bytes) -> tuple[str, str]:
    """(Code, RequestID) from an EC2 error envelope <Response><Errors><Error>..."""
    root = ET.fromstring(body)
    assert local(root.tag) == "Response", body
    errors = [e for e in root if local(e.tag) == "Errors"]
    assert errors, body
    error = [e for e in errors[0] if local(e.tag) == "Error"][0]
    code = [c.text for c in error if local(c.tag) == "Code"][0]
    rid = [c.text for c in root if local(c.tag) == "RequestID"]
    assert rid and rid[0], f"no RequestID in error envelope: {body!r}"
    return code, rid[0]


def signed_post(server, account="A", when: datetime.datetime | None = None, body=DESCRIBE_VPCS,
                region="us-east-1", service="ec2", secret=None) -> AWSRequest:
    acct, akid, sk = server.creds(account)
    req = AWSRequest(method="POST", url=server.url + "/", data=body, headers={"Content-Type": FORM})
    auth = SigV4Auth(Credentials(akid, secret or sk), service, region)
    if when is None:
        auth.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(req)
    return req


# -- STS -------------------------------------------------------------------------

def test_sts_get_caller_identity_boto3(client):
    for name, acct in (("A", A_ID), ("B", B_ID)):
        ident = client(name, service="sts").get_caller_identity()
        assert ident["Account"] == acct
        assert ident["Arn"] == f"arn:aws:iam::{acct}:root"
        assert ident["UserId"] == acct
        assert ident["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_sts_get_caller_identity_cli(aws):
    ident = aws("B", "sts", "get-caller-identity")
    assert ident["Account"] == B_ID
    assert ident["Arn"] == f"arn:aws:iam::{B_ID}:root"


def test_sts_bad_credentials(client):
    sts = client("A", service="sts", secret_key="not-the-secret")
    with expect_error("SignatureDoesNotMatch", 403):
        sts.get_caller_identity()
    sts = client("A", service="sts", access_key="AKIDNOSUCHKEY0000000", secret_key="x")
    with expect_error("InvalidClientTokenId", 403):
        sts.get_caller_identity()


# -- SigV4 failures --------------------------------------------------------------

def test_wrong_secret_is_auth_failure(client):
    ec2 = client("A", secret_key="secretA1-but-wrong")
    with expect_error("AuthFailure", 401):
        ec2.describe_vpcs()
    # A write with a bad signature must not happen either.
    with expect_error("AuthFailure", 401):
        ec2.create_vpc(CidrBlock="10.77.0.0/16")
    vpcs = client("A").describe_vpcs(Filters=[{"Name": "cidr-block", "Values": ["10.77.0.0/16"]}])
    assert vpcs["Vpcs"] == []


def test_unknown_access_key_is_auth_failure(client):
    ec2 = client("A", access_key="AKIDNOSUCHKEY0000000", secret_key="whatever")
    with expect_error("AuthFailure", 401):
        ec2.describe_vpcs()


def test_a_store_that_cannot_answer_is_an_internal_error_not_an_auth_failure(server_factory):
    """A key lookup the store fails is a 500 `InternalError` (SDKs retry it), never an
    `AuthFailure` for a key that may exist; keys already known keep working meanwhile."""
    s = server_factory()
    s.add_account("555555555555", "AKIDE5", "secretE5", name="E")
    assert s.client("A").describe_vpcs()["Vpcs"]  # A's key is now known to the server
    db = sqlite3.connect(s.data_dir / "vpcd.db", timeout=10)
    try:
        db.execute("ALTER TABLE access_keys RENAME TO access_keys_away")
        db.commit()
        status, body, _ = send(signed_post(s, "E"))
        assert status == 500, body
        assert ec2_error(body)[0] == "InternalError"
        assert s.client("A").describe_vpcs()["Vpcs"]
        db.execute("ALTER TABLE access_keys_away RENAME TO access_keys")
        db.commit()
    finally:
        db.close()
    status, body, _ = send(signed_post(s, "E"))
    assert status == 200, body
    unknown = s.client("A", access_key="AKIDNOSUCHKEY0000001", secret_key="whatever")
    with expect_error("AuthFailure", 401):
        unknown.describe_vpcs()


def test_missing_signature(server):
    for url, data in ((server.url + "/", DESCRIBE_VPCS.encode()),
                      (server.url + "/?" + DESCRIBE_VPCS, None)):
        req = urllib.request.Request(url, data=data, headers={"Content-Type": FORM},
                                     method="POST" if data else "GET")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("unsigned request was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
            code, _ = ec2_error(e.read())
            assert code == "MissingAuthenticationToken"


def test_expired_request(server):
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    # Sanity: the same signing path with the current time works.
    status, body, _ = send(signed_post(server, when=now))
    assert status == 200, body
    assert local(ET.fromstring(body).tag) == "DescribeVpcsResponse"

    for skew in (datetime.timedelta(minutes=-20), datetime.timedelta(minutes=20)):
        status, body, _ = send(signed_post(server, when=now + skew))
        assert status == 400, (skew, body)
        code, _ = ec2_error(body)
        assert code == "RequestExpired", (skew, code)


def test_tampered_body_is_rejected(server):
    req = signed_post(server)
    req.data = DESCRIBE_VPCS.replace("DescribeVpcs", "DescribeSubnets")
    status, body, _ = send(req)
    assert status == 401, body
    assert ec2_error(body)[0] == "AuthFailure"


def test_error_envelope_shape(server):
    req = signed_post(server, body="Action=DescribeVpcs&Version=2016-11-15&VpcId.1=vpc-0123456789abcdef0")
    status, body, headers = send(req)
    assert status == 400
    code, rid = ec2_error(body)
    assert code == "InvalidVpcID.NotFound"
    assert headers.get("x-amzn-requestid") == rid


def test_presigned_get_url(server):
    _, akid, sk = server.creds("A")
    req = AWSRequest(method="GET", url=f"{server.url}/?{DESCRIBE_VPCS}")
    SigV4QueryAuth(Credentials(akid, sk), "ec2", "us-east-1", expires=300).add_auth(req)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url).query)
    assert "X-Amz-Signature" in q and "Authorization" not in req.headers
    with urllib.request.urlopen(req.url, timeout=10) as resp:
        assert resp.status == 200
        root = ET.fromstring(resp.read())
    assert local(root.tag) == "DescribeVpcsResponse"
    assert root.tag.startswith("{http://ec2.amazonaws.com/doc/2016-11-15/}")
    vpc_set = [e for e in root if local(e.tag) == "vpcSet"]
    assert vpc_set, "no vpcSet"
    owners = {e.text for e in vpc_set[0].iter() if local(e.tag) == "ownerId"}
    assert owners == {A_ID}

    # Changing a signed parameter breaks the signature.
    bad = req.url.replace("Action=DescribeVpcs", "Action=DescribeSubnets")
    assert bad != req.url
    try:
        urllib.request.urlopen(bad, timeout=10)
        raise AssertionError("tampered presigned URL was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 401
        assert ec2_error(e.read())[0] == "AuthFailure"


def test_header_signed_get(server):
    # GET with the parameters in the query string and a SigV4 Authorization header.
    _, akid, sk = server.creds("A")
    req = AWSRequest(method="GET", url=f"{server.url}/?{DESCRIBE_VPCS}")
    SigV4Auth(Credentials(akid, sk), "ec2", "us-east-1").add_auth(req)
    status, body, _ = send(req)
    assert status == 200, body
    assert local(ET.fromstring(body).tag) == "DescribeVpcsResponse"


def test_wrong_service_scope(server):
    # A signature scoped to another service must not authorise EC2 calls.
    status, body, _ = send(signed_post(server, service="s3"))
    assert status == 401, body
    assert ec2_error(body)[0] == "AuthFailure"


# -- accounts --------------------------------------------------------------------

def test_account_added_while_running(server):
    acct, akid, sk = "444444444444", "AKIDD4", "secretD4"
    ec2 = server.client("A", access_key=akid, secret_key=sk)
    with expect_error("AuthFailure", 401):
        ec2.describe_vpcs()
    server.add_account(acct, akid, sk, name="D")
    listed = server.vpcd("account", "list", "--data-dir", str(server.data_dir)).stdout
    assert any(line.split("\t")[0] == acct and akid in line for line in listed.splitlines()), listed

    ident = server.client("D", service="sts").get_caller_identity()
    assert ident["Account"] == acct
    d = server.client("D")
    vpcs = d.describe_vpcs()["Vpcs"]
    assert [v["IsDefault"] for v in vpcs] == [True]
    assert vpcs[0]["OwnerId"] == acct
    vid = make_vpc(d, "10.44.0.0/16")
    assert d.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["OwnerId"] == acct


def test_accounts_are_isolated(client):
    a, b = client("A"), client("B")
    va = make_vpc(a, "10.45.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "isolation-a"}]}])
    with expect_error("InvalidVpcID.NotFound"):
        b.describe_vpcs(VpcIds=[va])
    assert va not in {v["VpcId"] for v in b.describe_vpcs()["Vpcs"]}
    assert all(v["OwnerId"] == B_ID for v in b.describe_vpcs()["Vpcs"])
    with expect_error("InvalidVpcID.NotFound"):
        b.delete_vpc(VpcId=va)
    with expect_error("InvalidVpcID.NotFound"):
        b.create_subnet(VpcId=va, CidrBlock="10.45.1.0/24")
    with expect_error("InvalidVpcID.NotFound"):
        b.create_tags(Resources=[va], Tags=[{"Key": "owned", "Value": "no"}])
    assert va not in {t["ResourceId"] for t in b.describe_tags()["Tags"]}
    # A's VPC is untouched.
    v = a.describe_vpcs(VpcIds=[va])["Vpcs"][0]
    assert {t["Key"]: t["Value"] for t in v["Tags"]} == {"Name": "isolation-a"}


def test_regions_are_isolated(client):
    east, west = client("A", "us-east-1"), client("A", "us-west-2")
    v = make_vpc(east, "10.46.0.0/16")
    with expect_error("InvalidVpcID.NotFound"):
        west.describe_vpcs(VpcIds=[v])
    assert v not in {x["VpcId"] for x in west.describe_vpcs()["Vpcs"]}


def test_unknown_region_is_refused(client):
    with pytest.raises(Exception) as ei:
        client("A", region="xx-nowhere-9").describe_vpcs()
    resp = getattr(ei.value, "response", None)
    assert resp is not None, ei.value
    assert resp["Error"]["Code"] == "AuthFailure"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 401


def test_replayed_signature_with_swapped_body_and_claimed_hash(server):
    """A captured signature must not authorise another body, even when the
    replay claims the original body's hash in x-amz-content-sha256."""
    import hashlib
    req = signed_post(server)
    original = DESCRIBE_VPCS
    req.data = "Action=CreateTags&Version=2016-11-15&ResourceId.1=vpc-0123456789abcdef0&Tag.1.Key=pwned"
    req.headers["x-amz-content-sha256"] = hashlib.sha256(original.encode()).hexdigest()
    status, body, _ = send(req)
    assert status == 401, body
    assert ec2_error(body)[0] == "AuthFailure"


def test_presigned_url_expiry_is_bounded(server):
    _, akid, sk = server.creds("A")
    req = AWSRequest(method="GET", url=f"{server.url}/?{DESCRIBE_VPCS}")
    SigV4QueryAuth(Credentials(akid, sk), "ec2", "us-east-1", expires=10**9).add_auth(req)
    try:
        urllib.request.urlopen(req.url, timeout=10)
        raise AssertionError("a presigned URL valid for 30 years was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 400
        assert ec2_error(e.read())[0] == "IncompleteSignature"


def test_characters_xml_cannot_carry_are_refused(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    with expect_error("InvalidParameterValue"):
        ec2.create_tags(Resources=[vid], Tags=[{"Key": "k", "Value": "a\x01b"}])
    # Nothing was written, and describing still parses.
    [v] = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"]
    assert v.get("Tags", []) == []


def test_describe_with_repeated_ids_lists_each_once(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    got = ec2.describe_vpcs(VpcIds=[vid, vid])["Vpcs"]
    assert [v["VpcId"] for v in got] == [vid]
