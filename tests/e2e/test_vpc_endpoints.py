"""VPC endpoints through boto3 and the aws CLI: gateway endpoints for S3 and
DynamoDB (the prefix-list route in the chosen tables, the analyzer following
it), interface endpoints (requester-managed interfaces), the service
catalogue, and negative cases with AWS's codes.
"""

from __future__ import annotations

from helpers import A_ID, expect_error, is_id, make_vpc, tags_of, run_analysis

S3 = "com.amazonaws.us-east-1.s3"
DDB = "com.amazonaws.us-east-1.dynamodb"


def table(ec2, vpc_id: str) -> str:
    return ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]


def routes(ec2, rtb: str) -> list[dict]:
    return ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]


def service_list_id(ec2, name: str) -> str:
    return ec2.describe_prefix_lists(Filters=[{"Name": "prefix-list-name", "Values": [name]}])[
        "PrefixLists"][0]["PrefixListId"]


def test_gateway_endpoint_routes_the_service_list(client):
    ec2 = client("A")
    vid = make_vpc(ec2)
    rt1, rt2, rt3 = table(ec2, vid), table(ec2, vid), table(ec2, vid)
    e = ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, RouteTableIds=[rt1, rt2], TagSpecifications=[
        {"ResourceType": "vpc-endpoint", "Tags": [{"Key": "Name", "Value": "s3"}]}])["VpcEndpoint"]
    eid = e["VpcEndpointId"]
    assert is_id("vpce", eid)
    assert e["VpcEndpointType"] == "Gateway" and e["State"] == "available" and e["OwnerId"] == A_ID
    assert sorted(e["RouteTableIds"]) == sorted([rt1, rt2]) and tags_of(e) == {"Name": "s3"}
    assert '"Effect":"Allow"' in e["PolicyDocument"]
    pl = service_list_id(ec2, S3)
    for rt in (rt1, rt2):
        mine = [r for r in routes(ec2, rt) if r.get("DestinationPrefixListId") == pl]
        assert mine == [{"DestinationPrefixListId": pl, "GatewayId": eid, "State": "active",
                         "Origin": "CreateRoute"}], routes(ec2, rt)
    assert not [r for r in routes(ec2, rt3) if r.get("DestinationPrefixListId")]
    # A table holds one route to the list: a second S3 endpoint on rt1 is refused.
    with expect_error("RouteAlreadyExists") as h:
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, RouteTableIds=[rt1])
    assert h.error.response["Error"]["Message"] == \
        f"route table {rt1} already has a route with destination-prefix-list-id {pl}"
    # The endpoint's route changes only through ModifyVpcEndpoint.
    with expect_error("InvalidParameterValue"):
        ec2.delete_route(RouteTableId=rt1, DestinationPrefixListId=pl)
    ec2.modify_vpc_endpoint(VpcEndpointId=eid, AddRouteTableIds=[rt3], RemoveRouteTableIds=[rt1])
    got = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"][0]
    assert sorted(got["RouteTableIds"]) == sorted([rt2, rt3])
    assert not [r for r in routes(ec2, rt1) if r.get("DestinationPrefixListId")]
    assert [r["GatewayId"] for r in routes(ec2, rt3) if r.get("DestinationPrefixListId") == pl] == [eid]
    ec2.modify_vpc_endpoint(VpcEndpointId=eid, PolicyDocument='{"Statement":[]}')
    assert ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"][0]["PolicyDocument"] == \
        '{"Statement":[]}'
    ec2.modify_vpc_endpoint(VpcEndpointId=eid, ResetPolicy=True)
    # Filters, tags and paging.
    d = ec2.create_vpc_endpoint(VpcId=vid, ServiceName=DDB, RouteTableIds=[rt1])["VpcEndpoint"]
    by_service = ec2.describe_vpc_endpoints(Filters=[{"Name": "service-name", "Values": [DDB]},
                                                     {"Name": "vpc-id", "Values": [vid]}])["VpcEndpoints"]
    assert [x["VpcEndpointId"] for x in by_service] == [d["VpcEndpointId"]]
    by_tag = ec2.describe_vpc_endpoints(Filters=[{"Name": "tag:Name", "Values": ["s3"]}])["VpcEndpoints"]
    assert [x["VpcEndpointId"] for x in by_tag] == [eid]
    page = ec2.describe_vpc_endpoints(MaxResults=5, Filters=[{"Name": "vpc-id", "Values": [vid]}])
    assert len(page["VpcEndpoints"]) == 2 and "NextToken" not in page
    # A VPC with an endpoint cannot be deleted.
    with expect_error("DependencyViolation"):
        ec2.delete_vpc(VpcId=vid)
    with expect_error("DryRunOperation", 412):
        ec2.delete_vpc_endpoints(VpcEndpointIds=[eid], DryRun=True)
    out = ec2.delete_vpc_endpoints(VpcEndpointIds=[eid, d["VpcEndpointId"], "vpce-0123456789abcdef0"])
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in out["Unsuccessful"]] == \
        [("vpce-0123456789abcdef0", "InvalidVpcEndpointId.NotFound")]
    for rt in (rt1, rt2, rt3):
        assert not [r for r in routes(ec2, rt) if r.get("DestinationPrefixListId")]
    assert ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vid]}])["VpcEndpoints"] == []


