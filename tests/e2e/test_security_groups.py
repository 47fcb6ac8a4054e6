"""Security groups: create/delete, rules, references, and the errors around them."""

from __future__ import annotations

from helpers import A_ID, B_ID, default_sg, expect_error, is_id, make_vpc, tags_of

SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}
SSH6 = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]}


def group(ec2, gid):
    return ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]


def ingress_rules(ec2, gid):
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"]
    return [r for r in rules if not r["IsEgress"]]


def test_create_and_describe_group(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.80.0.0/16")
    r = ec2.create_security_group(GroupName="web", Description="web tier", VpcId=vid, TagSpecifications=[
        {"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": "web-sg"}]}])
    gid = r["GroupId"]
    assert is_id("sg", gid)
    assert tags_of(r) == {"Name": "web-sg"}
    g = group(ec2, gid)
    assert g["GroupName"] == "web"
    assert g["Description"] == "web tier"
    assert g["VpcId"] == vid
    assert g["OwnerId"] == A_ID
    assert g["IpPermissions"] == []
    [eg] = g["IpPermissionsEgress"]
    assert eg["IpProtocol"] == "-1"
    assert [x["CidrIp"] for x in eg["IpRanges"]] == ["0.0.0.0/0"]
    assert tags_of(g) == {"Name": "web-sg"}

    # Names are unique per VPC; `default` is taken; the same name in another VPC is fine.
    with expect_error("InvalidGroup.Duplicate"):
        ec2.create_security_group(GroupName="web", Description="again", VpcId=vid)
    with expect_error(("InvalidGroup.Reserved", "InvalidGroup.Duplicate")):
        ec2.create_security_group(GroupName="default", Description="no", VpcId=vid)
    other = make_vpc(ec2, "10.81.0.0/16")
    gid2 = ec2.create_security_group(GroupName="web", Description="web tier", VpcId=other)["GroupId"]
    assert gid2 != gid
    with expect_error("InvalidVpcID.NotFound"):
        ec2.create_security_group(GroupName="x", Description="x", VpcId="vpc-0123456789abcdef0")

    # Filters.
    got = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"]
    assert sorted(x["GroupName"] for x in got) == ["default", "web"]
    got = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["web"]},
                                                {"Name": "vpc-id", "Values": [vid, other]}])["SecurityGroups"]
    assert {x["GroupId"] for x in got} == {gid, gid2}
    got = ec2.describe_security_groups(Filters=[{"Name": "tag:Name", "Values": ["web-*"]}])["SecurityGroups"]
    assert gid in {x["GroupId"] for x in got}
    with expect_error("InvalidGroupId.Malformed"):
        ec2.describe_security_groups(GroupIds=["xyz"])
    with expect_error("InvalidGroup.NotFound"):
        ec2.describe_security_groups(GroupIds=["sg-0123456789abcdef0"])

    # Another account cannot see it.
    with expect_error("InvalidGroup.NotFound"):
        client("B").describe_security_groups(GroupIds=[gid])


