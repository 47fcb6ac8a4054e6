"""Route 53 private hosted zones through boto3's `route53` client on vpcd's endpoint.

Zones, record sets (atomic change batches, AWS's InvalidChangeBatch texts),
changes, VPC associations across accounts with authorizations, tags, and the
error shapes botocore parses (`<ErrorResponse>`, HTTP statuses).
"""

from __future__ import annotations

import re
import uuid

import pytest
from botocore.exceptions import ClientError

from helpers import A_ID, B_ID, expect_error, make_vpc


def r53(client, account="A", region="us-east-1"):
    return client(account, region, service="route53")


def ref() -> str:
    return uuid.uuid4().hex


def private_zone(r, name: str, vpc: str, region: str = "us-east-1") -> str:
    z = r.create_hosted_zone(Name=name, CallerReference=ref(), VPC={"VPCRegion": region, "VPCId": vpc},
                             HostedZoneConfig={"Comment": "test", "PrivateZone": True})
    return z["HostedZone"]["Id"]


def change(r, zone: str, *changes, comment: str | None = None) -> dict:
    batch = {"Changes": [{"Action": a, "ResourceRecordSet": rs} for a, rs in changes]}
    if comment:
        batch["Comment"] = comment
    return r.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=batch)


def rr(name: str, rtype: str, *values: str, ttl: int = 60) -> dict:
    return {"Name": name, "Type": rtype, "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}


def sets(r, zone: str, **kw) -> list[tuple[str, str]]:
    return [(s["Name"], s["Type"]) for s in r.list_resource_record_sets(HostedZoneId=zone, **kw)["ResourceRecordSets"]]


def test_zone_lifecycle_records_and_changes(client):
    ec2, r = client("A"), r53(client)
    vpc = make_vpc(ec2)
    caller = ref()
    created = r.create_hosted_zone(Name="Corp.Example", CallerReference=caller,
                                   VPC={"VPCRegion": "us-east-1", "VPCId": vpc},
                                   HostedZoneConfig={"Comment": "corp", "PrivateZone": True})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    z = created["HostedZone"]
    zid = z["Id"]
    assert re.fullmatch(r"/hostedzone/Z[0-9A-Z]+", zid)
    assert created["ResponseMetadata"]["HTTPHeaders"]["location"].endswith(zid)
    assert z["Name"] == "corp.example." and z["CallerReference"] == caller
    assert z["Config"] == {"Comment": "corp", "PrivateZone": True} and z["ResourceRecordSetCount"] == 2
    assert created["VPC"] == {"VPCRegion": "us-east-1", "VPCId": vpc}
    assert created["ChangeInfo"]["Status"] in ("PENDING", "INSYNC")
    assert r.get_change(Id=created["ChangeInfo"]["Id"])["ChangeInfo"]["Status"] == "INSYNC"

    got = r.get_hosted_zone(Id=zid.split("/")[-1])                      # the bare ID works too
    assert got["HostedZone"] == {**z} and got["VPCs"] == [{"VPCRegion": "us-east-1", "VPCId": vpc}]
    assert "DelegationSet" not in got
    assert zid in [x["Id"] for x in r.list_hosted_zones()["HostedZones"]]
    # The apex NS and SOA, as on AWS (Terraform reads NS element 0).
    ns = r.list_resource_record_sets(HostedZoneId=zid, StartRecordName="corp.example", StartRecordType="NS",
                                     MaxItems="1")["ResourceRecordSets"][0]
    assert ns["Type"] == "NS" and ns["TTL"] == 172800 and len(ns["ResourceRecords"]) == 4

    # One atomic batch with every type the resolver serves.
    c = change(r, zid,
               ("CREATE", rr("db.corp.example", "A", "10.60.1.5", "10.60.1.6")),
               ("CREATE", rr("db.corp.example", "AAAA", "fd00::5")),
               ("CREATE", rr("www.corp.example.", "CNAME", "db.corp.example")),
               ("CREATE", rr("corp.example", "TXT", '"v=spf1 -all"')),
               ("CREATE", rr("_pg._tcp.corp.example", "SRV", "1 5 5432 db.corp.example")),
               comment="first")
    assert c["ChangeInfo"]["Comment"] == "first"
    assert sets(r, zid) == [("corp.example.", "NS"), ("corp.example.", "SOA"), ("corp.example.", "TXT"),
                            ("_pg._tcp.corp.example.", "SRV"), ("db.corp.example.", "A"),
                            ("db.corp.example.", "AAAA"), ("www.corp.example.", "CNAME")]
    # Paging by name/type.
    page = r.list_resource_record_sets(HostedZoneId=zid, MaxItems="2")
    assert page["IsTruncated"] is True and (page["NextRecordName"], page["NextRecordType"]) == ("corp.example.", "TXT")
    rest = sets(r, zid, StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])
    assert rest[0] == ("corp.example.", "TXT") and len(rest) == 5

    # UPSERT replaces; DELETE needs the exact current values.
    change(r, zid, ("UPSERT", rr("db.corp.example", "A", "10.60.1.7")))
    a = [s for s in r.list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"] if s["Type"] == "A"][0]
    assert a["ResourceRecords"] == [{"Value": "10.60.1.7"}]
    with expect_error("InvalidChangeBatch") as h:
        change(r, zid, ("DELETE", rr("db.corp.example", "A", "10.60.1.5")))
    assert h.error.response["Error"]["Message"] == (
        "[Tried to delete resource record set [name='db.corp.example.', type='A'] but the values provided "
        "do not match the current values]")

    # Nothing of a failed batch is applied; every problem is listed.
    with expect_error("InvalidChangeBatch") as h:
        change(r, zid,
               ("CREATE", rr("new.corp.example", "A", "10.60.1.9")),
               ("CREATE", rr("db.corp.example", "A", "10.60.1.8")),
               ("DELETE", rr("gone.corp.example", "A", "10.60.1.1")),
               ("CREATE", rr("bad.corp.example", "A", "10.60.1.300")),
               ("CREATE", rr("x.other.example", "A", "10.60.1.1")),
               ("CREATE", rr("db.corp.example", "CNAME", "www.corp.example")))
    msg = h.error.response["Error"]["Message"]
    for part in ("Tried to create resource record set [name='db.corp.example.', type='A'] but it already exists",
                 "Tried to delete resource record set [name='gone.corp.example.', type='A'] but it was not found",
                 "ARRDATAIllegalIPv4Address", "RRSet with DNS name x.other.example. is not permitted in zone corp.example.",
                 "conflicting RRSet of type A"):
        assert part in msg, msg
    assert ("new.corp.example.", "A") not in sets(r, zid)
    with expect_error("InvalidChangeBatch"):
        change(r, zid, ("DELETE", rr("corp.example", "NS", *[
            v["Value"] for v in ns["ResourceRecords"]], ttl=172800)))

    # A zone with records cannot go; emptied, it can.
    with expect_error("HostedZoneNotEmpty"):
        r.delete_hosted_zone(Id=zid)
    for s in r.list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]:
        if s["Name"] != "corp.example." or s["Type"] not in ("NS", "SOA"):
            change(r, zid, ("DELETE", s))
    deleted = r.delete_hosted_zone(Id=zid)
    assert deleted["ChangeInfo"]["Status"] in ("PENDING", "INSYNC")
    with expect_error("NoSuchHostedZone", 404) as h:
        r.get_hosted_zone(Id=zid)
    assert h.error.response["Error"]["Message"] == f"No hosted zone found with ID: {zid.split('/')[-1]}"
    with expect_error("NoSuchHostedZone", 404):
        r.delete_hosted_zone(Id=zid)
    with expect_error("NoSuchChange", 404):
        r.get_change(Id="C0000000000000000")
    ec2.delete_vpc(VpcId=vpc)