def test_gateway_endpoint_refusals(client):
    ec2 = client("A")
    vid, other = make_vpc(ec2), make_vpc(ec2)
    rt_other = table(ec2, other)
    with expect_error("InvalidServiceName"):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName="com.amazonaws.us-east-1.nosuch")
    with expect_error("InvalidServiceName"):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName="com.amazonaws.us-west-2.s3")
    with expect_error("InvalidParameterValue"):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, RouteTableIds=[rt_other])
    with expect_error("InvalidRouteTableID.NotFound"):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, RouteTableIds=["rtb-0123456789abcdef0"])
    with expect_error("InvalidVpcID.NotFound"):
        ec2.create_vpc_endpoint(VpcId="vpc-0123456789abcdef0", ServiceName=S3)
    with expect_error("InvalidParameterValue"):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName=DDB, VpcEndpointType="Interface")
    with expect_error("InvalidVpcEndpointId.NotFound"):
        ec2.modify_vpc_endpoint(VpcEndpointId="vpce-0123456789abcdef0", ResetPolicy=True)
    with expect_error("InvalidVpcEndpointId.Malformed"):
        ec2.describe_vpc_endpoints(VpcEndpointIds=["zz"])
    with expect_error("DryRunOperation", 412):
        ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, DryRun=True)
    assert ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vid, other]}])["VpcEndpoints"] == []
    # Another account sees nothing of it.
    e = ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3)["VpcEndpoint"]["VpcEndpointId"]
    with expect_error("InvalidVpcEndpointId.NotFound"):
        client("B").describe_vpc_endpoints(VpcEndpointIds=[e])
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e])


def test_interface_endpoint_holds_requester_managed_interfaces(client):
    ec2 = client("A")
    vid = ec2.create_vpc(CidrBlock="10.34.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    s1 = ec2.create_subnet(VpcId=vid, CidrBlock="10.34.1.0/24", AvailabilityZone=zones[0])["Subnet"]["SubnetId"]
    s2 = ec2.create_subnet(VpcId=vid, CidrBlock="10.34.2.0/24", AvailabilityZone=zones[1])["Subnet"]["SubnetId"]
    s3 = ec2.create_subnet(VpcId=vid, CidrBlock="10.34.3.0/24", AvailabilityZone=zones[0])["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="ep", Description="ep", VpcId=vid)["GroupId"]
    e = ec2.create_vpc_endpoint(VpcId=vid, ServiceName="com.amazonaws.us-east-1.ssm",
                                VpcEndpointType="Interface", SubnetIds=[s1, s2],
                                SecurityGroupIds=[sg])["VpcEndpoint"]
    assert e["VpcEndpointType"] == "Interface" and e["PrivateDnsEnabled"] is True
    assert sorted(e["SubnetIds"]) == sorted([s1, s2]) and [g["GroupId"] for g in e["Groups"]] == [sg]
    assert e["DnsEntries"][0]["DnsName"].endswith(".ssm.us-east-1.vpce.amazonaws.com")
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=e["NetworkInterfaceIds"])["NetworkInterfaces"]
    assert sorted(n["SubnetId"] for n in enis) == sorted([s1, s2])
    for n in enis:
        assert n["RequesterManaged"] is True and n["InterfaceType"] == "vpc_endpoint"
        assert n["Status"] == "in-use" and [g["GroupId"] for g in n["Groups"]] == [sg]
        assert n["Description"] == f"VPC Endpoint Interface {e['VpcEndpointId']}"
        with expect_error("InvalidNetworkInterface.InUse"):
            ec2.delete_network_interface(NetworkInterfaceId=n["NetworkInterfaceId"])
    # One subnet per zone.
    with expect_error("DuplicateSubnetsInSameZone"):
        ec2.modify_vpc_endpoint(VpcEndpointId=e["VpcEndpointId"], AddSubnetIds=[s3])
    with expect_error("InvalidParameter"):
        ec2.modify_vpc_endpoint(VpcEndpointId=e["VpcEndpointId"], AddRouteTableIds=[table(ec2, vid)])
    ec2.modify_vpc_endpoint(VpcEndpointId=e["VpcEndpointId"], RemoveSubnetIds=[s1])
    got = ec2.describe_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"]])["VpcEndpoints"][0]
    assert got["SubnetIds"] == [s2] and len(got["NetworkInterfaceIds"]) == 1
    # The subnet's interface is in the way of deleting the subnet until the endpoint goes.
    with expect_error("DependencyViolation"):
        ec2.delete_subnet(SubnetId=s2)
    ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"]])
    assert ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vid]}])["NetworkInterfaces"] == []
    ec2.delete_subnet(SubnetId=s2)


