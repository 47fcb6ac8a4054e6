"""What every Terraform end-to-end test shares: finding the CLI and the
provider mirror, the CLI configuration that installs hashicorp/aws 5.100.0
from that mirror only, provider blocks pointed at a vpcd server, and a runner
that fails with the output and the server's log tail.

Neither ``terraform`` nor the provider comes from a package registry, so a
test calls ``require_terraform`` first: where either is missing it prints the
reason and skips (the only skip the suite allows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

PLUGINS = Path(os.environ.get("VPCD_TF_PLUGINS", "/opt/tf-plugins"))

CLI_CONFIG = """\
provider_installation {
  filesystem_mirror {
    path    = "%s"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
  direct { exclude = ["registry.terraform.io/hashicorp/aws"] }
}
"""

_PROVIDER = """\
provider "aws" {
%(alias_line)s  region                      = "%(region)s"
  access_key                  = "%(akid)s"
  secret_key                  = "%(secret)s"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
%(endpoints)s  }
}
"""


def skip_reason() -> str | None:
    """Why the Terraform tests cannot run here, or None when they can."""
    if shutil.which("terraform") is None:
        return "terraform is not on PATH (it does not come from a package registry)"
    if not PLUGINS.is_dir():
        return f"no provider mirror at {PLUGINS} (hashicorp/aws 5.100.0; set VPCD_TF_PLUGINS)"
    return None


def require_terraform(test_name: str) -> None:
    """Skips the calling test, saying why on stdout, where Terraform is absent."""
    reason = skip_reason()
    if reason:
        print(f"\nSKIP {test_name}: {reason}")
        pytest.skip(reason)


def provider_block(server, account: str, region: str, alias: str | None = None,
                   services: tuple[str, ...] = ("ec2", "sts")) -> str:
    """A provider block signing as `account`, every listed service at `server`."""
    _, akid, secret = server.creds(account)
    endpoints = "".join(f'    {name:<7} = "{server.url}"\n' for name in services)
    alias_line = f'  alias                       = "{alias}"\n' if alias else ""
    return _PROVIDER % {"alias_line": alias_line, "region": region, "akid": akid,
                        "secret": secret, "endpoints": endpoints}


class Terraform:
    """One working directory holding `main.tf`, run against one vpcd server.

    Calling it runs ``terraform <args> -no-color`` and asserts the exit code is
    in `ok`, failing with the output and the server's log tail. Set
    ``VPCD_TF_DEBUG_LOG=<file>`` for the provider's debug log and
    ``VPCD_TF_SHOW=1`` to print each command's output."""

    def __init__(self, server, workdir: Path, main: str):
        self.server = server
        self.workdir = workdir
        (workdir / "cli.tfrc").write_text(CLI_CONFIG % PLUGINS)
        (workdir / "main.tf").write_text(main)
        env = {**os.environ, "TF_CLI_CONFIG_FILE": str(workdir / "cli.tfrc"),
               "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        env.pop("TF_LOG", None)
        if os.environ.get("VPCD_TF_DEBUG_LOG"):
            env["TF_LOG"] = "DEBUG"
            env["TF_LOG_PATH"] = os.environ["VPCD_TF_DEBUG_LOG"]
        self.env = env

    def __call__(self, *args: str, ok=(0,)) -> subprocess.CompletedProcess:
        started = time.monotonic()
        p = subprocess.run(["terraform", *args, "-no-color"], cwd=self.workdir, env=self.env,
                           capture_output=True, text=True, timeout=300)
        print(f"terraform {args[0]}: {time.monotonic() - started:.1f}s")
        if os.environ.get("VPCD_TF_SHOW"):
            print(p.stdout[-3000:])
        assert p.returncode in ok, (
            f"terraform {' '.join(args)} -> {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
            f"\n--- server log ---\n{self.server.log()[-2000:]}")
        return p

    def init_and_apply(self, *extra: str) -> None:
        self("init", "-input=false")
        self("apply", "-auto-approve", "-input=false", *extra)

    def plan_is_empty(self, why: str, *extra: str) -> None:
        """A plan finds nothing to do (``-detailed-exitcode`` 0, not 2)."""
        plan = self("plan", "-detailed-exitcode", "-input=false", *extra, ok=(0, 2))
        assert plan.returncode == 0, f"{why}: a plan wants changes:\n{plan.stdout[-6000:]}"

    def destroy(self, *extra: str) -> None:
        self("destroy", "-auto-approve", "-input=false", *extra)
