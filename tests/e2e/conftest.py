"""End-to-end tests: the real `vpcd` binary, driven over HTTP by boto3 and the aws CLI.

Running
-------
    cd /work/main && cargo build && python3 -m pytest tests/e2e -q

The binary is ``$VPCD_BIN`` or, by default, ``<repo>/target/debug/vpcd``.
Needs: pytest, boto3 (botocore) and the ``aws`` CLI on PATH. Everything binds
127.0.0.1 only; nothing talks to real AWS.

What the harness gives a test
-----------------------------
``Server``
    One ``vpcd serve --test-clock`` process on a free loopback port with its
    own temporary data directory. Three accounts are added with
    ``vpcd account add`` before it starts (see ``ACCOUNTS``):
    ``A`` = 111111111111 / AKIDA1 / secretA1, ``B`` = 222222222222 / AKIDB2 /
    secretB2, ``C`` = 333333333333 / AKIDC3 / secretC3. ``kill9()`` SIGKILLs
    it, ``restart()`` starts it again on the same data dir and port,
    ``startup_seconds`` is the last spawn-to-port-open time.

Fixtures
    ``server``          one server per test module (quotas raised, see
                        ``ROOMY_LIMITS``, so tests in a module do not run
                        into VpcLimitExceeded because of each other).
    ``client``          ``client(account, region='us-east-1', service='ec2')``
                        → a boto3 client for ``server`` (retries off).
    ``aws``             ``aws(account, 'ec2', 'describe-vpcs', ..., region=)``
                        → parsed JSON from the aws CLI, or ``AwsCliError``.
    ``advance``         ``advance(seconds)`` moves the server's simulated clock.
    ``server_factory``  ``server_factory(limits=..., ...)`` → a fresh, started
                        ``Server`` killed at the end of the test. Use it for
                        quota tests, clock tests and kill/restart tests.
                        ``serve_args=[...]`` adds ``vpcd serve`` flags (e.g.
                        ``--header-timeout-secs 1``); ``open_files=N`` starts
                        the server with RLIMIT_NOFILE N (soft and hard).
    ``dp_server``, ``dp_server_factory``
                        the same with vpcd's kernel data plane (root only; see
                        README.md and the data-plane section at the end). Every
                        other server runs ``--no-dataplane``.

Helpers live in ``helpers.py`` (``expect_error``, ``wait_for``,
``pcx_status``, ``unique_cidr`` ...).

Tests must not depend on each other's leftovers: each creates its own VPCs
with its own CIDRs and looks only at the resources it made.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import netprobe
from helpers import AwsCliError

REPO = Path(__file__).resolve().parents[2]
# $VPCD_BIN, relative paths taken from the repository root; else the debug build.
VPCD_BIN = REPO / (os.environ.get("VPCD_BIN") or "target/debug/vpcd")

# name -> (account id, access key id, secret access key)
ACCOUNTS = {
    "A": ("111111111111", "AKIDA1", "secretA1"),
    "B": ("222222222222", "AKIDB2", "secretB2"),
    "C": ("333333333333", "AKIDC3", "secretC3"),
}

# Quotas for the shared per-module server. AWS defaults stay in force for
# everything that is not listed; tests of the quotas themselves use
# server_factory() with the defaults.
ROOMY_LIMITS = {
    "vpcs_per_region": 1000,
    "igws_per_region": 1000,
    "outstanding_peerings_per_account": 1000,
}

# Keep the environment free of anything that could reach real AWS.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.setdefault("AWS_CONFIG_FILE", "/dev/null")
os.environ.setdefault("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


_SESSION = boto3.session.Session()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def account_id(account: str) -> str:
    """'A' -> '111111111111'; a 12-digit id is returned unchanged."""
    return ACCOUNTS[account][0] if account in ACCOUNTS else account


_LIVE: set["Server"] = set()


@atexit.register
def _kill_leftovers():
    """Last resort if a run is interrupted before fixture teardown."""
    for s in list(_LIVE):
        s.kill9()
        if s.dataplane:  # never leave kernel objects behind, even on an interrupted run
            s.vpcd("teardown", "--data-dir", str(s.data_dir), check=False)


class Server:
    """One vpcd process on a loopback port with its own data directory."""

    def __init__(self, limits: dict | None = None, regions: list[str] | None = None,
                 test_clock: bool = True, accounts=("A", "B", "C"), dataplane: bool = False,
                 serve_args: list[str] | None = None, open_files: int | None = None):
        if not VPCD_BIN.exists():
            raise RuntimeError(f"vpcd binary not found at {VPCD_BIN}; run `cargo build` or set VPCD_BIN")
        self.tmp = Path(tempfile.mkdtemp(prefix="vpcd-e2e-"))
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir()
        self.limits = limits
        self.regions = regions
        self.test_clock = test_clock
        # Without dataplane=True the server runs `--no-dataplane`, so API tests run
        # as root leave nothing in the kernel.
        self.dataplane = dataplane
        self.serve_args = list(serve_args or [])
        self.open_files = open_files
        # Instances the data-plane tests launched (their namespaces must go at teardown).
        self.instance_ids: set[str] = set()
        self.ns_before: set[str] = set()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log = None
        self._clients: dict = {}
        self.keys: dict[str, tuple[str, str, str]] = {}
        for name in accounts:
            self.add_account(*ACCOUNTS[name], name=name)

    # -- accounts ----------------------------------------------------------
    def vpcd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(VPCD_BIN), *args], capture_output=True, text=True,
                              check=check, timeout=30)

    def add_account(self, acct: str, akid: str, secret: str, name: str | None = None):
        self.vpcd("account", "add", "--data-dir", str(self.data_dir), "--id", acct,
                  "--access-key-id", akid, "--secret-access-key", secret)
        self.keys[name or acct] = (acct, akid, secret)
        self.keys[acct] = (acct, akid, secret)

    def creds(self, account: str) -> tuple[str, str, str]:
        return self.keys[account]

    # -- process -----------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "Server":
        argv = [str(VPCD_BIN), "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir)]
        if self.test_clock:
            argv.append("--test-clock")
        if self.regions:
            argv += ["--regions", ",".join(self.regions)]
        if not self.dataplane:
            argv.append("--no-dataplane")
        if self.limits is not None:
            lp = self.tmp / "limits.json"
            lp.write_text(json.dumps(self.limits))
            argv += ["--limits", str(lp)]
        argv += self.serve_args
        self._log = open(self.tmp / "server.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=self._limit_open_files)
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vpcd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.kill9()
                    raise RuntimeError(f"vpcd did not open port {self.port}:\n{self.log()}")
                time.sleep(0.005)
        self.startup_seconds = time.monotonic() - t0
        _LIVE.add(self)
        return self

    def _limit_open_files(self):
        """In the child before exec: the open-file limit asked for, soft and hard."""
        if self.open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def rss_kib(self) -> int:
        """The server's resident memory (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")

    def kill9(self):
        """SIGKILL: no shutdown hooks, no flush. Whatever was acknowledged must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        _LIVE.discard(self)
        if self._log:
            self._log.close()
            self._log = None

    def terminate(self, timeout: float = 10.0):
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()

    def restart(self) -> "Server":
        self.kill9()
        return self.start()

    def stop(self):
        self.kill9()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.tmp / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- clients -----------------------------------------------------------
    def client(self, account: str = "A", region: str = "us-east-1", service: str = "ec2",
               access_key: str | None = None, secret_key: str | None = None,
               validate: bool = True):
        """A boto3 client for `account` (a name in ACCOUNTS or an added id).

        validate=False turns off botocore's client-side parameter checks, so a
        test can send values the model forbids and see what the server says.
        """
        _, akid, secret = self.keys[account] if account in self.keys else (None, None, None)
        key = (region, service, access_key or akid, secret_key or secret, validate)
        if key not in self._clients:
            self._clients[key] = self._new_client(*key)
        return self._clients[key]

    def _new_client(self, region, service, akid, secret, validate):
        # One botocore session for all clients: the EC2 model is loaded once.
        return _SESSION.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30,
                          parameter_validation=validate),
        )

    def aws(self, account: str, *args: str, region: str = "us-east-1"):
        """Runs the aws CLI; returns parsed JSON ({} for empty output)."""
        _, akid, secret = self.keys[account]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_ACCESS_KEY_ID": akid,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
        })
        argv = ["--endpoint-url", self.url, "--region", region, "--output", "json", *args]
        p = subprocess.run(["aws", *argv], capture_output=True, text=True, env=env, timeout=60)
        if p.returncode != 0:
            raise AwsCliError(p.returncode, p.stderr, argv)
        out = p.stdout.strip()
        return json.loads(out) if out else {}

    def advance(self, seconds: int) -> dict:
        """Moves the simulated clock forward (POST /_vpcd/clock?advance=SECONDS)."""
        req = urllib.request.Request(f"{self.url}/_vpcd/clock?advance={int(seconds)}",
                                     data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, r.status
            return json.loads(r.read())


# -- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    s = Server(limits=ROOMY_LIMITS).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def client(server):
    return server.client


@pytest.fixture(scope="module")
def aws(server):
    return server.aws


@pytest.fixture(scope="module")
def advance(server):
    return server.advance


@pytest.fixture
def server_factory():
    made: list[Server] = []

    def make(**kw) -> Server:
        s = Server(**kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.cleanup()


# -- data plane ------------------------------------------------------------------
#
# The data-plane tests (test_dataplane*.py) run vpcd with its kernel data plane,
# which needs root. They fail (never skip) when not root. Every such server is
# stopped, then `vpcd teardown --data-dir DIR` runs, and the teardown asserts that
# no namespace of that server is left: none named by one of its instance IDs, none
# with its `vpcd<tag>-` prefix.

DP_LIMITS = {**ROOMY_LIMITS, "elastic_ips_per_region": 50, "nat_gateways_per_az": 50}

_TAGGED = re.compile(r"^vpcd[0-9a-f]{4}-")


def _need_root():
    if os.geteuid() != 0:
        pytest.fail("data-plane tests need root: they create network namespaces, veths and nftables "
                    "rules through vpcd (run `sudo python3 -m pytest tests/e2e/test_dataplane*.py`)",
                    pytrace=False)
    missing = [t for t in ("ip", "nft", "ping") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"data-plane tests need {', '.join(missing)} on PATH (scripts/test.sh installs them)",
                    pytrace=False)


@pytest.fixture(scope="module")
def require_root():
    _need_root()


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def dp_tag(server: Server) -> str | None:
    """The server's data-plane tag (settings key `dp_tag`), if its data plane has set one."""
    return netprobe.dp_tag(server.data_dir)


