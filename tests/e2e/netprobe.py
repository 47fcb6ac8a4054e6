"""Real-packet probes run inside network namespaces with ``ip netns exec NS ...``.

Only the data-plane tests use this. Every probe is bounded in time and runs in
a namespace the test's own vpcd created (an instance namespace ``i-…`` or the
simulated internet ``vpcd<tag>-inet``), towards addresses of such namespaces.

Positive and negative expectations are probed differently:

* a probe expected to **succeed** retries until it succeeds or ``POSITIVE_TIMEOUT``
  (default 3 s, ``$VPCD_DP_POSITIVE_TIMEOUT``) passes, to allow for the
  reconciler's convergence;
* a probe expected to **fail** must be run after the state has converged (see
  ``Dp.converge``) and probes for ``NEGATIVE_WINDOW`` (about 1 s) with several
  packets; any answer is a success.

``ping``/``tcp_connect``/``udp_probe`` return a bool; ``last_output()`` gives
what the last probe printed, for assertion messages.

The second half, ``Dp``, binds these to one vpcd: launching instances and waiting
for their namespaces, the convergence barrier, the data directory's tag and the
namespace names derived from it, and ``ok_*``/``no_*`` probes that fail with the
probe's command line and output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
POSITIVE_TIMEOUT = float(os.environ.get("VPCD_DP_POSITIVE_TIMEOUT", "3"))
NEGATIVE_WINDOW = 1.0

_last = {"out": ""}


def last_output() -> str:
    """stdout+stderr of the last probe (for assertion messages)."""
    return _last["out"]


def _record(desc: str, p: subprocess.CompletedProcess | None, extra: str = "") -> None:
    if p is None:
        _last["out"] = f"{desc}: {extra}"
    else:
        _last["out"] = f"{desc} -> rc={p.returncode}\n{(p.stdout or '').strip()}\n{(p.stderr or '').strip()}{extra}"


# -- namespaces ------------------------------------------------------------------

def netns_exec(ns: str, *argv: str, timeout: float = 10, check: bool = False,
               input: str | None = None) -> subprocess.CompletedProcess:
    """Runs argv inside namespace ns; never raises on a non-zero exit unless check."""
    try:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              timeout=timeout, check=check, input=input)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(e.cmd, 124, out, f"timed out after {timeout}s")


def netns_list() -> set[str]:
    """Names of all named network namespaces (`ip netns list`)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def netns_inode(ns: str) -> int:
    """The namespace's inode (like `stat -L -c %i /run/netns/NS`): same inode = same namespace."""
    return os.stat(f"/run/netns/{ns}").st_ino