def test_endpoint_services_catalogue(client, aws):
    ec2 = client("A")
    out = ec2.describe_vpc_endpoint_services()
    assert S3 in out["ServiceNames"] and DDB in out["ServiceNames"]
    s3 = [d for d in out["ServiceDetails"] if d["ServiceName"] == S3][0]
    assert sorted(t["ServiceType"] for t in s3["ServiceType"]) == ["Gateway", "Interface"]
    assert s3["Owner"] == "amazon" and s3["AvailabilityZones"]
    gw = ec2.describe_vpc_endpoint_services(Filters=[{"Name": "service-type", "Values": ["Gateway"]}])
    assert sorted(gw["ServiceNames"]) == sorted([DDB, S3])
    with expect_error("InvalidServiceName"):
        ec2.describe_vpc_endpoint_services(ServiceNames=["com.amazonaws.us-east-1.nosuch"])
    cli = aws("A", "ec2", "describe-vpc-endpoint-services", "--service-names", DDB)
    assert cli["ServiceNames"] == [DDB]


def test_the_analyzer_follows_a_gateway_endpoint_route(client):
    ec2 = client("A")
    vid = ec2.create_vpc(CidrBlock="10.35.0.0/16")["Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.35.1.0/24")["Subnet"]["SubnetId"]
    iid = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid)[
        "Instances"][0]["InstanceId"]
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"][0]["RouteTableId"]
    s3_ip = ec2.get_managed_prefix_list_entries(PrefixListId=service_list_id(ec2, S3))["Entries"][0][
        "Cidr"].split("/")[0]
    assert run_analysis(ec2, iid, s3_ip, "tcp", 443)["NetworkPathFound"] is False  # no route at all
    eid = ec2.create_vpc_endpoint(VpcId=vid, ServiceName=S3, RouteTableIds=[rtb])["VpcEndpoint"]["VpcEndpointId"]
    got = run_analysis(ec2, iid, s3_ip, "tcp", 443)
    assert got["NetworkPathFound"] is True, got.get("Explanations")
    components = [h["Component"]["Id"] for h in got["ForwardPathComponents"]]
    assert eid in components, components
    # The instance's group decides: an egress rule naming the S3 list only, port 443.
    sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"][0]["GroupId"]
    ec2.revoke_security_group_egress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert run_analysis(ec2, iid, s3_ip, "tcp", 443)["NetworkPathFound"] is False
    ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "PrefixListIds": [{"PrefixListId": service_list_id(ec2, S3)}]}])
    assert run_analysis(ec2, iid, s3_ip, "tcp", 443)["NetworkPathFound"] is True
    assert run_analysis(ec2, iid, s3_ip, "tcp", 80)["NetworkPathFound"] is False
    ec2.delete_vpc_endpoints(VpcEndpointIds=[eid])
    assert run_analysis(ec2, iid, s3_ip, "tcp", 443)["NetworkPathFound"] is False
