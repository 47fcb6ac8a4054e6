"""A `vpcd lab` (etcd cluster + API servers on loopback) for tests and benchmarks.

``Lab(etcd=3, api=2, serve_args=[...])`` runs ``vpcd lab up`` in a fresh
temporary directory, adds the accounts of ``conftest.ACCOUNTS`` to the shared
store with ``vpcd account add --store ...``, and gives:

* ``client(i, account)``: a boto3 EC2 client for API server ``i``;
* ``kill_api(i)`` / ``kill_etcd(i)``: SIGKILL one process the lab recorded;
* ``advance(i, seconds)``: move the shared simulated clock through server ``i``;
* ``etcd_get(key)``: a key's record (value, version, ...) read through etcd's
  JSON gateway (``/v3/kv/range``), e.g. to see how often a record changed;
* ``clock_leader()``: the pid of the API server holding the clock role.

``scrape(addr)`` reads an agent's (or a server's) ``/metrics``; ``samples`` are
one family's samples with the given labels and ``sample`` their sum.

``down()`` runs ``vpcd lab down`` (which stops only the pids it recorded).
etcd must be installed (Debian ``etcd-server``); without it the lab fails with
that message.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
VPCD_BIN = REPO / (os.environ.get("VPCD_BIN") or "target/debug/vpcd")

ACCOUNTS = {
    "A": ("111111111111", "AKIDA1", "secretA1"),
    "B": ("222222222222", "AKIDB2", "secretB2"),
    "C": ("333333333333", "AKIDC3", "secretC3"),
}


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class Lab:
    def __init__(self, etcd: int = 3, api: int = 2, serve_args: list[str] | None = None,
                 prefix: str | None = None, hosts: int = 0):
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not installed: apt-get install etcd-server (scripts/test.sh does)")
        if not VPCD_BIN.exists():
            raise RuntimeError(f"vpcd binary not found at {VPCD_BIN}; run `cargo build` or set VPCD_BIN")
        self.tmp = Path(tempfile.mkdtemp(prefix="vpcd-lab-"))
        self.dir = self.tmp / "lab"
        self.prefix = prefix or f"/vpcd-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        argv = [str(VPCD_BIN), "lab", "up", "--data-dir", str(self.dir), "--etcd", str(etcd),
                "--api", str(api), "--hosts", str(hosts), "--store-prefix", self.prefix, "--"]
        argv += serve_args or []
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            # `lab up` stopped whatever it had started; nothing else is left.
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RuntimeError(f"vpcd lab up failed:\n{out.stdout}\n{out.stderr}")
        self.record = json.loads(out.stdout)
        self._clients: dict = {}
        for acct, akid, secret in ACCOUNTS.values():
            self.vpcd("account", "add", "--store", self.record["store"], "--store-prefix", self.prefix,
                      "--id", acct, "--access-key-id", akid, "--secret-access-key", secret)

    def vpcd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VPCD_BIN), *args], capture_output=True, text=True, check=True, timeout=60)

    def status(self) -> dict:
        out = self.vpcd("lab", "status", "--data-dir", str(self.dir), "--json")
        return json.loads(out.stdout)

    def endpoint(self, i: int) -> str:
        return self.record["api"][i]["endpoint"]

    def api_pid(self, i: int) -> int:
        return self.record["api"][i]["pid"]

    def client(self, i: int, account: str, region: str = "us-east-1", retries: int = 0):
        key = (i, account, region, retries)
        if key not in self._clients:
            _, akid, secret = ACCOUNTS[account]
            cfg = Config(retries={"max_attempts": retries, "mode": "standard"} if retries else {"total_max_attempts": 1},
                         connect_timeout=5, read_timeout=30, max_pool_connections=64)
            self._clients[key] = boto3.session.Session().client(
                "ec2", endpoint_url=self.endpoint(i), region_name=region,
                aws_access_key_id=akid, aws_secret_access_key=secret, config=cfg)
        return self._clients[key]

    def advance(self, i: int, seconds: float) -> None:
        req = urllib.request.Request(f"{self.endpoint(i)}/_vpcd/clock?advance={seconds}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200

    def _kill(self, pid: int) -> None:
        # Only a pid the lab recorded, and only while it is still the lab's.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert str(self.dir) in cmdline, f"pid {pid} is not this lab's ({cmdline!r})"
        os.kill(pid, signal.SIGKILL)

    def kill_api(self, i: int) -> None:
        self._kill(self.api_pid(i))

    def kill_etcd(self, i: int) -> None:
        self._kill(self.record["etcd"][i]["pid"])

    def live_etcd(self) -> list[str]:
        return [m["client_url"] for m in self.status()["etcd"] if m["alive"]]

    def etcd_get(self, key: str) -> dict | None:
        """The key's record ({'value', 'version', 'mod_revision', ...}) or None, from a live member."""
        body = json.dumps({"key": _b64(key)}).encode()
        last = None
        for url in self.live_etcd():
            try:
                req = urllib.request.Request(f"{url}/v3/kv/range", data=body, method="POST")
                with urllib.request.urlopen(req, timeout=5) as r:
                    res = json.loads(r.read())
            except OSError as e:
                last = e
                continue
            kvs = res.get("kvs") or []
            if not kvs:
                return None
            kv = kvs[0]
            return {"value": base64.b64decode(kv.get("value", "")).decode(),
                    "version": int(kv.get("version", 0)),
                    "mod_revision": int(kv.get("mod_revision", 0))}
        raise RuntimeError(f"no etcd member answered: {last}")

    def record_key(self, kind: str, rid: str) -> str:
        return f"{self.prefix}/r/{kind}/{rid}"

    def clock_leader(self) -> int | None:
        """The pid of the API server holding the clock role, if any."""
        kv = self.etcd_get(f"{self.prefix}/leader/clock")
        if kv is None:
            return None
        return int(kv["value"].rsplit(":", 1)[1])

    def down(self) -> None:
        if (self.dir / "lab.json").exists():
            subprocess.run([str(VPCD_BIN), "lab", "down", "--data-dir", str(self.dir)],
                           capture_output=True, text=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


def scrape(addr: str) -> dict[tuple, float]:
    """Every sample of http://ADDR/metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def samples(metrics: dict, name: str, **labels) -> list[float]:
    """The samples of `name` carrying these labels."""
    want = set(labels.items())
    return [v for (n, ls), v in metrics.items() if n == name and want <= set(ls)]


def sample(metrics: dict, name: str, **labels) -> float:
    """The sum of the samples of `name` carrying these labels (0 when there is none)."""
    return sum(samples(metrics, name, **labels))


def lab_for_module(launched: list[str], **kw):
    """A lab with hosts for a test module (a generator for a module-scoped
    fixture): on the way out `lab down`, then no namespace of the lab, of its
    hosts' agents or among the instances in `launched` may be left."""
    lab = Lab(**kw)
    st = lab.status()
    ours = [f"vpcdlab{st['lab_tag']}-"] + [f"vpcd{h['tag']}-" for h in st["hosts"]]
    try:
        yield lab
    finally:
        lab.down()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    present = {line.split()[0] for line in names.splitlines() if line.strip()}
    left = {n for n in present if any(n.startswith(p) for p in ours) or n in launched}
    assert not left, f"left behind: {sorted(left)}"


def host_of(lab: Lab, name: str) -> dict:
    """The lab's status of host `name`."""
    return next(h for h in lab.status()["hosts"] if h["name"] == name)
