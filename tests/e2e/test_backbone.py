"""The encrypted inter-region backbone with real packets (docs/dataplane.md, "Region backbone").

An inter-region peering's traffic crosses the underlay between the region gateways only
inside WireGuard: these tests capture every frame on the underlay (an AF_PACKET socket in
the underlay namespace, which sees every port of its bridge) while instances in two
regions talk with a marker string in their payload, and check that the capture holds
only UDP between the gateways' WireGuard ports and never the marker; that 1500-byte
packets pass and bigger DF packets get "fragmentation needed" (IPv4) / "packet too big"
(IPv6); that 100 MB of TCP crosses; that restarting vpcd (the tunnel workers) or
rebuilding a gateway resumes traffic by itself with no plaintext meanwhile; that key
rotation keeps a TCP flow alive; that forged datagrams on the underlay are dropped and
counted. Needs root: fails (does not skip) otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest

from netprobe import (PY, Background, Dp, last_output, listener, netns_exec, netns_exists, ping,
                      tcp_request, tcp_stream, wait_until)
from test_dataplane import allow, two_peered

pytestmark = pytest.mark.usefixtures("require_root")

MARKER = "VPCD-PLAINTEXT-MARKER-7f3a"
WG_PORT = 51820
WEST = "us-west-2"
EAST = "us-east-1"


@pytest.fixture(scope="module")
def dp(require_root):
    """One data-plane vpcd for the module, serving /metrics (the tunnel stats are there too)."""
    import shutil
    from conftest import DP_LIMITS, Server, dp_stop_and_teardown, netns_names
    server = Server(limits=DP_LIMITS, dataplane=True, serve_args=["--metrics"])
    server.ns_before = netns_names()
    server.start()
    try:
        yield Dp(server)
    finally:
        dp_stop_and_teardown(server)
        shutil.rmtree(server.tmp, ignore_errors=True)


def tunnel_metrics(dp: Dp) -> dict[tuple, float]:
    """The backbone families of /metrics, parsed with prometheus_client's text parser:
    {(sample name, region, peer, direction or reason): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"{dp.server.url}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("vpcd_backbone_tunnel_"):
                ls = s.labels
                out[(s.name, ls["region"], ls["peer"], ls.get("direction") or ls.get("reason"))] = s.value
    return out


# -- the underlay capture ---------------------------------------------------------------

# Captures every frame on every interface of the namespace it runs in for `seconds`
# (or until SIGINT) and prints a JSON summary: frames, WireGuard frames (IPv4/UDP
# 51820 <-> 51820 between the given gateway addresses), ARP frames, anything else
# (described), and whether the marker appeared in any frame.
_CAPTURE = r'''
import json, signal, socket, struct, sys, time
seconds, marker, gws = float(sys.argv[1]), sys.argv[2].encode(), set(sys.argv[3].split(","))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.settimeout(0.2)
res = {"frames": 0, "wireguard": 0, "arp": 0, "other": [], "marker": False, "wg_types": {}}
stop = [False]
signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
print(json.dumps({"ready": True}), flush=True)
end = time.monotonic() + seconds
while not stop[0] and time.monotonic() < end:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    res["frames"] += 1
    if marker in f:
        res["marker"] = True
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0806:
        res["arp"] += 1
        continue
    if et == 0x0800 and len(f) >= 42 and f[23] == 17:
        ihl = (f[14] & 15) * 4
        src, dst = socket.inet_ntoa(f[26:30]), socket.inet_ntoa(f[30:34])
        sp, dp = struct.unpack("!HH", f[14 + ihl:18 + ihl])
        if sp == dp == 51820 and src in gws and dst in gws:
            res["wireguard"] += 1
            t = str(f[14 + ihl + 8]) if len(f) > 14 + ihl + 8 else "?"
            res["wg_types"][t] = res["wg_types"].get(t, 0) + 1
            continue
        desc = f"udp {src}:{sp} -> {dst}:{dp}"
    elif et == 0x0800 and len(f) >= 34:
        desc = (f"ip proto {f[23]} {socket.inet_ntoa(f[26:30])} -> {socket.inet_ntoa(f[30:34])} "
                f"({len(f)} bytes)")
    else:
        desc = f"ethertype {et:#06x} ({len(f)} bytes)"
    if len(res["other"]) < 20:
        res["other"].append(desc)
print(json.dumps(res), flush=True)
'''


class Capture:
    def __init__(self, dp: Dp, seconds: float = 120):
        self.ns = f"vpcd{dp.tag()}-underlay"
        wait_until(lambda: netns_exists(self.ns), 10, what=f"the underlay namespace {self.ns}")
        gws = ",".join(underlay_addr(dp, r) for r in (EAST, WEST))
        self.bg = Background(self.ns, PY, "-u", "-c", _CAPTURE, str(seconds), MARKER, gws)
        line = self.bg.proc.stdout.readline()
        assert "ready" in line, f"the capture did not start: {line}"

    def finish(self) -> dict:
        out = self.bg.finish(timeout=10, interrupt=True)
        return json.loads(out.strip().splitlines()[-1])


def underlay_addr(dp: Dp, region: str) -> str:
    st = wait_status(dp, lambda s: any(g["region"] == region for g in s["gateways"]), f"{region}'s gateway")
    for g in st["gateways"]:
        if g["region"] == region:
            return g["underlay_address"]
    raise AssertionError(f"no gateway for {region} in {st}")


def status(dp: Dp) -> dict:
    p = dp.server.vpcd("regions", "status", "--data-dir", str(dp.server.data_dir), "--json")
    return json.loads(p.stdout)


def wait_status(dp: Dp, pred, what: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            st = status(dp)
            if pred(st):
                return st
        except (ValueError, subprocess.CalledProcessError):
            st = None
        if time.monotonic() > deadline:
            raise AssertionError(f"backbone status never showed {what}: {st}")
        time.sleep(0.2)


def settled(dp: Dp) -> dict:
    """The status once both ends of the east-west tunnel are reported."""
    def both(s):
        ends = {(t["region"], t["peer"]) for t in s["tunnels"]}
        return {(EAST, WEST), (WEST, EAST)} <= ends and len(s["gateways"]) >= 2
    return wait_status(dp, both, "both ends of the tunnel")


def tunnel(st: dict, region: str, peer: str) -> dict:
    for t in st["tunnels"]:
        if t["region"] == region and t["peer"] == peer:
            return t
    raise AssertionError(f"no tunnel {region}->{peer} in {st}")


def gateway(st: dict, region: str) -> dict:
    return next(g for g in st["gateways"] if g["region"] == region)


def assert_only_wireguard(cap: dict, what: str):
    assert not cap["marker"], f"the marker crossed the underlay in the clear ({what}): {cap}"
    assert not cap["other"], f"non-WireGuard frames on the underlay ({what}): {cap}"
    assert cap["wireguard"] > 0, f"no WireGuard traffic captured ({what}): {cap}"


def peered(dp: Dp, base: int):
    t = two_peered(dp, f"10.{base}.0.0/16", f"10.{base + 1}.0.0/16", b_region=WEST)
    for port in (7000, 5201):
        allow(t.b, t.vb.sg, "tcp", t.va.cidr, port=port)
        allow(t.a, t.va.sg, "tcp", t.vb.cidr, port=port)
    # The first inter-region peering brings the backbone up (underlay, gateways,
    # keys, sockets, first handshake): on a loaded machine that takes seconds.
    assert ping(t.ia.ns, t.ib.ip, timeout=20), f"the backbone never carried a ping\n{last_output()}"
    return t


def pcx_link(pcx: str) -> str:
    return "p-" + pcx.rsplit("-", 1)[1][-12:]


# -- tests --------------------------------------------------------------------------------

def test_inter_region_traffic_crosses_the_underlay_only_as_wireguard(dp):
    t = peered(dp, 70)
    dp.ok_ping(t.ia, t.ib.ip, "across the inter-region peering")
    link = pcx_link(t.pcx)
    for ns in (dp.router_ns(t.va.id), dp.router_ns(t.vb.id)):
        d = subprocess.run(["ip", "-n", ns, "-d", "link", "show", link], capture_output=True, text=True).stdout
        assert "tun type tun" in d and "mtu 1500" in d, f"{link} in {ns} should be a 1500-MTU TUN device:\n{d}"
    for region in (EAST, WEST):
        assert netns_exists(f"vpcd{dp.tag()}-rgw-{region}")
    before = tunnel_metrics(dp)
    cap = Capture(dp)
    try:
        dp.ok_ping(t.ia, t.ib.ip, "across the inter-region peering")
        dp.ok_ping(t.ib, t.ia.ip, "and back")
        # The marker in an ICMP payload (ping -p pads with a hex pattern) and in TCP.
        pattern = MARKER.encode().hex()[:32]
        p = netns_exec(t.ia.ns, "ping", "-n", "-c", "3", "-i", "0.2", "-p", pattern, "-s", "200", t.ib.ip)
        assert p.returncode == 0, p.stdout + p.stderr
        with listener(t.ib.ns, 7000):
            r = tcp_request(t.ia.ns, t.ib.ip, 7000, msg=MARKER * 20)
            assert r is not None and MARKER in r, f"TCP across the peering: {last_output()}"
    finally:
        cap_res = cap.finish()
    assert_only_wireguard(cap_res, "ping and TCP with the marker")
    # Handshakes and data messages (types 1, 2 and 4) only.
    assert set(cap_res["wg_types"]) <= {"1", "2", "3", "4"}, cap_res
    st = wait_status(dp, lambda s: tunnel(s, EAST, WEST)["sent"]["packets"] > 0
                     and tunnel(s, WEST, EAST)["sent"]["packets"] > 0, "packets both ways")
    assert tunnel(st, EAST, WEST)["handshake_age_ms"] is not None
    assert t.pcx in tunnel(st, EAST, WEST)["peerings"]
    text = dp.server.vpcd("regions", "status", "--data-dir", str(dp.server.data_dir)).stdout
    assert f"{EAST}<->{WEST}" in text and t.pcx in text, text
    # /metrics carries the same tunnel stats: the byte counters moved by at least the
    # three 200-byte pings each way (228 inner bytes each), and a handshake happened.
    key = "vpcd_backbone_tunnel_bytes_total"

    def moved():
        now = tunnel_metrics(dp)
        grown = {(r, p, d): now.get((key, r, p, d), 0) - before.get((key, r, p, d), 0)
                 for r, p in ((EAST, WEST), (WEST, EAST)) for d in ("sent", "received")}
        return now if all(g >= 3 * 228 for g in grown.values()) else None
    now = wait_until(moved, timeout=10, interval=0.5, what="the tunnel byte counters in /metrics to move")
    assert now[("vpcd_backbone_tunnel_packets_total", EAST, WEST, "sent")] >= 3
    assert 0 <= now[("vpcd_backbone_tunnel_handshake_age_seconds", EAST, WEST, None)] < 300
    assert now[("vpcd_backbone_tunnel_dropped_total", EAST, WEST, "invalid_wireguard")] >= 0
    # The private keys are in the data directory with mode 0600, and nowhere in the log.
    for region in (EAST, WEST):
        key = dp.server.data_dir / "backbone" / f"{region}.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_text().strip() not in dp.server.log()


def test_mtu_1500_end_to_end_and_frag_needed_beyond(dp):
    t = peered(dp, 72)
    dp.ok_ping(t.ia, t.ib.ip, "1500-byte IPv4 packets with DF pass", size=1472, df=True)
    p = netns_exec(t.ia.ns, "ping", "-n", "-4", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1473", t.ib.ip)
    out = p.stdout + p.stderr
    assert p.returncode != 0, f"a 1501-byte DF packet must not pass:\n{out}"
    assert re.search(r"mtu ?= ?1500", out), f"expected 'fragmentation needed, mtu=1500':\n{out}"
    # PMTUD for TCP: 100 MB across the 1500-byte path, counted by the receiver.
    sink = Background(t.ib.ns, PY, "-u", "-c", _SINK, "5201")
    try:
        assert "ready" in sink.proc.stdout.readline()
        c = netns_exec(t.ia.ns, PY, "-c", _SOURCE, t.ib.ip, "5201", str(100 * 1000 * 1000), timeout=180)
        assert c.returncode == 0, c.stdout + c.stderr
        got = json.loads(sink.finish(timeout=30).strip().splitlines()[-1])
        assert got["bytes"] == 100 * 1000 * 1000, f"the receiver got {got}"
    finally:
        sink.kill()


_SINK = r'''
import json, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(1)
print(json.dumps({"ready": True}), flush=True)
c, _ = s.accept()
n = 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    n += len(d)
c.sendall(str(n).encode())
c.close()
print(json.dumps({"bytes": n}), flush=True)
'''

_SOURCE = r'''
import socket, sys
ip, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((ip, port), timeout=30)
chunk = b"x" * (1 << 20)
left = total
while left:
    n = s.send(chunk[:min(left, len(chunk))])
    left -= n
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
'''


def test_ipv6_packet_too_big_across_regions(dp):
    t = two_peered(dp, "10.74.0.0/16", "10.75.0.0/16", b_region=WEST, ipv6=True, allow_icmp=False)
    from test_dataplane import peer_routes
    peer_routes(t.a, t.va, t.b, t.vb, t.pcx, v6=True)
    allow(t.b, t.vb.sg, "icmpv6", t.va.v6)
    allow(t.a, t.va.sg, "icmpv6", t.vb.v6)
    dp.ok_ping(t.ia, t.ib.ipv6[0], "IPv6 across the regions, 1500 bytes", size=1452, df=True)
    p = netns_exec(t.ia.ns, "ping", "-n", "-6", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1453", t.ib.ipv6[0])
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert re.search(r"mtu ?= ?1500|[Pp]acket too big", out), f"expected 'packet too big, mtu=1500':\n{out}"


def test_forged_underlay_packets_are_dropped_and_counted(dp):
    t = peered(dp, 76)
    dp.ok_ping(t.ia, t.ib.ip, "the tunnel is up")
    before = settled(dp)
    east, west = underlay_addr(dp, EAST), underlay_addr(dp, WEST)
    # From the west gateway's address and WireGuard port (spoofed with a raw socket):
    # admitted by nft, refused by WireGuard (no valid MAC/session) and counted.
    forge = r'''
import socket, struct, sys
src, dst, sport, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
udp = struct.pack("!HHHH", sport, 51820, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
refused = 0
for _ in range(5):
    try:
        s.sendto(ip + udp, (dst, 0))
    except PermissionError:  # an nft drop in the output hook
        refused += 1
print(refused)
'''
    gw_west = f"vpcd{dp.tag()}-rgw-{WEST}"
    fake_data = ("04000000" + "41" * 60)  # looks like a data message, is not one
    # The west gateway's own nft output chain lets it go only from port 51820 to a peer.
    p = netns_exec(gw_west, PY, "-c", forge, west, east, str(WG_PORT), fake_data)
    assert p.returncode == 0 and p.stdout.strip() == "0", p.stdout + p.stderr
    p = netns_exec(gw_west, PY, "-c", forge, west, east, "40000", MARKER.encode().hex())
    assert p.returncode == 0 and p.stdout.strip() == "5", f"the west gateway should refuse them: {p.stdout}{p.stderr}"
    wait_status(dp, lambda s: tunnel(s, EAST, WEST)["invalid"] >= tunnel(before, EAST, WEST)["invalid"] + 5,
                "5 invalid WireGuard datagrams counted at the east gateway")
    # The wrong-port ones never left the west gateway: its underlay guard dropped and counted them.
    wait_status(dp, lambda s: gateway(s, WEST)["underlay_dropped_out"]["packets"]
                >= gateway(before, WEST)["underlay_dropped_out"]["packets"] + 5,
                "5 wrong-port datagrams dropped by the west gateway's nft")
    # A stranger on the underlay (a namespace of this test's own, plugged into the
    # bridge): its datagrams to the WireGuard port are dropped at the east gateway's door.
    ul, stranger = f"vpcd{dp.tag()}-underlay", f"vpcdtest-stranger-{dp.tag()}"
    subprocess.run(["ip", "netns", "add", stranger], check=True)
    try:
        subprocess.run(["ip", "-n", ul, "link", "add", "s-test", "type", "veth", "peer", "name", "eth0",
                        "netns", stranger], check=True)
        subprocess.run(["ip", "-n", ul, "link", "set", "s-test", "master", "br0", "up"], check=True)
        subprocess.run(["ip", "-n", stranger, "addr", "add", "100.127.255.1/10", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", stranger, "link", "set", "eth0", "up"], check=True)
        p = netns_exec(stranger, PY, "-c", forge, "100.127.255.1", east, str(WG_PORT), fake_data)
        assert p.returncode == 0 and p.stdout.strip() == "0", p.stdout + p.stderr
        wait_status(dp, lambda s: gateway(s, EAST)["underlay_dropped_in"]["packets"]
                    >= gateway(before, EAST)["underlay_dropped_in"]["packets"] + 5,
                    "5 stranger datagrams dropped by the east gateway's nft")
    finally:
        subprocess.run(["ip", "netns", "del", stranger])
    dp.ok_ping(t.ia, t.ib.ip, "the tunnel still works")


def test_key_rotation_keeps_a_tcp_flow_alive(dp):
    t = peered(dp, 78)
    dp.ok_ping(t.ia, t.ib.ip, "the tunnel is up")
    before = settled(dp)
    with listener(t.ib.ns, 7000):
        stream = tcp_stream(t.ia.ns, t.ib.ip, 7000, duration=8, interval=0.02)
        time.sleep(2)
        p = dp.server.vpcd("regions", "keys", "rotate", "--data-dir", str(dp.server.data_dir))
        assert EAST in p.stdout and WEST in p.stdout, p.stdout
        res = json.loads(stream.finish(timeout=30).strip().splitlines()[-1])
    assert res["error"] is None, f"the TCP flow broke during key rotation: {res}"
    assert res["ok"] > 100 and res["max_gap"] < 2.0, res
    st = wait_status(dp, lambda s: gateway(s, EAST)["public_key"] != gateway(before, EAST)["public_key"]
                     and gateway(s, WEST)["public_key"] != gateway(before, WEST)["public_key"], "the new keys")
    assert tunnel(st, EAST, WEST)["handshake_age_ms"] < 15000
    dp.ok_ping(t.ia, t.ib.ip, "after the rotation")


def test_restarts_resume_traffic_and_never_leak_plaintext(dp_server_factory):
    dp = Dp(dp_server_factory())
    t = peered(dp, 80)
    dp.ok_ping(t.ia, t.ib.ip, "before the restarts")
    cap = Capture(dp, seconds=300)
    pinger = Background(t.ia.ns, "ping", "-n", "-i", "0.05", "-p", MARKER.encode().hex()[:32], t.ib.ip)
    try:
        time.sleep(1)
        # 1. The tunnel workers die with vpcd; the routers keep their TUN devices
        # (nobody reads them: packets are dropped) until the new vpcd adopts them.
        dp.server.kill9()
        time.sleep(2)
        t0 = time.monotonic()
        dp.server.start()
        assert ping(t.ia.ns, t.ib.ip, timeout=15), f"no traffic after vpcd restarted\n{last_output()}"
        resumed = time.monotonic() - t0
        assert resumed < 10, f"traffic took {resumed:.1f}s to resume"
        # 2. A gateway namespace deleted by hand is rebuilt, and traffic resumes.
        subprocess.run(["ip", "netns", "del", f"vpcd{dp.tag()}-rgw-{WEST}"], check=True)
        time.sleep(0.5)
        assert ping(t.ia.ns, t.ib.ip, timeout=15), f"no traffic after the gateway was rebuilt\n{last_output()}"
    finally:
        pinger.kill()
        cap_res = cap.finish()
    assert_only_wireguard(cap_res, "during vpcd's restart and the gateway's rebuild")


def test_deleting_the_peering_removes_its_backbone_path(dp):
    t = peered(dp, 82)
    dp.ok_ping(t.ia, t.ib.ip, "before the deletion")
    link = pcx_link(t.pcx)
    ra, rb = dp.router_ns(t.va.id), dp.router_ns(t.vb.id)
    t.a.delete_vpc_peering_connection(VpcPeeringConnectionId=t.pcx)
    dp.no_ping(t.ia, t.ib.ip, "the peering is deleted")

    def links_gone():
        return all(link not in subprocess.run(["ip", "-n", ns, "-br", "link"], capture_output=True,
                                              text=True).stdout for ns in (ra, rb) if netns_exists(ns))
    wait_until(links_gone, 10, what=f"{link} removed from both routers")
    # No route in the routers points anywhere for the peer's block any more.
    routes = subprocess.run(["ip", "-n", ra, "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    assert not re.search(r"^10\.83\.0\.0/16 .*dev", routes, re.M), routes
    st = wait_status(dp, lambda s: all(t.pcx not in x["peerings"] for x in s["tunnels"]),
                     "the peering gone from the backbone")
    assert st