def ns_addrs(ns: str, dev: str = "eth0") -> str:
    """`ip -br addr show dev DEV` inside ns ('' if it fails)."""
    p = subprocess.run(["ip", "-n", ns, "-br", "addr", "show", "dev", dev], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


def wait_until(fn, timeout: float = 3.0, interval: float = 0.05, what: str = "condition"):
    """Polls fn() until it returns a truthy value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {v!r}")
        time.sleep(interval)


def _is_v6(ip: str) -> bool:
    return ":" in ip


# -- ping ------------------------------------------------------------------------

def ping(ns: str, ip: str, v6: bool | None = None, expect: bool = True, size: int | None = None,
         df: bool = False, pmtu: str | None = None, source: str | None = None,
         timeout: float | None = None) -> bool:
    """Whether ns gets an echo reply from ip.

    expect=True: retries until a reply or `timeout` (POSITIVE_TIMEOUT).
    expect=False: sends a packet every 0.2 s for NEGATIVE_WINDOW; any reply is True.
    size: payload size (-s); df: don't fragment (-M do); pmtu: any other -M value
    ("dont": fragment locally, DF clear); source: -I address.
    """
    v6 = _is_v6(ip) if v6 is None else v6
    base = ["ping", "-n"] + (["-6"] if v6 else ["-4"])
    if size is not None:
        base += ["-s", str(size)]
    if df or pmtu:
        base += ["-M", "do" if df else pmtu]
    if source:
        base += ["-I", source]
    if not expect:
        argv = [*base, "-i", "0.2", "-w", str(max(1, round(NEGATIVE_WINDOW))), ip]
        p = netns_exec(ns, *argv, timeout=NEGATIVE_WINDOW + 5)
        _record(f"ip netns exec {ns} {' '.join(argv)}", p)
        return p.returncode == 0
    deadline = time.monotonic() + (POSITIVE_TIMEOUT if timeout is None else timeout)
    while True:
        remaining = deadline - time.monotonic()
        w = max(1, math.ceil(remaining))
        argv = [*base, "-c", "1", "-i", "0.2", "-w", str(w), ip]
        p = netns_exec(ns, *argv, timeout=w + 5)
        _record(f"ip netns exec {ns} {' '.join(argv)}", p)
        if p.returncode == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # e.g. the namespace or a local route is not there yet


def forwarded(ns: str, v6: bool = False) -> int:
    """The namespace's own count of packets it forwarded: IPv4's `Ip: ForwDatagrams`, or
    IPv6's `Ip6OutForwDatagrams`."""
    if v6:
        p = netns_exec(ns, "cat", "/proc/net/snmp6", check=True)
        return int(next(ln.split()[1] for ln in p.stdout.splitlines() if ln.startswith("Ip6OutForwDatagrams")))
    p = netns_exec(ns, "cat", "/proc/net/snmp", check=True)
    head, values = [ln.split() for ln in p.stdout.splitlines() if ln.startswith("Ip:")][:2]
    return int(values[head.index("ForwDatagrams")])


def make_middlebox(ns: str) -> None:
    """Configures an instance's OS to forward (IPv4 and IPv6), as a middlebox's is, without
    IPv4 redirects."""
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.eth0.send_redirects=0", "net.ipv6.conf.all.forwarding=1"):
        netns_exec(ns, "sysctl", "-qw", key, check=True)


def ping_stats(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line."""
    for line in output.splitlines():
        if "packets transmitted" in line:
            parts = line.split(",")
            tx = int(parts[0].split()[0])
            rx = int(parts[1].split()[0])
            return tx, rx
    raise ValueError(f"no ping summary in: {output!r}")


# -- TCP / UDP clients and servers -------------------------------------------------

# A tiny echo server: TCP (a thread per connection, line based) or UDP. Each reply
# is "<ident>:<what was received>"; every receipt is logged to stdout as JSON.
_SERVER = r'''
import json, socket, sys, threading
port, proto, ident = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def log(**kw):
    print(json.dumps(kw), flush=True)
def bind(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    return s
if proto == "tcp":
    srv = bind(socket.SOCK_STREAM)
    srv.listen(64)
    log(ready=True)
    def serve(c, a):
        f = c.makefile("rb")
        try:
            for line in f:
                line = line.decode(errors="replace").rstrip("\n")
                log(recv=line, peer=a[0])
                c.sendall(f"{ident}:{line}\n".encode())
        except OSError:
            pass
        finally:
            c.close()
    while True:
        c, a = srv.accept()
        log(conn=a[0])
        threading.Thread(target=serve, args=(c, a), daemon=True).start()
else:
    srv = bind(socket.SOCK_DGRAM)
    log(ready=True)
    while True:
        data, a = srv.recvfrom(65535)
        line = data.decode(errors="replace")
        log(recv=line, peer=a[0])
        srv.sendto(f"{ident}:{line}".encode(), a)
'''

# Client: tcp or udp, retrying until a deadline; prints the reply and exits 0, or exits 1.
_CLIENT = r'''
import socket, sys, time
proto, ip, port, msg, window, per_try = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
deadline = time.monotonic() + window
last = "no attempt"
while True:
    t = max(0.05, min(per_try, deadline - time.monotonic()))
    try:
        if proto == "tcp":
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(t)
                s.connect((ip, port))
                s.sendall((msg + "\n").encode())
                buf = b""
                while not buf.endswith(b"\n"):
                    d = s.recv(4096)
                    if not d:
                        raise OSError("connection closed before a reply")
                    buf += d
                print(buf.decode().strip())
                sys.exit(0)
        else:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.settimeout(min(t, 0.25))
                s.sendto(msg.encode(), (ip, port))
                data, _ = s.recvfrom(65535)
                print(data.decode())
                sys.exit(0)
    except (OSError, socket.timeout) as e:
        last = repr(e)
    if time.monotonic() >= deadline:
        print("failed:", last, file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
'''


def _client(proto: str, ns: str, ip: str, port: int, msg: str, expect: bool, timeout: float | None):
    if expect:
        window = POSITIVE_TIMEOUT if timeout is None else timeout
        per_try = 0.5
    else:
        window = per_try = NEGATIVE_WINDOW
    p = netns_exec(ns, PY, "-c", _CLIENT, proto, ip, str(port), msg, str(window), str(per_try),
                   timeout=window + 10)
    _record(f"ip netns exec {ns} <{proto} client> {ip} port {port} (window {window}s)", p)
    return p.stdout.strip() if p.returncode == 0 else None


def tcp_request(ns: str, ip: str, port: int, msg: str = "hello", expect: bool = True,
                timeout: float | None = None) -> str | None:
    """Connects from ns to ip:port, sends a line, returns the reply line (None on failure)."""
    return _client("tcp", ns, ip, port, msg, expect, timeout)


def tcp_connect(ns: str, ip: str, port: int, expect: bool = True, timeout: float | None = None) -> bool:
    """Whether a TCP connection from ns to ip:port gets an echo back from a listener()."""
    return tcp_request(ns, ip, port, "hello", expect, timeout) is not None


def udp_request(ns: str, ip: str, port: int, msg: str = "hello", expect: bool = True,
                timeout: float | None = None) -> str | None:
    return _client("udp", ns, ip, port, msg, expect, timeout)


def udp_probe(ns: str, ip: str, port: int, expect: bool = True, timeout: float | None = None) -> bool:
    """Whether a datagram from ns to ip:port comes back from a listener(..., proto='udp')."""
    return udp_request(ns, ip, port, "hello", expect, timeout) is not None


class Listener:
    """An echo server (see _SERVER) running inside a namespace."""

    def __init__(self, ns: str, port: int, proto: str = "tcp", ident: str = "srv"):
        self.ns, self.port, self.proto, self.ident = ns, port, proto, ident
        fd, path = tempfile.mkstemp(prefix="vpcd-listener-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 5.0) -> "Listener":
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, PY, "-u", "-c", _SERVER, str(self.port), self.proto, self.ident],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not any(e.get("ready") for e in self.events()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log_path.read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"{self.proto} listener on port {self.port} in {self.ns} did not start: {text}")
            time.sleep(0.02)
        return self

    def events(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def received(self) -> list[str]:
        """The lines (TCP) or datagrams (UDP) received so far."""
        return [e["recv"] for e in self.events() if "recv" in e]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
        with contextlib.suppress(OSError):
            self.log_path.unlink()


@contextlib.contextmanager
def listener(ns: str, port: int, proto: str = "tcp", ident: str = "srv"):
    """A TCP or UDP echo server in ns on port (IPv4 and IPv6), killed on exit."""
    srv = Listener(ns, port, proto, ident).start()
    try:
        yield srv
    finally:
        srv.stop()


def udp_echo(ns_server: str, ns_client: str, ip: str, port: int, expect: bool = True) -> bool:
    """Starts a UDP echo server in ns_server, and probes it from ns_client at ip:port."""
    with listener(ns_server, port, "udp"):
        return udp_probe(ns_client, ip, port, expect)


# -- long-running probes (for the restart test) ------------------------------------

_STREAM = r'''
import json, signal, socket, sys, time
# An interrupt ends the stream even where SIGINT came in ignored from the parent.
signal.signal(signal.SIGINT, signal.default_int_handler)
ip, port, duration, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
res = {"sent": 0, "ok": 0, "max_gap": 0.0, "error": None}
try:
    s = socket.create_connection((ip, port), timeout=3)
    s.settimeout(3)
    f = s.makefile("rb")
    print("connected", flush=True)
    end = time.monotonic() + duration
    last_ok = time.monotonic()
    seq = 0
    while time.monotonic() < end:
        seq += 1
        s.sendall(f"{seq}\n".encode())
        res["sent"] += 1
        line = f.readline().decode().strip()
        if not line.endswith(f":{seq}"):
            raise OSError(f"bad reply {line!r} to {seq}")
        now = time.monotonic()
        res["ok"] += 1
        res["max_gap"] = max(res["max_gap"], now - last_ok)
        last_ok = now
        time.sleep(interval)
except KeyboardInterrupt:
    pass
except Exception as e:
    res["error"] = repr(e)
print(json.dumps(res), flush=True)
'''


class Background:
    """A process running in a namespace in the background; .finish() waits and returns its output."""

    def __init__(self, ns: str, *argv: str):
        self.argv = ["ip", "netns", "exec", ns, *argv]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)

    def finish(self, timeout: float = 30, interrupt: bool = False) -> str:
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def tcp_stream(ns: str, ip: str, port: int, duration: float, interval: float = 0.02,
               connect_within: float = 15) -> Background:
    """One TCP connection to a listener(), a line every `interval` s for `duration` s
    (or until .finish(interrupt=True)). .finish() returns its output, whose last line is
    JSON: {"sent", "ok", "max_gap", "error"}.

    Returns only once the connection is up, so what a test does next happens to an
    established flow (and an interrupt can never reach `ip netns exec` before Python
    runs, which would end the stream without a word). Fails, with what the stream
    printed, when it does not connect within `connect_within` s.
    """
    bg = Background(ns, PY, "-u", "-c", _STREAM, ip, str(port), str(duration), str(interval))
    fd, seen = bg.proc.stdout.fileno(), b""
    deadline = time.monotonic() + connect_within
    while not seen.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        chunk = os.read(fd, 1) if ready else b""
        if not chunk:
            bg.kill()
            raise AssertionError(f"the TCP stream from {ns} to {ip}:{port} did not connect within "
                                 f"{connect_within:.0f} s; it printed {seen!r}")
        seen += chunk
    assert seen == b"connected\n", f"the TCP stream from {ns} to {ip}:{port} failed at once: {seen!r}"
    return bg


def ping_background(ns: str, ip: str, count: int, interval: float = 0.02) -> Background:
    """A ping of `count` packets every `interval` s; .finish() returns its output (see ping_stats)."""
    return Background(ns, "ping", "-n", "-q", "-i", str(interval), "-c", str(count), "-W", "1", ip)


# -- the vpcd side: launching instances, convergence, names -------------------------

def dp_tag(data_dir) -> str | None:
    """The data directory's 4-hex-digit data-plane tag (settings key `dp_tag` in vpcd.db), if set."""
    import sqlite3
    db = Path(data_dir) / "vpcd.db"
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT value FROM settings WHERE key = 'dp_tag'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if not row:
        return None
    v = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
    return v.strip().strip('"') or None


IMAGE_ID = "ami-0123456789abcdef0"


class Inst:
    """An instance as the probes see it: its namespace is its ID."""

    def __init__(self, desc: dict, account: str, region: str):
        self.id = desc["InstanceId"]
        self.ns = self.id
        self.account, self.region = account, region
        self.ip = desc.get("PrivateIpAddress")
        enis = sorted(desc.get("NetworkInterfaces") or [], key=lambda n: n.get("Attachment", {}).get("DeviceIndex", 0))
        self.eni = enis[0]["NetworkInterfaceId"] if enis else None
        self.ipv6 = [a["Ipv6Address"] for a in (enis[0].get("Ipv6Addresses") or [])] if enis else []
        self.public_ip = desc.get("PublicIpAddress")

    def __repr__(self):
        return f"<{self.id} {self.ip}{' ' + self.ipv6[0] if self.ipv6 else ''}>"


class Dp:
    """Data-plane helpers bound to one Server: instances, a convergence barrier, probes with messages."""

    BARRIER_CIDR = "10.254.0.0/16"

    def __init__(self, server):
        self.server = server
        self._dirty = True
        self._quiet = False
        self._barrier_subnet = None
        self._account: dict[int, str] = {}

    # clients whose writes mark the data plane as "not converged yet"
    def ec2(self, account: str = "A", region: str = "us-east-1"):
        c = self.server.client(account, region)
        if id(c) not in self._account:
            c.meta.events.register("after-call.ec2", self._after_call)
            self._account[id(c)] = account
        return c

    def _after_call(self, model=None, **_kw):
        if not self._quiet and model is not None and not model.name.startswith("Describe"):
            self._dirty = True

    # -- instances ---------------------------------------------------------------
    def launch(self, ec2, subnet: str, ip: str | None = None, groups: list[str] | None = None,
               ipv6: int = 0, public: bool | None = None, wait: bool = True) -> Inst:
        kw: dict = {"ImageId": IMAGE_ID, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1}
        if public is not None:
            ni: dict = {"DeviceIndex": 0, "SubnetId": subnet, "AssociatePublicIpAddress": public}
            if groups:
                ni["Groups"] = groups
            if ip:
                ni["PrivateIpAddress"] = ip
            if ipv6:
                ni["Ipv6AddressCount"] = ipv6
            kw["NetworkInterfaces"] = [ni]
        else:
            kw["SubnetId"] = subnet
            if groups:
                kw["SecurityGroupIds"] = groups
            if ip:
                kw["PrivateIpAddress"] = ip
            if ipv6:
                kw["Ipv6AddressCount"] = ipv6
        desc = ec2.run_instances(**kw)["Instances"][0]
        self.server.instance_ids.add(desc["InstanceId"])
        region = ec2.meta.region_name
        inst = Inst(desc, self._account.get(id(ec2), "?"), region)
        if ip:
            assert inst.ip == ip, (inst.ip, ip)
        if wait:
            self.wait_ready(inst)
        if public:
            inst.public_ip = wait_until(lambda: self.describe(ec2, inst.id).get("PublicIpAddress"), 5,
                                        what=f"a public IP on {inst.id}")
        return inst

    @staticmethod
    def describe(ec2, instance_id: str) -> dict:
        res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return res[0]["Instances"][0]

    def wait_ready(self, inst: Inst, timeout: float = 10.0):
        """Waits for the instance's namespace and its addresses on eth0 (IPv6 past DAD)."""
        wait_until(lambda: netns_exists(inst.ns), timeout, what=f"namespace {inst.ns}")

        def addressed():
            out = subprocess.run(["ip", "-n", inst.ns, "addr", "show", "dev", "eth0"], capture_output=True,
                                 text=True).stdout
            # An instance of an IPv6-only subnet has no IPv4 address (inst.ip is None).
            if (inst.ip and f"inet {inst.ip}/" not in out) or ",UP" not in out:
                return False
            for a in inst.ipv6:
                lines = [ln for ln in out.splitlines() if f"inet6 {a}/" in ln]
                if not lines or "tentative" in lines[0]:
                    return False
            return True

        wait_until(addressed, timeout, what=f"{inst.ip} {inst.ipv6} on eth0 in {inst.ns}")

    # -- convergence barrier -----------------------------------------------------
    def converge(self, timeout: float = 15.0, force: bool = False):
        """Returns once every API change made so far is realized in the kernel.

        The reconciler computes each pass from the whole state, in order. So: launch a
        barrier instance and wait for its namespace (a pass has seen everything before
        the launch), then terminate it and wait for the namespace to go (that pass,
        and so everything before the launch, is complete).
        """
        if not (self._dirty or force):
            return
        self._quiet = True
        try:
            ec2 = self.ec2("A")
            if self._barrier_subnet is None:
                vpc = ec2.create_vpc(CidrBlock=self.BARRIER_CIDR)["Vpc"]["VpcId"]
                self._barrier_subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.254.0.0/20")["Subnet"]["SubnetId"]
            iid = ec2.run_instances(ImageId=IMAGE_ID, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                    SubnetId=self._barrier_subnet)["Instances"][0]["InstanceId"]
            self.server.instance_ids.add(iid)
            wait_until(lambda: netns_exists(iid), timeout, interval=0.01, what=f"barrier namespace {iid}")
            ec2.terminate_instances(InstanceIds=[iid])
            wait_until(lambda: not netns_exists(iid), timeout, interval=0.01,
                       what=f"barrier namespace {iid} to be removed after TerminateInstances")
        finally:
            self._quiet = False
        self._dirty = False

    # -- names -------------------------------------------------------------------
    def tag(self) -> str:
        return wait_until(lambda: dp_tag(self.server.data_dir), 5, what="dp_tag in the data directory's settings")

    def inet_ns(self) -> str:
        ns = f"vpcd{self.tag()}-inet"
        wait_until(lambda: netns_exists(ns), 5, what=f"the internet namespace {ns}")
        return ns

    def router_ns(self, vpc_id: str) -> str:
        return f"vpcd{self.tag()}-{vpc_id}"

    # -- probes with messages ----------------------------------------------------
    @staticmethod
    def _ns(src) -> str:
        return src.ns if isinstance(src, Inst) else src

    def ok_ping(self, src, ip: str, why: str = "", **kw):
        assert ping(self._ns(src), ip, **kw), f"expected ping {src} -> {ip} to work {why}\n{last_output()}"

    def no_ping(self, src, ip: str, why: str = "", **kw):
        self.converge()
        assert not ping(self._ns(src), ip, expect=False, **kw), \
            f"expected ping {src} -> {ip} to FAIL {why}\n{last_output()}"

    def ok_tcp(self, src, ip: str, port: int, why: str = "") -> str:
        r = tcp_request(self._ns(src), ip, port)
        assert r is not None, f"expected TCP {src} -> {ip}:{port} to work {why}\n{last_output()}"
        return r

    def no_tcp(self, src, ip: str, port: int, why: str = ""):
        self.converge()
        r = tcp_request(self._ns(src), ip, port, expect=False)
        assert r is None, f"expected TCP {src} -> {ip}:{port} to FAIL {why}; got reply {r!r}"

    def ok_udp(self, src, ip: str, port: int, why: str = "") -> str:
        r = udp_request(self._ns(src), ip, port)
        assert r is not None, f"expected UDP {src} -> {ip}:{port} to be echoed {why}\n{last_output()}"
        return r

    def no_udp(self, src, ip: str, port: int, why: str = ""):
        self.converge()
        r = udp_request(self._ns(src), ip, port, expect=False)
        assert r is None, f"expected UDP {src} -> {ip}:{port} to FAIL {why}; got reply {r!r}"


_LINK_SIZES = r"""
import json, socket, struct
# RTM_GETLINK dump; the IPv4 GSO/GRO sizes (IFLA_GSO_IPV4_MAX_SIZE 63,
# IFLA_GRO_IPV4_MAX_SIZE 64) and the device's TSO limit (IFLA_TSO_MAX_SIZE 59),
# which iproute2 6.1 does not print.
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
body = struct.pack("BxHiII", 0, 0, 0, 0, 0)
s.send(struct.pack("IHHII", 16 + len(body), 18, 0x301, 1, 0) + body)
names = {3: "name", 59: "tso_max", 63: "gso_ipv4_max", 64: "gro_ipv4_max"}
links, done = {}, False
while not done:
    data = s.recv(1 << 16)
    off = 0
    while off < len(data):
        ln, typ = struct.unpack_from("IH", data, off)
        if typ in (2, 3):
            done = True
            break
        a, info = off + 32, {}
        while a < off + ln:
            al, at = struct.unpack_from("HH", data, a)
            if at == 3:
                info["name"] = data[a + 4:a + al - 1].decode()
            elif at in names:
                info[names[at]] = struct.unpack_from("I", data, a + 4)[0]
            a += (al + 3) & ~3
        links[info.pop("name")] = info
        off += (ln + 3) & ~3
print(json.dumps(links))
"""


def link_sizes(ns: str) -> dict[str, dict[str, int]]:
    """Each link of namespace `ns` with its IPv4 GSO/GRO sizes and TSO limit (from rtnetlink)."""
    p = netns_exec(ns, sys.executable, "-c", _LINK_SIZES, check=True)
    return json.loads(p.stdout)
