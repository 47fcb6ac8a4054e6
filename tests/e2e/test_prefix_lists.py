"""Managed prefix lists through boto3 and the aws CLI: customer-managed lists
(create, versions, modify, restore, entries, associations, delete) and the
AWS-managed service lists; negative cases with AWS's codes.
"""

from __future__ import annotations

from helpers import A_ID, active_peering, expect_error, is_id, make_vpc, tags_of, run_analysis


def create(ec2, name="corp", family="IPv4", max_entries=5, cidrs=(), **kw):
    return ec2.create_managed_prefix_list(
        PrefixListName=name, AddressFamily=family, MaxEntries=max_entries,
        Entries=[{"Cidr": c, "Description": f"entry {c}"} for c in cidrs], **kw)["PrefixList"]


def entries(ec2, pl, **kw):
    return sorted(e["Cidr"] for e in ec2.get_managed_prefix_list_entries(PrefixListId=pl, **kw)["Entries"])


def test_create_describe_and_tags(client):
    ec2 = client("A")
    pl = create(ec2, cidrs=["10.1.0.0/16", "192.168.7.9/24"], TagSpecifications=[
        {"ResourceType": "prefix-list", "Tags": [{"Key": "Name", "Value": "corp-nets"}]}])
    assert is_id("pl", pl["PrefixListId"]), pl
    assert pl["AddressFamily"] == "IPv4" and pl["MaxEntries"] == 5 and pl["Version"] == 1
    assert pl["State"] == "create-complete" and pl["OwnerId"] == A_ID
    assert pl["PrefixListArn"] == f"arn:aws:ec2:us-east-1:{A_ID}:prefix-list/{pl['PrefixListId']}"
    assert tags_of(pl) == {"Name": "corp-nets"}
    pid = pl["PrefixListId"]
    # Host bits are zeroed, as everywhere in EC2.
    assert entries(ec2, pid) == ["10.1.0.0/16", "192.168.7.0/24"]
    got = ec2.describe_managed_prefix_lists(PrefixListIds=[pid])["PrefixLists"]
    assert [g["PrefixListName"] for g in got] == ["corp"]
    by_tag = ec2.describe_managed_prefix_lists(Filters=[{"Name": "tag:Name", "Values": ["corp-*"]}])
    assert [g["PrefixListId"] for g in by_tag["PrefixLists"]] == [pid]
    mine = ec2.describe_managed_prefix_lists(Filters=[{"Name": "owner-id", "Values": [A_ID]}])["PrefixLists"]
    assert pid in {g["PrefixListId"] for g in mine}
    assert all(g["OwnerId"] == A_ID for g in mine)
    # Tags through CreateTags / DescribeTags.
    ec2.create_tags(Resources=[pid], Tags=[{"Key": "env", "Value": "prod"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [pid]}])["Tags"]
    assert {(r["Key"], r["ResourceType"]) for r in rows} == {("Name", "prefix-list"), ("env", "prefix-list")}
    # Another account sees none of it.
    b = client("B")
    with expect_error("InvalidPrefixListID.NotFound"):
        b.describe_managed_prefix_lists(PrefixListIds=[pid])
    with expect_error("InvalidPrefixListID.NotFound"):
        b.get_managed_prefix_list_entries(PrefixListId=pid)
    with expect_error("InvalidPrefixListId.Malformed"):
        ec2.describe_managed_prefix_lists(PrefixListIds=["nope"])
    with expect_error("InvalidParameterValue"):
        ec2.describe_managed_prefix_lists(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])


