"""vpcd on an etcd that only speaks TLS, demands a client certificate and has
authentication on (docs/cluster.md, "TLS and authentication").

One etcd member per module, certificates made here with the `openssl`
command; `vpcd account add` and `vpcd serve` reach it with
``--store etcds://... --etcd-ca/--etcd-cert/--etcd-key --etcd-user`` and the
password in ``VPCD_ETCD_PASSWORD``; boto3 then talks to the server. Wrong
settings stop `vpcd` at start-up with one clear line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import VPCD_BIN, free_port

PASSWORD = "pw-" + os.urandom(6).hex()
AKID, SECRET, ACCOUNT = "AKIDTLS1", "secretTLS1", "444444444444"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: Path) -> None:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem"),
                "-days", "2", "-subj", f"/CN=vpcd-e2e-{ca}")
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{who}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", str(d / f"{who}.key"), "-out", str(d / f"{who}.csr"),
                "-subj", f"/CN=vpcd-e2e-{who}")
        openssl("x509", "-req", "-in", str(d / f"{who}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{who}.pem"),
                "-days", "2", "-extfile", str(d / f"{who}.ext"))


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}:\n{log.read_text()}")
            time.sleep(0.05)


class SecureEtcd:
    def __init__(self):
        for tool in ("etcd", "etcdctl", "openssl"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed (apt-get install etcd-server etcd-client openssl;"
                                   " scripts/test.sh does)")
        self.tmp = Path(tempfile.mkdtemp(prefix="vpcd-etcd-tls-"))
        make_certs(self.tmp)
        self.port, peer = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = self.tmp / "etcd.log"
        self.proc = subprocess.Popen(
            ["etcd", "--name=tls", f"--data-dir={self.tmp / 'data'}",
             f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
             f"--listen-peer-urls=http://127.0.0.1:{peer}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
             f"--initial-cluster=tls=http://127.0.0.1:{peer}",
             f"--cert-file={self.tmp / 'server.pem'}", f"--key-file={self.tmp / 'server.key'}",
             "--client-cert-auth", f"--trusted-ca-file={self.tmp / 'ca.pem'}"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "etcd", self.log)
        for args in (["user", "add", f"root:{PASSWORD}"], ["auth", "enable"]):
            subprocess.run(["etcdctl", f"--endpoints={self.url}", f"--cacert={self.tmp / 'ca.pem'}",
                            f"--cert={self.tmp / 'client.pem'}", f"--key={self.tmp / 'client.key'}", *args],
                           check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
        self.prefix = f"/vpcd-tls-{os.getpid()}"

    def store_args(self, ca: str = "ca.pem", client_cert: bool = True) -> list[str]:
        args = ["--store", f"etcds://127.0.0.1:{self.port}", "--store-prefix", self.prefix,
                "--etcd-ca", str(self.tmp / ca), "--etcd-user", "root"]
        if client_cert:
            args += ["--etcd-cert", str(self.tmp / "client.pem"), "--etcd-key", str(self.tmp / "client.key")]
        return args

    def vpcd(self, *args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPCD_")}
        if password is not None:
            env["VPCD_ETCD_PASSWORD"] = password
        return subprocess.run([str(VPCD_BIN), *args], capture_output=True, text=True, env=env, timeout=60,
                              stdin=subprocess.DEVNULL)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def etcd():
    e = SecureEtcd()
    try:
        yield e
    finally:
        e.stop()


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0, r
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert PASSWORD not in r.stderr
    return lines[0]


def test_serve_over_tls_with_a_user_answers_boto3(etcd):
    r = etcd.vpcd("account", "add", "--id", ACCOUNT, "--access-key-id", AKID, "--secret-access-key", SECRET,
                  *etcd.store_args())
    assert r.returncode == 0, r.stderr
    listed = etcd.vpcd("account", "list", *etcd.store_args())
    assert listed.returncode == 0, listed.stderr
    assert ACCOUNT in listed.stdout

    port = free_port()
    data = etcd.tmp / "serve"
    log = etcd.tmp / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPCD_")}
    env["VPCD_ETCD_PASSWORD"] = PASSWORD
    proc = subprocess.Popen([str(VPCD_BIN), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                             "--no-dataplane", *etcd.store_args()],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, proc, "vpcd serve", log)
        ec2 = boto3.session.Session().client(
            "ec2", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=AKID, aws_secret_access_key=SECRET,
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30))
        vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        assert vpc in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    finally:
        proc.kill()
        proc.wait()
    assert PASSWORD not in log.read_text()


def test_a_wrong_password_stops_serve_at_start_up(etcd):
    started = time.monotonic()
    r = etcd.vpcd("serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(etcd.tmp / "bad"),
                  "--no-dataplane", *etcd.store_args(), password="not-" + PASSWORD)
    line = one_line_error(r)
    assert "wrong etcd user or password" in line, line
    assert time.monotonic() - started < 15


def test_a_wrong_ca_or_a_missing_client_certificate_is_one_clear_line(etcd):
    line = one_line_error(etcd.vpcd("account", "list", *etcd.store_args(ca="other-ca.pem")))
    assert "not trusted" in line, line
    line = one_line_error(etcd.vpcd("account", "list", *etcd.store_args(client_cert=False)))
    assert "client certificate" in line, line
    # No CA at all for etcds://, or no password for the user: refused before connecting.
    args = etcd.store_args()
    i = args.index("--etcd-ca")
    line = one_line_error(etcd.vpcd("account", "list", *(args[:i] + args[i + 2:])))
    assert "--etcd-ca" in line, line
    line = one_line_error(etcd.vpcd("account", "list", *args, password=None))
    assert "VPCD_ETCD_PASSWORD" in line, line


def test_the_password_is_not_a_command_line_flag(etcd):
    r = etcd.vpcd("account", "list", *etcd.store_args(), "--etcd-password", PASSWORD)
    assert r.returncode != 0
    assert "--etcd-password" in r.stderr