def test_zone_requests_that_are_refused(client):
    ec2, r = client("A"), r53(client)
    vpc = make_vpc(ec2)
    caller = ref()
    zid = r.create_hosted_zone(Name="dup.example", CallerReference=caller,
                               VPC={"VPCRegion": "us-east-1", "VPCId": vpc})["HostedZone"]["Id"]
    with expect_error("HostedZoneAlreadyExists", 409):
        r.create_hosted_zone(Name="other.example", CallerReference=caller,
                             VPC={"VPCRegion": "us-east-1", "VPCId": vpc})
    with expect_error("ConflictingDomainExists"):
        r.create_hosted_zone(Name="dup.example", CallerReference=ref(), VPC={"VPCRegion": "us-east-1", "VPCId": vpc})
    with expect_error("InvalidVPCId"):
        r.create_hosted_zone(Name="x.example", CallerReference=ref(),
                             VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-0123456789abcdef0"})
    with expect_error("InvalidVPCId"):
        r.create_hosted_zone(Name="x.example", CallerReference=ref(), VPC={"VPCRegion": "us-west-2", "VPCId": vpc})
    with expect_error("InvalidInput"):
        r.create_hosted_zone(Name="x.example", CallerReference=ref(), HostedZoneConfig={"PrivateZone": True})
    with expect_error("InvalidDomainName"):
        r.create_hosted_zone(Name="bad..example", CallerReference=ref(), VPC={"VPCRegion": "us-east-1", "VPCId": vpc})
    with expect_error("InvalidInput"):                                    # no TTL, no alias
        change(r, zid, ("CREATE", {"Name": "a.dup.example", "Type": "A", "ResourceRecords": [{"Value": "10.0.0.1"}]}))
    with expect_error("LastVPCAssociation"):
        r.disassociate_vpc_from_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": vpc})
    other = make_vpc(ec2)
    with expect_error("VPCAssociationNotFound", 404):
        r.disassociate_vpc_from_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": other})
    r.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": other})
    with expect_error("ConflictingDomainExists"):
        r.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": other})
    byvpc = r.list_hosted_zones_by_vpc(VPCId=other, VPCRegion="us-east-1")["HostedZoneSummaries"]
    assert byvpc == [{"HostedZoneId": zid.split("/")[-1], "Name": "dup.example.", "Owner": {"OwningAccount": A_ID}}]
    r.disassociate_vpc_from_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": other})
    assert r.list_hosted_zones_by_vpc(VPCId=other, VPCRegion="us-east-1")["HostedZoneSummaries"] == []
    # Public zones: a delegation set, and no VPCs.
    pub = r.create_hosted_zone(Name="public.example", CallerReference=ref())
    assert len(pub["DelegationSet"]["NameServers"]) == 4
    with expect_error("PublicZoneVPCAssociation"):
        r.associate_vpc_with_hosted_zone(HostedZoneId=pub["HostedZone"]["Id"],
                                         VPC={"VPCRegion": "us-east-1", "VPCId": other})
    assert [z["Name"] for z in r.list_hosted_zones(HostedZoneType="PrivateHostedZone")["HostedZones"]
            if z["Id"] == pub["HostedZone"]["Id"]] == []
    # Tags.
    r.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zid.split("/")[-1],
                               AddTags=[{"Key": "env", "Value": "test"}, {"Key": "x", "Value": "y"}])
    r.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zid.split("/")[-1], RemoveTagKeys=["x"])
    tags = r.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zid.split("/")[-1])
    assert tags["ResourceTagSet"]["Tags"] == [{"Key": "env", "Value": "test"}]
    # Another account sees none of it.
    rb = r53(client, "B")
    with expect_error("NoSuchHostedZone", 404):
        rb.get_hosted_zone(Id=zid)
    with expect_error("NoSuchHostedZone", 404):
        change(rb, zid, ("CREATE", rr("b.dup.example", "A", "10.0.0.1")))
    assert zid not in [z["Id"] for z in rb.list_hosted_zones()["HostedZones"]]
    r.delete_hosted_zone(Id=pub["HostedZone"]["Id"])
    r.delete_hosted_zone(Id=zid)