def test_default_group_present_and_undeletable(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.82.0.0/16")
    gid = default_sg(ec2, vid)
    g = group(ec2, gid)
    assert g["GroupName"] == "default"
    assert g["Description"] == "default VPC security group"
    with expect_error("CannotDelete"):
        ec2.delete_security_group(GroupId=gid)
    assert group(ec2, gid)["GroupId"] == gid


def test_authorize_describe_revoke(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.83.0.0/16")
    gid = ec2.create_security_group(GroupName="ssh", Description="ssh", VpcId=vid)["GroupId"]

    r = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[SSH, SSH6])
    assert r["Return"] is True
    rules = r["SecurityGroupRules"]
    assert len(rules) == 2
    for rule in rules:
        assert is_id("sgr", rule["SecurityGroupRuleId"])
        assert rule["GroupId"] == gid
        assert rule["GroupOwnerId"] == A_ID
        assert rule["IsEgress"] is False
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
    assert {r.get("CidrIpv4") or r.get("CidrIpv6") for r in rules} == {"10.0.0.0/16", "2001:db8::/32"}

    perms = group(ec2, gid)["IpPermissions"]
    assert len(perms) == 1  # one (protocol, ports) entry holding both ranges
    assert [x["CidrIp"] for x in perms[0]["IpRanges"]] == ["10.0.0.0/16"]
    assert [x["CidrIpv6"] for x in perms[0]["Ipv6Ranges"]] == ["2001:db8::/32"]

    # The same rule twice, also written non-canonically, is a duplicate.
    with expect_error("InvalidPermission.Duplicate"):
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[SSH])
    with expect_error("InvalidPermission.Duplicate"):
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {**SSH, "IpRanges": [{"CidrIp": "10.0.7.7/16"}]}])
    # A different port is a different rule; the legacy flat form works for ingress.
    ec2.authorize_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    assert len(ingress_rules(ec2, gid)) == 3

    # DescribeSecurityGroupRules, by group and by id.
    listed = {r["SecurityGroupRuleId"]: r for r in ingress_rules(ec2, gid)}
    for rule in rules:
        assert rule["SecurityGroupRuleId"] in listed
    one = rules[0]["SecurityGroupRuleId"]
    got = ec2.describe_security_group_rules(SecurityGroupRuleIds=[one])["SecurityGroupRules"]
    assert [r["SecurityGroupRuleId"] for r in got] == [one]

    # Revoke by permission, then by rule id.
    assert ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[SSH])["Return"] is True
    left = ingress_rules(ec2, gid)
    assert "10.0.0.0/16" not in {r.get("CidrIpv4") for r in left}
    assert len(left) == 2
    with expect_error("InvalidPermission.NotFound"):
        ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[SSH])
    v6 = [r["SecurityGroupRuleId"] for r in left if r.get("CidrIpv6")]
    ec2.revoke_security_group_ingress(GroupId=gid, SecurityGroupRuleIds=v6)
    assert [r.get("CidrIpv4") for r in ingress_rules(ec2, gid)] == ["0.0.0.0/0"]

    # Egress: the default allow-all is there; add and remove one.
    eg = {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "10.83.0.2/32"}]}
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[eg])
    assert len(group(ec2, gid)["IpPermissionsEgress"]) == 2
    ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=[eg])
    assert len(group(ec2, gid)["IpPermissionsEgress"]) == 1

    with expect_error("InvalidGroup.NotFound"):
        ec2.authorize_security_group_ingress(GroupId="sg-0123456789abcdef0", IpPermissions=[SSH])


def test_reference_to_unpeered_vpc(client):
    a, b = client("A"), client("B")
    v1, v2 = make_vpc(a, "10.84.0.0/16"), make_vpc(a, "10.85.0.0/16")
    g1 = a.create_security_group(GroupName="app", Description="app", VpcId=v1)["GroupId"]
    g2 = a.create_security_group(GroupName="other", Description="other", VpcId=v2)["GroupId"]
    perm = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": g2}]}
    with expect_error("InvalidGroup.NotFound"):
        a.authorize_security_group_ingress(GroupId=g1, IpPermissions=[perm])
    # Another account's group, with no peering either.
    vb = make_vpc(b, "10.86.0.0/16")
    gb = default_sg(b, vb)
    with expect_error("InvalidGroup.NotFound"):
        a.authorize_security_group_ingress(GroupId=g1, IpPermissions=[
            {**perm, "UserIdGroupPairs": [{"GroupId": gb, "UserId": B_ID}]}])
    assert group(a, g1)["IpPermissions"] == []


