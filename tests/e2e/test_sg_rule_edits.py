"""ModifySecurityGroupRules and UpdateSecurityGroupRuleDescriptionsIngress/Egress
through boto3: the rule keeps its ID, the body is replaced; descriptions by
permission or by rule ID; AWS's codes for what does not exist."""

from __future__ import annotations

from helpers import expect_error, make_vpc


def rules(ec2, sg: str, egress: bool = False) -> list[dict]:
    got = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [sg]}])["SecurityGroupRules"]
    return [r for r in got if r["IsEgress"] == egress]


def test_modify_security_group_rules_keeps_the_id(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    sg = ec2.create_security_group(GroupName="edit", Description="d", VpcId=vid)["GroupId"]
    other = ec2.create_security_group(GroupName="other", Description="d", VpcId=vid)["GroupId"]
    out = ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    ssh, https = [r["SecurityGroupRuleId"] for r in out["SecurityGroupRules"]]
    assert ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
        "SecurityGroupRuleId": ssh,
        "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 2222, "ToPort": 2222,
                              "CidrIpv4": "192.168.0.0/16", "Description": "moved"}}])["Return"] is True
    [r] = [x for x in rules(ec2, sg) if x["SecurityGroupRuleId"] == ssh]
    assert (r["FromPort"], r["ToPort"], r["CidrIpv4"], r["Description"]) == (2222, 2222, "192.168.0.0/16", "moved")
    # To a referenced group, then to a prefix list.
    ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
        "SecurityGroupRuleId": ssh,
        "SecurityGroupRule": {"IpProtocol": "-1", "ReferencedGroupId": other}}])
    [r] = [x for x in rules(ec2, sg) if x["SecurityGroupRuleId"] == ssh]
    assert r["ReferencedGroupInfo"]["GroupId"] == other and r["IpProtocol"] == "-1" and "Description" not in r
    pl = ec2.create_managed_prefix_list(PrefixListName="edit", AddressFamily="IPv4", MaxEntries=2)[
        "PrefixList"]["PrefixListId"]
    ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
        "SecurityGroupRuleId": ssh,
        "SecurityGroupRule": {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "PrefixListId": pl}}])
    [r] = [x for x in rules(ec2, sg) if x["SecurityGroupRuleId"] == ssh]
    assert r["PrefixListId"] == pl
    # Refusals: a duplicate of another rule, an unknown rule, an unknown list; nothing changes.
    before = rules(ec2, sg)
    with expect_error("InvalidPermission.Duplicate"):
        ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
            "SecurityGroupRuleId": ssh,
            "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIpv4": "10.0.0.0/8"}}])
    with expect_error("InvalidSecurityGroupRuleId.NotFound") as h:
        ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
            "SecurityGroupRuleId": "sgr-0123456789abcdef0",
            "SecurityGroupRule": {"IpProtocol": "-1", "CidrIpv4": "0.0.0.0/0"}}])
    assert h.error.response["Error"]["Message"] == \
        "The security group rule ID 'sgr-0123456789abcdef0' does not exist"
    with expect_error("InvalidPrefixListID.NotFound"):
        ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
            "SecurityGroupRuleId": https,
            "SecurityGroupRule": {"IpProtocol": "-1", "PrefixListId": "pl-0123456789abcdef0"}}])
    with expect_error("InvalidParameterCombination"):
        ec2.modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
            "SecurityGroupRuleId": https,
            "SecurityGroupRule": {"IpProtocol": "-1", "CidrIpv4": "1.0.0.0/8", "CidrIpv6": "::/0"}}])
    with expect_error("DryRunOperation", 412):
        ec2.modify_security_group_rules(GroupId=sg, DryRun=True, SecurityGroupRules=[{
            "SecurityGroupRuleId": https, "SecurityGroupRule": {"IpProtocol": "-1", "CidrIpv4": "1.0.0.0/8"}}])
    assert rules(ec2, sg) == before
    # Another account cannot edit it.
    with expect_error("InvalidGroup.NotFound"):
        client("B").modify_security_group_rules(GroupId=sg, SecurityGroupRules=[{
            "SecurityGroupRuleId": https, "SecurityGroupRule": {"IpProtocol": "-1", "CidrIpv4": "1.0.0.0/8"}}])


def test_update_rule_descriptions(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    sg = ec2.create_security_group(GroupName="desc", Description="d", VpcId=vid)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "old"}]}])
    ec2.update_security_group_rule_descriptions_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "new"}]}])
    g = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
    assert g["IpPermissions"][0]["IpRanges"] == [{"CidrIp": "10.1.0.0/16", "Description": "new"}]
    # An omitted description removes it.
    ec2.update_security_group_rule_descriptions_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}])
    g = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
    assert g["IpPermissions"][0]["IpRanges"] == [{"CidrIp": "10.1.0.0/16"}]
    with expect_error("InvalidPermission.NotFound") as h:
        ec2.update_security_group_rule_descriptions_ingress(GroupId=sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 81, "ToPort": 81,
             "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "x"}]}])
    assert h.error.response["Error"]["Message"] == "The specified rule does not exist in this security group"
    # By rule ID, egress.
    [eg] = [r["SecurityGroupRuleId"] for r in rules(ec2, sg, egress=True)]
    ec2.update_security_group_rule_descriptions_egress(GroupId=sg, SecurityGroupRuleDescriptions=[
        {"SecurityGroupRuleId": eg, "Description": "all out"}])
    assert rules(ec2, sg, egress=True)[0]["Description"] == "all out"
    with expect_error("InvalidSecurityGroupRuleId.NotFound"):
        ec2.update_security_group_rule_descriptions_egress(GroupId=sg, SecurityGroupRuleDescriptions=[
            {"SecurityGroupRuleId": "sgr-0123456789abcdef0", "Description": "x"}])
    # An ingress rule's ID is not an egress rule.
    [ing] = [r["SecurityGroupRuleId"] for r in rules(ec2, sg)]
    with expect_error("InvalidSecurityGroupRuleId.NotFound"):
        ec2.update_security_group_rule_descriptions_egress(GroupId=sg, SecurityGroupRuleDescriptions=[
            {"SecurityGroupRuleId": ing, "Description": "x"}])
