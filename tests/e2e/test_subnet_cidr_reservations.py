"""Subnet CIDR reservations through boto3 (issue 10): create, get, delete,
AWS's errors, tags, filters, paging, DryRun, the effect on automatic address
assignment, and durability across kill -9."""

from __future__ import annotations

import ipaddress

from helpers import expect_error, make_vpc, tags_of, unique_cidr


def vpc_and_subnet(ec2, ipv6: bool = False):
    cidr = unique_cidr()
    vid = make_vpc(ec2, cidr, AmazonProvidedIpv6CidrBlock=ipv6)
    kw = {}
    if ipv6:
        block = ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
        kw["Ipv6CidrBlock"] = block.replace("00::/56", "00::/64")
    sub = cidr.replace(".0.0/16", ".1.0/24")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=sub, AvailabilityZone="us-east-1a", **kw)["Subnet"]["SubnetId"]
    return vid, sid, ipaddress.ip_network(sub), (ipaddress.ip_network(kw["Ipv6CidrBlock"]) if ipv6 else None)


def reserve(ec2, sid, cidr, kind="explicit", **kw):
    return ec2.create_subnet_cidr_reservation(SubnetId=sid, Cidr=str(cidr), ReservationType=kind,
                                              **kw)["SubnetCidrReservation"]


def test_create_get_delete_with_tags_filters_and_paging(client):
    ec2 = client("A")
    _, sid, net, net6 = vpc_and_subnet(ec2, ipv6=True)
    base = int(net.network_address)
    r1 = reserve(ec2, sid, f"{ipaddress.ip_address(base)}/28", "explicit", Description="appliances",
                 TagSpecifications=[{"ResourceType": "subnet-cidr-reservation",
                                     "Tags": [{"Key": "team", "Value": "net"}]}])
    assert r1["SubnetCidrReservationId"].startswith("scr-")
    assert (r1["SubnetId"], r1["Cidr"], r1["ReservationType"], r1["Description"]) == (
        sid, f"{net.network_address}/28", "explicit", "appliances")
    assert r1["OwnerId"] and tags_of(r1) == {"team": "net"}
    # Host bits are zeroed, as for every CIDR vpcd takes.
    r2 = reserve(ec2, sid, f"{ipaddress.ip_address(base + 17)}/28", "prefix")
    assert r2["Cidr"] == f"{ipaddress.ip_address(base + 16)}/28"
    r6 = reserve(ec2, sid, f"{net6.network_address}/80", "prefix")
    assert r6["Cidr"] == f"{net6.network_address}/80"

    got = ec2.get_subnet_cidr_reservations(SubnetId=sid)
    assert {r["SubnetCidrReservationId"] for r in got["SubnetIpv4CidrReservations"]} == {
        r1["SubnetCidrReservationId"], r2["SubnetCidrReservationId"]}
    assert [r["SubnetCidrReservationId"] for r in got["SubnetIpv6CidrReservations"]] == [
        r6["SubnetCidrReservationId"]]
    f = ec2.get_subnet_cidr_reservations(SubnetId=sid, Filters=[{"Name": "reservationType", "Values": ["prefix"]}])
    assert {r["Cidr"] for r in f["SubnetIpv4CidrReservations"] + f["SubnetIpv6CidrReservations"]} == {
        r2["Cidr"], r6["Cidr"]}
    f = ec2.get_subnet_cidr_reservations(SubnetId=sid, Filters=[{"Name": "tag:team", "Values": ["net"]}])
    assert [r["Cidr"] for r in f["SubnetIpv4CidrReservations"]] == [r1["Cidr"]]
    with expect_error("InvalidParameterValue"):
        ec2.get_subnet_cidr_reservations(SubnetId=sid, Filters=[{"Name": "nope", "Values": ["x"]}])
    # Paging: five at a time, through NextToken.
    for i in range(2, 8):
        reserve(ec2, sid, f"{ipaddress.ip_address(base + 16 * i)}/28")
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = ec2.get_subnet_cidr_reservations(SubnetId=sid, MaxResults=5, **kw)
        got = page["SubnetIpv4CidrReservations"] + page["SubnetIpv6CidrReservations"]
        assert len(got) <= 5
        seen += [r["SubnetCidrReservationId"] for r in got]
        token = page.get("NextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 9
    with expect_error("InvalidParameterValue"):
        ec2.get_subnet_cidr_reservations(SubnetId=sid, MaxResults=1001)

    # Tags through CreateTags/DescribeTags like any resource.
    ec2.create_tags(Resources=[r2["SubnetCidrReservationId"]], Tags=[{"Key": "k", "Value": "v"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [r2["SubnetCidrReservationId"]]}])["Tags"]
    assert [(t["Key"], t["Value"], t["ResourceType"]) for t in rows] == [("k", "v", "subnet-cidr-reservation")]

    # DryRun changes nothing.
    with expect_error("DryRunOperation", 412):
        reserve(ec2, sid, f"{ipaddress.ip_address(base + 160)}/28", DryRun=True)
    with expect_error("DryRunOperation", 412):
        ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=r1["SubnetCidrReservationId"], DryRun=True)
    with expect_error("DryRunOperation", 412):
        ec2.get_subnet_cidr_reservations(SubnetId=sid, DryRun=True)

    d = ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=r1["SubnetCidrReservationId"])
    assert d["DeletedSubnetCidrReservation"]["Cidr"] == r1["Cidr"]
    with expect_error("InvalidSubnetCidrReservationID.NotFound") as h:
        ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=r1["SubnetCidrReservationId"])
    assert h.error.response["Error"]["Message"] == (
        f"The subnet CIDR reservation ID '{r1['SubnetCidrReservationId']}' does not exist")
    left = ec2.get_subnet_cidr_reservations(SubnetId=sid)["SubnetIpv4CidrReservations"]
    assert r1["SubnetCidrReservationId"] not in {r["SubnetCidrReservationId"] for r in left}