def _known_instances(server: Server) -> set[str]:
    """Instance IDs the tests recorded, plus whatever DescribeInstances still lists."""
    ids = set(server.instance_ids)
    if server.proc and server.proc.poll() is None:
        for acct in server.keys:
            if acct not in ACCOUNTS:
                continue
            for region in ("us-east-1", "us-west-2"):
                try:
                    for r in server.client(acct, region).describe_instances()["Reservations"]:
                        ids.update(i["InstanceId"] for i in r["Instances"])
                except Exception:  # noqa: BLE001 - best effort; the recorded IDs remain
                    pass
    return ids


def dp_stop_and_teardown(server: Server) -> None:
    """Stops the server, runs `vpcd teardown`, and asserts none of its namespaces is left."""
    ids = _known_instances(server)
    tag = dp_tag(server)
    server.terminate()
    p = server.vpcd("teardown", "--data-dir", str(server.data_dir), check=False)
    left = netns_names()
    if tag:
        ours = lambda n: n.startswith(f"vpcd{tag}-")  # noqa: E731
    else:  # no tag recorded: any tagged namespace that appeared while it ran
        ours = lambda n: bool(_TAGGED.match(n)) and n not in server.ns_before  # noqa: E731
    leaked = sorted(n for n in left if n in ids or ours(n))
    problems = []
    if p.returncode != 0:
        problems.append(f"`vpcd teardown --data-dir {server.data_dir}` exited {p.returncode}: "
                        f"{p.stdout.strip()} {p.stderr.strip()}")
    if leaked:
        problems.append(f"namespaces left after teardown: {leaked}")
    if problems:
        # Remove what we can so the next run starts clean, then fail.
        for n in leaked:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        raise AssertionError("; ".join(problems) + f"\nserver log tail:\n{server.log()}")


@pytest.fixture(scope="module")
def dp_server(require_root):
    """One vpcd with its data plane for a whole test module."""
    s = Server(limits=DP_LIMITS, dataplane=True)
    s.ns_before = netns_names()
    s.start()
    try:
        yield s
    finally:
        dp_stop_and_teardown(s)
        shutil.rmtree(s.tmp, ignore_errors=True)


@pytest.fixture
def dp_server_factory(require_root):
    """dp_server_factory(**Server kwargs) -> a started data-plane Server, torn down after the test."""
    made: list[Server] = []

    def make(**kw) -> Server:
        kw.setdefault("limits", DP_LIMITS)
        s = Server(dataplane=True, **kw)
        s.ns_before = netns_names()
        made.append(s)
        return s.start()

    yield make
    errors = []
    for s in made:
        try:
            dp_stop_and_teardown(s)
        except AssertionError as e:
            errors.append(str(e))
        shutil.rmtree(s.tmp, ignore_errors=True)
    if errors:
        raise AssertionError("\n".join(errors))