def test_same_vpc_reference_and_delete_dependency(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.87.0.0/16")
    app = ec2.create_security_group(GroupName="app", Description="app", VpcId=vid)["GroupId"]
    db = ec2.create_security_group(GroupName="db", Description="db", VpcId=vid)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": app}]}])
    [perm] = group(ec2, db)["IpPermissions"]
    [pair] = perm["UserIdGroupPairs"]
    assert pair["GroupId"] == app
    assert pair["UserId"] == A_ID
    assert "VpcPeeringConnectionId" not in pair
    # `app` is referenced by `db`: it cannot go.
    with expect_error("DependencyViolation"):
        ec2.delete_security_group(GroupId=app)
    # A VPC with a non-default group cannot go either.
    with expect_error("DependencyViolation"):
        ec2.delete_vpc(VpcId=vid)
    ec2.revoke_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": app}]}])
    ec2.delete_security_group(GroupId=app)
    with expect_error("InvalidGroup.NotFound"):
        ec2.describe_security_groups(GroupIds=[app])
    with expect_error("InvalidGroup.NotFound"):
        ec2.delete_security_group(GroupId=app)
    ec2.delete_security_group(GroupId=db)
    ec2.delete_vpc(VpcId=vid)


def test_dry_run_authorize(client):
    ec2 = client("A")
    vid = make_vpc(ec2, "10.88.0.0/16")
    gid = ec2.create_security_group(GroupName="dry", Description="dry", VpcId=vid)["GroupId"]
    with expect_error("DryRunOperation", 412):
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[SSH], DryRun=True)
    assert group(ec2, gid)["IpPermissions"] == []


def test_another_accounts_group_looks_missing_without_a_peering(client):
    """Referencing B's group from A's VPC with no peering must not reveal that
    the group exists or who owns it: same error as a made-up ID."""
    a, b = client("A"), client("B")
    va = make_vpc(a, "10.86.0.0/16")
    vb = make_vpc(b, "10.87.0.0/16")
    ga = a.create_security_group(GroupName="app", Description="app", VpcId=va)["GroupId"]
    gb = b.create_security_group(GroupName="db", Description="db", VpcId=vb)["GroupId"]

    def ref(gid, user):
        return a.authorize_security_group_ingress(GroupId=ga, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
            "UserIdGroupPairs": [{"GroupId": gid, "UserId": user}]}])

    with expect_error("InvalidGroup.NotFound") as real:
        ref(gb, B_ID)
    with expect_error("InvalidGroup.NotFound") as fake:
        ref("sg-0123456789abcdef0", B_ID)
    def msg(h):
        return h.error.response["Error"]["Message"].replace(gb, "ID").replace("sg-0123456789abcdef0", "ID")

    assert msg(real) == msg(fake)


def test_default_quotas_allow_five_groups_and_1000_rules_on_one_interface(server_factory):
    """Quotas are settings, and the defaults are AWS's raised maximums: five
    groups of 200 rules (1,000 in all) on one interface; the 201st rule of a
    group is refused."""
    srv = server_factory(limits=None)
    ec2 = srv.client("A")
    vid = make_vpc(ec2, "10.89.0.0/16")
    sub = ec2.create_subnet(VpcId=vid, CidrBlock="10.89.1.0/24")["Subnet"]["SubnetId"]
    groups = []
    for g in range(5):
        gid = ec2.create_security_group(GroupName=f"q{g}", Description="quota", VpcId=vid)["GroupId"]
        perms = [{"IpProtocol": "tcp", "FromPort": 1000 + i, "ToPort": 1000 + i,
                  "IpRanges": [{"CidrIp": f"10.{g}.{i // 250}.{i % 250}/32"}]} for i in range(200)]
        for k in range(0, 200, 100):
            ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms[k:k + 100])
        groups.append(gid)
    with expect_error("RulesPerSecurityGroupLimitExceeded"):
        ec2.authorize_security_group_ingress(GroupId=groups[0], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 9, "ToPort": 9, "IpRanges": [{"CidrIp": "192.0.2.1/32"}]}])
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sub,
                             SecurityGroupIds=groups)["Instances"][0]
    assert sorted(g["GroupId"] for g in inst["SecurityGroups"]) == sorted(groups)
    pages = ec2.get_paginator("describe_security_group_rules").paginate(
        Filters=[{"Name": "group-id", "Values": groups}], PaginationConfig={"PageSize": 500})
    rules = [r for page in pages for r in page["SecurityGroupRules"]]
    assert sum(1 for r in rules if not r["IsEgress"]) == 1000