def test_errors(client):
    ec2, other = client("A"), client("B")
    _, sid, net, _ = vpc_and_subnet(ec2)
    base = int(net.network_address)
    inside = f"{ipaddress.ip_address(base + 32)}/28"
    reserve(ec2, sid, inside)
    before = ec2.get_subnet_cidr_reservations(SubnetId=sid)
    cases = [
        (dict(Cidr="10.250.0.0/28", ReservationType="explicit"), "InvalidParameterValue",
         f"Reservation CIDR 10.250.0.0/28 is not within the CIDR blocks of subnet {sid}"),
        # An IPv6 reservation in a subnet without an IPv6 block.
        (dict(Cidr="2600:1f18::/80", ReservationType="prefix"), "InvalidParameterValue",
         f"Reservation CIDR 2600:1f18::/80 is not within the CIDR blocks of subnet {sid}"),
        (dict(Cidr=f"{ipaddress.ip_address(base + 40)}/29", ReservationType="explicit"), "InvalidParameterValue",
         f"Reservation CIDR {ipaddress.ip_address(base + 40)}/29 has overlap with existing reserved CIDR block"),
        (dict(Cidr=f"{net.network_address}/24", ReservationType="prefix"), "InvalidParameterValue",
         f"Reservation CIDR {net.network_address}/24 has overlap with existing reserved CIDR block"),
        (dict(Cidr="10.1.1.300/28", ReservationType="explicit"), "InvalidParameterValue",
         "Value (10.1.1.300/28) for parameter cidr is invalid. This is not a valid CIDR block."),
        (dict(Cidr=f"{net.network_address}/28", ReservationType="implicit"), "InvalidParameterValue",
         "Value (implicit) for parameter reservationType is invalid. Valid values: prefix, explicit."),
    ]
    for kw, code, message in cases:
        with expect_error(code) as h:
            ec2.create_subnet_cidr_reservation(SubnetId=sid, **kw)
        assert h.error.response["Error"]["Message"] == message, kw
    with expect_error("InvalidParameterValue"):
        reserve(ec2, sid, f"{net.network_address}/28",
                TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "a", "Value": "b"}]}])
    with expect_error("InvalidSubnetID.NotFound"):
        reserve(ec2, "subnet-0123456789abcdef0", "10.0.0.0/28")
    with expect_error("InvalidSubnetID.Malformed"):
        reserve(ec2, "sub-1", "10.0.0.0/28")
    # Another account sees neither the subnet nor its reservations.
    with expect_error("InvalidSubnetID.NotFound"):
        other.get_subnet_cidr_reservations(SubnetId=sid)
    theirs = before["SubnetIpv4CidrReservations"][0]["SubnetCidrReservationId"]
    with expect_error("InvalidSubnetCidrReservationID.NotFound"):
        other.delete_subnet_cidr_reservation(SubnetCidrReservationId=theirs)
    with expect_error("InvalidSubnetCidrReservationID.Malformed"):
        ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId="reservation-1")
    # Nothing a failed call touched changed.
    after = ec2.get_subnet_cidr_reservations(SubnetId=sid)
    for k in ("SubnetIpv4CidrReservations", "SubnetIpv6CidrReservations"):
        assert after[k] == before[k]