def test_cross_account_association_needs_an_authorization(client):
    ra, rb = r53(client, "A"), r53(client, "B")
    va = make_vpc(client("A"))
    vb = make_vpc(client("B"))
    zid = private_zone(ra, "shared.example", va)
    bvpc = {"VPCRegion": "us-east-1", "VPCId": vb}
    with expect_error("NotAuthorizedException", 401):
        rb.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC=bvpc)
    auth = ra.create_vpc_association_authorization(HostedZoneId=zid, VPC=bvpc)
    assert auth["HostedZoneId"] == zid.split("/")[-1] and auth["VPC"] == bvpc
    assert ra.list_vpc_association_authorizations(HostedZoneId=zid)["VPCs"] == [bvpc]
    with expect_error("NoSuchHostedZone", 404):                         # only the owner authorizes
        rb.create_vpc_association_authorization(HostedZoneId=zid, VPC=bvpc)
    with expect_error("NotAuthorizedException", 401):                    # B cannot associate A's VPC
        rb.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": va})
    rb.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC=bvpc)
    assert bvpc in ra.get_hosted_zone(Id=zid)["VPCs"]
    summaries = rb.list_hosted_zones_by_vpc(VPCId=vb, VPCRegion="us-east-1")["HostedZoneSummaries"]
    assert summaries[0]["Owner"] == {"OwningAccount": A_ID}
    # Deleting the authorization blocks re-association only; either owner may disassociate.
    ra.delete_vpc_association_authorization(HostedZoneId=zid, VPC=bvpc)
    assert ra.list_vpc_association_authorizations(HostedZoneId=zid)["VPCs"] == []
    with expect_error("VPCAssociationAuthorizationNotFound", 404):
        ra.delete_vpc_association_authorization(HostedZoneId=zid, VPC=bvpc)
    rb.disassociate_vpc_from_hosted_zone(HostedZoneId=zid, VPC=bvpc)
    with expect_error("NotAuthorizedException", 401):
        rb.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC=bvpc)
    assert B_ID != A_ID
    ra.delete_hosted_zone(Id=zid)


def test_errors_have_route53s_envelope(server):
    import urllib.request
    r = server.client("A", service="route53")
    try:
        r.get_hosted_zone(Id="ZNOPE")
    except ClientError as e:
        assert e.response["Error"]["Type"] == "Sender"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    else:
        pytest.fail("no error")
    # Unsigned: refused before anything is read.
    req = urllib.request.Request(server.url + "/2013-04-01/hostedzone", method="GET")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code in (400, 401, 403)