def test_versions_modify_and_restore(client):
    ec2 = client("A")
    pid = create(ec2, name="versions", max_entries=3, cidrs=["10.2.0.0/16"])["PrefixListId"]
    # A rename is no new version.
    pl = ec2.modify_managed_prefix_list(PrefixListId=pid, PrefixListName="renamed")["PrefixList"]
    assert (pl["PrefixListName"], pl["Version"]) == ("renamed", 1)
    pl = ec2.modify_managed_prefix_list(PrefixListId=pid, CurrentVersion=1,
                                        AddEntries=[{"Cidr": "10.3.0.0/16"}],
                                        RemoveEntries=[{"Cidr": "10.2.0.0/16"}])["PrefixList"]
    assert (pl["Version"], pl["State"]) == (2, "modify-complete")
    assert entries(ec2, pid) == ["10.3.0.0/16"]
    assert entries(ec2, pid, TargetVersion=1) == ["10.2.0.0/16"]
    with expect_error("PrefixListVersionMismatch"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, CurrentVersion=1,
                                       AddEntries=[{"Cidr": "10.4.0.0/16"}])
    # Entries and size never change in one call; the size cannot drop below the entries.
    with expect_error("InvalidParameterCombination"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, MaxEntries=10,
                                       AddEntries=[{"Cidr": "10.4.0.0/16"}])
    with expect_error("InvalidParameterValue"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, AddEntries=[
            {"Cidr": "10.4.0.0/16"}, {"Cidr": "10.5.0.0/16"}, {"Cidr": "10.6.0.0/16"}])
    assert ec2.modify_managed_prefix_list(PrefixListId=pid, MaxEntries=1)["PrefixList"]["MaxEntries"] == 1
    with expect_error("InvalidParameterValue"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, AddEntries=[{"Cidr": "10.4.0.0/16"}])
    # Removing what is not there is refused and changes nothing.
    with expect_error("InvalidParameterValue"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, RemoveEntries=[{"Cidr": "10.9.0.0/16"}])
    pl = ec2.restore_managed_prefix_list_version(PrefixListId=pid, PreviousVersion=1,
                                                 CurrentVersion=2)["PrefixList"]
    assert (pl["Version"], pl["State"]) == (3, "restore-complete")
    assert entries(ec2, pid) == ["10.2.0.0/16"]
    with expect_error("InvalidParameterValue"):
        ec2.get_managed_prefix_list_entries(PrefixListId=pid, TargetVersion=99)


def test_invalid_entries_and_families_are_refused(client):
    ec2 = client("A")
    before = ec2.describe_managed_prefix_lists()["PrefixLists"]
    with expect_error("InvalidParameterValue") as h:
        create(ec2, name="v4", cidrs=["2600:1f18::/64"])
    assert "address family IPv4" in h.error.response["Error"]["Message"]
    with expect_error("InvalidParameterValue"):
        create(ec2, name="v6", family="IPv6", cidrs=["10.0.0.0/8"])
    with expect_error("InvalidParameterValue"):
        create(ec2, name="bad", cidrs=["10.0.0.300/8"])
    with expect_error("InvalidParameterValue"):
        create(ec2, name="family", family="IPv5")
    with expect_error("InvalidParameterValue"):
        create(ec2, name="big", max_entries=1001)
    with expect_error("InvalidParameterValue"):
        create(ec2, name="small", max_entries=1, cidrs=["10.0.0.0/8", "11.0.0.0/8"])
    with expect_error("InvalidParameterValue"):
        create(ec2, name="dup", cidrs=["10.0.0.0/8", "10.0.0.0/8"])
    with expect_error("InvalidParameterValue"):
        create(ec2, name="com.amazonaws.mine")
    assert ec2.describe_managed_prefix_lists()["PrefixLists"] == before
    v6 = create(ec2, name="v6-ok", family="IPv6", cidrs=["2600:1f18:1::/48"])
    assert v6["AddressFamily"] == "IPv6"