def test_automatic_addresses_skip_reservations_and_explicit_ones_may_be_used(client):
    ec2 = client("A")
    _, sid, net, net6 = vpc_and_subnet(ec2, ipv6=True)
    base = int(net.network_address)
    # Reserve .0-.15 (explicit) and .16-.23 (prefix): the first automatic
    # address is .24, where it would otherwise be .4.
    reserve(ec2, sid, f"{ipaddress.ip_address(base)}/28", "explicit")
    reserve(ec2, sid, f"{ipaddress.ip_address(base + 16)}/29", "prefix")
    reserve(ec2, sid, f"{net6.network_address}/80", "explicit")
    eni = ec2.create_network_interface(SubnetId=sid, Ipv6AddressCount=1)["NetworkInterface"]
    assert eni["PrivateIpAddress"] == str(ipaddress.ip_address(base + 24))
    v6 = ipaddress.ip_address(eni["Ipv6Addresses"][0]["Ipv6Address"])
    assert v6 not in ipaddress.ip_network(f"{net6.network_address}/80") and v6 in net6
    inst = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": sid,
                                                 "SecondaryPrivateIpAddressCount": 1}])["Instances"][0]
    addrs = [ipaddress.ip_address(a["PrivateIpAddress"])
             for a in inst["NetworkInterfaces"][0]["PrivateIpAddresses"]]
    assert all(int(a) >= base + 24 for a in addrs), addrs
    # AssignPrivateIpAddresses by count skips them too.
    got = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                          SecondaryPrivateIpAddressCount=2)["AssignedPrivateIpAddresses"]
    assert all(int(ipaddress.ip_address(a["PrivateIpAddress"])) >= base + 24 for a in got)
    # An explicit reservation is for addresses the user assigns by hand.
    mine = str(ipaddress.ip_address(base + 5))
    by_hand = ec2.create_network_interface(SubnetId=sid, PrivateIpAddress=mine)["NetworkInterface"]
    assert by_hand["PrivateIpAddress"] == mine
    # Deleting the reservation frees its range for automatic assignment again.
    for r in ec2.get_subnet_cidr_reservations(SubnetId=sid)["SubnetIpv4CidrReservations"]:
        ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=r["SubnetCidrReservationId"])
    again = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]
    assert again["PrivateIpAddress"] == str(ipaddress.ip_address(base + 4))


def test_a_reservation_filling_the_subnet_leaves_no_automatic_address(client):
    ec2 = client("A")
    cidr = unique_cidr()
    vid = make_vpc(ec2, cidr)
    sub = cidr.replace(".0.0/16", ".9.0/28")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=sub)["Subnet"]["SubnetId"]
    reserve(ec2, sid, sub)
    with expect_error("InsufficientFreeAddressesInSubnet"):
        ec2.create_network_interface(SubnetId=sid)
    assert ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [sid]}])["NetworkInterfaces"] == []


def test_reservations_survive_kill9_and_go_with_their_subnet(server_factory):
    s = server_factory()
    ec2 = s.client("A")
    _, sid, net, _ = vpc_and_subnet(ec2)
    r = reserve(ec2, sid, f"{net.network_address}/28", Description="kept",
                TagSpecifications=[{"ResourceType": "subnet-cidr-reservation", "Tags": [{"Key": "a", "Value": "b"}]}])
    s.kill9()  # right after the acknowledged create
    s.start()
    ec2 = s.client("A")
    got = ec2.get_subnet_cidr_reservations(SubnetId=sid)["SubnetIpv4CidrReservations"]
    assert [(x["SubnetCidrReservationId"], x["Cidr"], x["Description"], tags_of(x)) for x in got] == [
        (r["SubnetCidrReservationId"], r["Cidr"], "kept", {"a": "b"})]
    # Still enforced after the restart.
    eni = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]
    assert int(ipaddress.ip_address(eni["PrivateIpAddress"])) >= int(net.network_address) + 16
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_subnet(SubnetId=sid)
    with expect_error("InvalidSubnetCidrReservationID.NotFound"):
        ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=r["SubnetCidrReservationId"])
