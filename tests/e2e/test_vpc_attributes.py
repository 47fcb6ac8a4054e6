"""The remaining VPC and subnet attributes (issue 10) through boto3:
ModifyVpcTenancy, enableNetworkAddressUsageMetrics, EnableDns64, the
Outposts-only subnet attributes, and a prefix list's MaxEntries counted
against the quotas of the security groups and route tables that use it."""

from __future__ import annotations

from helpers import expect_error, make_vpc, unique_cidr


def subnet_in(ec2, vid):
    cidr = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["CidrBlock"]
    return ec2.create_subnet(VpcId=vid, CidrBlock=cidr.replace(".0.0/16", ".1.0/24"))["Subnet"]["SubnetId"]


def run_one(ec2, sid, **kw):
    return ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid,
                             InstanceType="m5.large", **kw)["Instances"][0]


def test_modify_vpc_tenancy_goes_to_default_only(client):
    ec2 = client("A")
    vid = make_vpc(ec2, InstanceTenancy="dedicated")
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["InstanceTenancy"] == "dedicated"
    sid = subnet_in(ec2, vid)
    before = run_one(ec2, sid)
    assert before["Placement"]["Tenancy"] == "dedicated"
    with expect_error("InvalidParameterValue") as h:
        ec2.modify_vpc_tenancy(VpcId=vid, InstanceTenancy="dedicated")
    assert h.error.response["Error"]["Message"] == (
        "Value (dedicated) for parameter instanceTenancy is invalid. "
        "The instance tenancy of a VPC can only be changed to default.")
    with expect_error("InvalidVpcID.NotFound"):
        ec2.modify_vpc_tenancy(VpcId="vpc-0123456789abcdef0", InstanceTenancy="default")
    with expect_error("DryRunOperation", 412):
        ec2.modify_vpc_tenancy(VpcId=vid, InstanceTenancy="default", DryRun=True)
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["InstanceTenancy"] == "dedicated"
    assert ec2.modify_vpc_tenancy(VpcId=vid, InstanceTenancy="default")["ReturnValue"] is True
    assert ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["InstanceTenancy"] == "default"
    assert ec2.describe_vpcs(Filters=[{"Name": "instance-tenancy", "Values": ["default"]},
                                      {"Name": "vpc-id", "Values": [vid]}])["Vpcs"]
    # Instances already running keep theirs; new ones get the VPC's, unless asked.
    got = ec2.describe_instances(InstanceIds=[before["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert got["Placement"]["Tenancy"] == "dedicated"
    assert run_one(ec2, sid)["Placement"]["Tenancy"] == "default"
    assert run_one(ec2, sid, Placement={"Tenancy": "dedicated"})["Placement"]["Tenancy"] == "dedicated"
    with expect_error("InvalidParameterValue"):
        run_one(ec2, sid, Placement={"Tenancy": "host"})
    # Another account's VPC is not found.
    with expect_error("InvalidVpcID.NotFound"):
        client("B").modify_vpc_tenancy(VpcId=vid, InstanceTenancy="default")


def test_network_address_usage_metrics(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    attr = "enableNetworkAddressUsageMetrics"
    get = lambda: ec2.describe_vpc_attribute(VpcId=vid, Attribute=attr)["EnableNetworkAddressUsageMetrics"]["Value"]
    assert get() is False
    ec2.modify_vpc_attribute(VpcId=vid, EnableNetworkAddressUsageMetrics={"Value": True})
    assert get() is True
    with expect_error("InvalidParameterCombination") as h:
        ec2.modify_vpc_attribute(VpcId=vid, EnableNetworkAddressUsageMetrics={"Value": False},
                                 EnableDnsSupport={"Value": True})
    assert h.error.response["Error"]["Message"] == (
        "Fields for multiple attribute types specified: enableDnsSupport, enableNetworkAddressUsageMetrics")
    assert get() is True
    ec2.modify_vpc_attribute(VpcId=vid, EnableNetworkAddressUsageMetrics={"Value": False})
    assert get() is False


def test_subnet_dns64_and_outposts_attributes(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    sid = subnet_in(ec2, vid)
    sub = lambda: ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert sub()["EnableDns64"] is False
    ec2.modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": True})
    assert sub()["EnableDns64"] is True
    assert [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "enable-dns64", "Values": ["true"]}, {"Name": "vpc-id", "Values": [vid]}])["Subnets"]] == [sid]
    # Customer-owned IPs and local network interfaces need an Outpost.
    with expect_error("InvalidParameterValue") as h:
        ec2.modify_subnet_attribute(SubnetId=sid, MapCustomerOwnedIpOnLaunch={"Value": True},
                                    CustomerOwnedIpv4Pool="ipv4pool-coip-0123456789abcdef0")
    assert "not in an Outpost" in h.error.response["Error"]["Message"]
    with expect_error("InvalidParameterValue") as h:
        ec2.modify_subnet_attribute(SubnetId=sid, EnableLniAtDeviceIndex=1)
    assert "not in an Outpost" in h.error.response["Error"]["Message"]
    # Turning them off is what the subnet already is.
    ec2.modify_subnet_attribute(SubnetId=sid, MapCustomerOwnedIpOnLaunch={"Value": False})
    ec2.modify_subnet_attribute(SubnetId=sid, DisableLniAtDeviceIndex={"Value": True})
    s = sub()
    assert s["MapCustomerOwnedIpOnLaunch"] is False and "EnableLniAtDeviceIndex" not in s
    with expect_error("InvalidSubnetID.NotFound"):
        ec2.modify_subnet_attribute(SubnetId="subnet-0123456789abcdef0", EnableDns64={"Value": True})
    with expect_error("InvalidSubnetID.NotFound"):
        client("B").modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": False})
    assert sub()["EnableDns64"] is True


def test_a_prefix_list_counts_max_entries_and_a_resize_rechecks_its_users(server_factory):
    s = server_factory(limits={"rules_per_security_group": 20, "routes_per_table": 10})
    ec2 = s.client("A")
    vid = make_vpc(ec2, unique_cidr())
    pl = ec2.create_managed_prefix_list(PrefixListName="office", AddressFamily="IPv4", MaxEntries=5,
                                        Entries=[{"Cidr": "198.51.100.0/24"}])["PrefixList"]["PrefixListId"]
    gid = ec2.create_security_group(GroupName="web", Description="web", VpcId=vid)["GroupId"]
    ranges = [{"CidrIp": f"192.0.2.{i}/32"} for i in range(14)]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": ranges}])
    # 14 rules + a list of 5 = 19 of 20.
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": pl}]}])
    # The list counts as 5 rules: one more 5-entry list does not fit.
    pl2 = ec2.create_managed_prefix_list(PrefixListName="other", AddressFamily="IPv4", MaxEntries=5,
                                         Entries=[{"Cidr": "203.0.113.0/24"}])["PrefixList"]["PrefixListId"]
    with expect_error("RulesPerSecurityGroupLimitExceeded"):
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "PrefixListIds": [{"PrefixListId": pl2}]}])

    # Nor may a CIDR rule become one naming that list (19 - 1 + 5 = 23).
    rule = next(r for r in ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [gid]}])["SecurityGroupRules"] if r.get("CidrIpv4") == "192.0.2.13/32")
    with expect_error("RulesPerSecurityGroupLimitExceeded"):
        ec2.modify_security_group_rules(GroupId=gid, SecurityGroupRules=[{
            "SecurityGroupRuleId": rule["SecurityGroupRuleId"],
            "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "PrefixListId": pl2}}])
    assert ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])[
        "SecurityGroupRules"][0]["CidrIpv4"] == "192.0.2.13/32"

    # A route table: 3 plain routes + the list (5) = 8 of 10.
    rtb = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    for i in range(3):
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=f"100.64.{i}.0/24", GatewayId=igw)
    ec2.create_route(RouteTableId=rtb, DestinationPrefixListId=pl, GatewayId=igw)

    def max_entries():
        return ec2.describe_managed_prefix_lists(PrefixListIds=[pl])["PrefixLists"][0]["MaxEntries"]

    # Growing to 7 would make the group 21 rules: refused, nothing changes.
    with expect_error("RulesPerSecurityGroupLimitExceeded") as h:
        ec2.modify_managed_prefix_list(PrefixListId=pl, MaxEntries=7)
    assert gid in h.error.response["Error"]["Message"]
    assert max_entries() == 5
    # Room in the group (a rule revoked), but the table would hold 3 + 8 = 11 routes.
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": ranges[:5]}])
    with expect_error("RouteLimitExceeded") as h:
        ec2.modify_managed_prefix_list(PrefixListId=pl, MaxEntries=8)
    assert rtb in h.error.response["Error"]["Message"]
    assert max_entries() == 5
    # 7 fits both: 9 + 7 = 16 rules, 3 + 7 = 10 routes.
    got = ec2.modify_managed_prefix_list(PrefixListId=pl, MaxEntries=7)["PrefixList"]
    assert got["MaxEntries"] == 7 and max_entries() == 7
    # And the new size counts from now on: 3 + 7 routes leaves no room for another.
    with expect_error("RouteLimitExceeded"):
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="100.64.9.0/24", GatewayId=igw)
    # Shrinking is always allowed (down to the entries it holds).
    assert ec2.modify_managed_prefix_list(PrefixListId=pl, MaxEntries=2)["PrefixList"]["MaxEntries"] == 2


def test_ipv6_native_false_is_a_dual_stack_subnet(client):
    # Ipv6Native=true is covered by test_ipv6_native_subnets.py.
    ec2 = client("A")
    vid = make_vpc(ec2, AmazonProvidedIpv6CidrBlock=True)
    v = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]
    block = v["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"].replace("00::/56", "00::/64")
    s = ec2.create_subnet(VpcId=vid, Ipv6Native=False, CidrBlock=v["CidrBlock"].replace(".0.0/16", ".1.0/24"),
                          Ipv6CidrBlock=block)["Subnet"]
    assert s["Ipv6Native"] is False and s["CidrBlock"] == v["CidrBlock"].replace(".0.0/16", ".1.0/24")