def test_quota_dry_run_and_pagination(server_factory):
    s = server_factory(limits={"prefix_lists_per_region": 3})
    ec2 = s.client("A")
    with expect_error("DryRunOperation", 412):
        create(ec2, name="dry", DryRun=True)
    assert [p for p in ec2.describe_managed_prefix_lists()["PrefixLists"] if p["OwnerId"] == A_ID] == []
    ids = {create(ec2, name=f"l{i}")["PrefixListId"] for i in range(3)}
    with expect_error("PrefixListLimitExceeded"):
        create(ec2, name="one-too-many")
    # The AWS-managed lists come along: 3 own + 2 service lists, two at a time.
    seen, token = [], None
    while True:
        kw = {"MaxResults": 2, **({"NextToken": token} if token else {})}
        page = ec2.describe_managed_prefix_lists(**kw)
        assert len(page["PrefixLists"]) <= 2
        seen += [p["PrefixListId"] for p in page["PrefixLists"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5 and ids <= set(seen)
    with expect_error("InvalidParameterValue"):
        ec2.describe_managed_prefix_lists(MaxResults=101)
    pid = sorted(ids)[0]
    with expect_error("DryRunOperation", 412):
        ec2.delete_managed_prefix_list(PrefixListId=pid, DryRun=True)
    assert ec2.describe_managed_prefix_lists(PrefixListIds=[pid])["PrefixLists"]
    big = ec2.modify_managed_prefix_list(PrefixListId=pid, MaxEntries=150)["PrefixList"]
    ec2.modify_managed_prefix_list(PrefixListId=pid, CurrentVersion=big["Version"], AddEntries=[
        {"Cidr": f"10.{i // 250}.{i % 250}.0/24"} for i in range(120)])
    got, token = [], None
    while True:
        kw = {"MaxResults": 100, **({"NextToken": token} if token else {})}
        page = ec2.get_managed_prefix_list_entries(PrefixListId=pid, **kw)
        got += [e["Cidr"] for e in page["Entries"]]
        token = page.get("NextToken")
        if not token:
            break
    assert len(got) == len(set(got)) == 120


def test_security_group_rules_name_lists_and_a_list_in_use_cannot_go(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    sg = ec2.create_security_group(GroupName="pl-users", Description="d", VpcId=vid)["GroupId"]
    pid = create(ec2, name="in-use", cidrs=["10.7.0.0/16"])["PrefixListId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "PrefixListIds": [{"PrefixListId": pid, "Description": "corp"}]}])
    g = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
    assert g["IpPermissions"][0]["PrefixListIds"] == [{"PrefixListId": pid, "Description": "corp"}]
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])
    assert [r.get("PrefixListId") for r in rules["SecurityGroupRules"] if not r["IsEgress"]] == [pid]
    assoc = ec2.get_managed_prefix_list_associations(PrefixListId=pid)["PrefixListAssociations"]
    assert assoc == [{"ResourceId": sg, "ResourceOwner": A_ID}]
    with expect_error("DependencyViolation") as h:
        ec2.delete_managed_prefix_list(PrefixListId=pid)
    assert sg in h.error.response["Error"]["Message"]
    # A list that does not exist (or is another account's) cannot be named.
    other = create(client("B"), name="b-list")["PrefixListId"]
    for missing in ("pl-0123456789abcdef0", other):
        with expect_error("InvalidPrefixListID.NotFound"):
            ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "PrefixListIds": [{"PrefixListId": missing}]}])
    # The region's AWS-managed S3 list may be named, in an egress rule too.
    s3 = ec2.describe_managed_prefix_lists(Filters=[
        {"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}])["PrefixLists"][0]
    ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "PrefixListIds": [{"PrefixListId": s3["PrefixListId"]}]}])
    ec2.revoke_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": pid}]}])
    assert ec2.get_managed_prefix_list_associations(PrefixListId=pid)["PrefixListAssociations"] == []
    gone = ec2.delete_managed_prefix_list(PrefixListId=pid)["PrefixList"]
    assert gone["State"] == "delete-in-progress"
    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.describe_managed_prefix_lists(PrefixListIds=[pid])


def test_aws_managed_service_lists(client, aws):
    ec2 = client("A")
    names = {p["PrefixListName"]: p for p in ec2.describe_prefix_lists()["PrefixLists"]}
    assert set(names) == {"com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.dynamodb"}
    s3 = names["com.amazonaws.us-east-1.s3"]
    assert s3["PrefixListId"] == "pl-63a5400a" and s3["Cidrs"]
    managed = ec2.describe_managed_prefix_lists(PrefixListIds=[s3["PrefixListId"]])["PrefixLists"][0]
    assert managed["OwnerId"] == "AWS" and managed["AddressFamily"] == "IPv4"
    assert entries(ec2, s3["PrefixListId"]) == sorted(s3["Cidrs"])
    # Read-only: AWS-managed lists cannot be modified or deleted by an account.
    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.modify_managed_prefix_list(PrefixListId=s3["PrefixListId"], PrefixListName="x")
    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.delete_managed_prefix_list(PrefixListId=s3["PrefixListId"])
    # Each region has its own IDs.
    west = client("A", "us-west-2").describe_prefix_lists(Filters=[
        {"Name": "prefix-list-name", "Values": ["com.amazonaws.us-west-2.s3"]}])["PrefixLists"]
    assert len(west) == 1 and west[0]["PrefixListId"] != s3["PrefixListId"]
    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.describe_prefix_lists(PrefixListIds=[west[0]["PrefixListId"]])
    # The aws CLI reads the same shapes.
    out = aws("A", "ec2", "get-managed-prefix-list-entries", "--prefix-list-id", s3["PrefixListId"])
    assert sorted(e["Cidr"] for e in out["Entries"]) == sorted(s3["Cidrs"])
    out = aws("A", "ec2", "create-managed-prefix-list", "--prefix-list-name", "cli",
              "--address-family", "IPv4", "--max-entries", "2", "--entries", "Cidr=172.16.0.0/12")
    assert out["PrefixList"]["PrefixListName"] == "cli"


def test_routes_to_a_prefix_list(client):
    ec2 = client("A")
    va = ec2.create_vpc(CidrBlock="10.32.0.0/16")["Vpc"]["VpcId"]
    vb = ec2.create_vpc(CidrBlock="10.33.0.0/16")["Vpc"]["VpcId"]
    sa = ec2.create_subnet(VpcId=va, CidrBlock="10.32.1.0/24")["Subnet"]["SubnetId"]
    sb = ec2.create_subnet(VpcId=vb, CidrBlock="10.33.1.0/24")["Subnet"]["SubnetId"]
    ia = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sa,
                           PrivateIpAddress="10.32.1.10")["Instances"][0]["InstanceId"]
    ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sb,
                      PrivateIpAddress="10.33.1.10")
    pcx = active_peering(ec2, ec2, va, vb, A_ID)
    for vid in (va, vb):
        sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                                   {"Name": "group-name", "Values": ["default"]}])
        ec2.authorize_security_group_ingress(GroupId=sg["SecurityGroups"][0]["GroupId"], IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    rta = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [va]}])["RouteTables"][0]["RouteTableId"]
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vb]}])["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="10.32.0.0/16", VpcPeeringConnectionId=pcx)
    pid = create(ec2, name="peer-nets", max_entries=3, cidrs=["10.33.1.0/24"])["PrefixListId"]

    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.create_route(RouteTableId=rta, DestinationPrefixListId="pl-0123456789abcdef0",
                         VpcPeeringConnectionId=pcx)
    with expect_error("InvalidParameterCombination"):
        ec2.create_route(RouteTableId=rta, DestinationPrefixListId=pid, DestinationCidrBlock="10.9.0.0/16",
                         VpcPeeringConnectionId=pcx)
    ec2.create_route(RouteTableId=rta, DestinationPrefixListId=pid, VpcPeeringConnectionId=pcx)
    with expect_error("RouteAlreadyExists"):
        ec2.create_route(RouteTableId=rta, DestinationPrefixListId=pid, VpcPeeringConnectionId=pcx)
    routes = ec2.describe_route_tables(RouteTableIds=[rta])["RouteTables"][0]["Routes"]
    listed = [r for r in routes if r.get("DestinationPrefixListId") == pid]
    assert listed == [{"DestinationPrefixListId": pid, "VpcPeeringConnectionId": pcx,
                       "State": "active", "Origin": "CreateRoute"}], routes
    by_filter = ec2.describe_route_tables(Filters=[
        {"Name": "route.destination-prefix-list-id", "Values": [pid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in by_filter] == [rta]
    assoc = ec2.get_managed_prefix_list_associations(PrefixListId=pid)["PrefixListAssociations"]
    assert assoc == [{"ResourceId": rta, "ResourceOwner": A_ID}]

    # The analyzer follows the route to the list's entry.
    assert run_analysis(ec2, ia, "10.33.1.10")["NetworkPathFound"] is True
    # A new version of the list moves the route: 10.33.1.0/24 is no longer routed.
    ec2.modify_managed_prefix_list(PrefixListId=pid, CurrentVersion=1,
                                   AddEntries=[{"Cidr": "10.33.2.0/24"}],
                                   RemoveEntries=[{"Cidr": "10.33.1.0/24"}])
    assert run_analysis(ec2, ia, "10.33.1.10")["NetworkPathFound"] is False
    ec2.modify_managed_prefix_list(PrefixListId=pid, CurrentVersion=2,
                                   AddEntries=[{"Cidr": "10.33.1.0/24"}])
    assert run_analysis(ec2, ia, "10.33.1.10")["NetworkPathFound"] is True
    # An entry that clashes with another route of a table using the list is refused.
    ec2.create_route(RouteTableId=rta, DestinationCidrBlock="10.33.9.0/24", VpcPeeringConnectionId=pcx)
    with expect_error("RouteAlreadyExists"):
        ec2.modify_managed_prefix_list(PrefixListId=pid, AddEntries=[{"Cidr": "10.33.9.0/24"}])
    # A list in a route cannot be deleted; the route goes with DeleteRoute.
    with expect_error("DependencyViolation"):
        ec2.delete_managed_prefix_list(PrefixListId=pid)
    ec2.replace_route(RouteTableId=rta, DestinationPrefixListId=pid, VpcPeeringConnectionId=pcx)
    ec2.delete_route(RouteTableId=rta, DestinationPrefixListId=pid)
    with expect_error("InvalidRoute.NotFound"):
        ec2.delete_route(RouteTableId=rta, DestinationPrefixListId=pid)
    assert run_analysis(ec2, ia, "10.33.1.10")["NetworkPathFound"] is False
    ec2.delete_managed_prefix_list(PrefixListId=pid)
