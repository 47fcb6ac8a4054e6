"""The web console in a real browser: headless Chromium (Debian's `chromium`) driven
by Playwright (`pip install playwright`, used only as a driver: it is pointed at
/usr/bin/chromium and never downloads a browser).

The seeds' walkthrough, clicked through as a learner would: account A (us-east-1)
makes VPC-A, a subnet and an instance; account B, in its own browser context and in
us-west-2, makes VPC-B, a subnet and an instance; A requests a peering to B's VPC in
the other account and region; B accepts it; both add the route through the route
editor's target picker and an ICMP rule through the security-group editor; A's
"test connectivity" says reachable; A removes its route and the analyzer names the
missing route. Screenshots of every step go to $CONSOLE_SCREENSHOTS (default
target/console-screenshots). As root the server runs its kernel data plane and each
"test connectivity" also sends a real ping from the instance's namespace: the
walkthrough then checks that it is delivered, and that it is not once the route is gone.

Negative cases: B gets 404 (not 403) for A's VPC and instance pages; a state-changing
request without the CSRF token is refused and changes nothing; a `<script>` tag
value renders as text and does not run; a wrong secret does not sign in.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import REPO, account_id
from helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or REPO / "target" / "console-screenshots")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
CIDR_A, CIDR_B = "10.31.0.0/16", "10.32.0.0/16"
SUB_A, SUB_B = "10.31.1.0/24", "10.32.1.0/24"
REGION_A, REGION_B = "us-east-1", "us-west-2"


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # a missing tool fails with a clear message, never a skip
        raise RuntimeError("the console tests need `pip install playwright` (scripts/test.sh installs it)") from e
    if not CHROMIUM.exists():
        raise RuntimeError("the console tests need Debian's chromium at /usr/bin/chromium "
                           "(scripts/test.sh installs chromium and chromium-driver)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    """Chromium from /usr/bin, launched by Playwright with a fresh temporary profile
    (its own --user-data-dir, removed at close)."""
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def console_server(request):
    """As root, a server with its kernel data plane, so "test connectivity" also sends
    real packets (and the walkthrough checks them); otherwise the control plane only."""
    return request.getfixturevalue("dp_server" if ROOT else "server")


@pytest.fixture(scope="module")
def shots():
    shutil.rmtree(SHOTS, ignore_errors=True)  # this run's screenshots only
    SHOTS.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 1000))

    def shot(page, name: str):
        page.screenshot(path=str(SHOTS / f"{next(counter):02d}-{name}.png"), full_page=True)
    return shot


class Console:
    """One signed-in browser context (one account)."""

    def __init__(self, browser, server, account: str, region: str):
        self.base = server.url
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        self.ctx.set_default_timeout(15_000)
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        _, akid, secret = server.creds(account)
        self.sign_in(akid, secret, region)
        assert self.page.url.endswith("/console/vpcs"), self.page.url
        assert self.page.locator("#account").inner_text() == account_id(account)

    def sign_in(self, akid: str, secret: str, region: str):
        p = self.page
        p.goto(self.base + "/console/signin")
        p.fill('input[name="access_key_id"]', akid)
        p.fill('input[name="secret_access_key"]', secret)
        p.select_option('select[name="region"]', region)
        with p.expect_navigation():
            p.click('main.signin button[type="submit"]')

    def go(self, path: str):
        return self.page.goto(self.base + path)

    def submit(self, action: str, fields: dict | None = None, nth: int = 0, within: str = "",
               expect_ok: bool = True):
        """Fills the nth console form running `action` and submits it."""
        p = self.page
        form = p.locator(f'{within} form[data-action="{action}"]'.strip()).nth(nth)
        for name, value in (fields or {}).items():
            el = form.locator(f'[name="{name}"]')
            if el.evaluate("e => e.tagName") == "SELECT":
                el.select_option(value)
            else:
                el.fill(value)
        with p.expect_navigation():
            form.locator('button[type="submit"]').click()
        if expect_ok:
            err = p.locator("#flash.error")
            assert err.count() == 0, f"{action} failed in the console: {err.inner_text()}"

    def flash(self) -> str:
        return self.page.locator("#flash").inner_text()

    def text(self, sel: str) -> str:
        return self.page.locator(sel).inner_text().strip()

    def close(self):
        self.ctx.close()


def _probe_until(c: Console, outcome: str, timeout: float = 15.0):
    """Runs the analysis page's "Run again" until the real probe's line ends with `outcome`
    (the data plane applies a change a moment after the API answers)."""
    def probe():
        if not c.flash().endswith(outcome):
            with c.page.expect_navigation():
                c.page.click("#rerun")
        return c.flash()
    wait_for(probe, lambda f: f.startswith("Real probe") and f.endswith(outcome),
             timeout=timeout, interval=0.5, what=f"a real probe that says {outcome}")


def _route_table_of(c: Console, vpc_id: str) -> str:
    c.go(f"/console/route-tables?vpc={vpc_id}")
    return c.page.locator("#route-tables tbody tr td:nth-child(2) a").first.inner_text()


def _make_network(c: Console, name: str, cidr: str, subnet: str) -> dict:
    c.go("/console/vpcs")
    c.submit("CreateVpc", {"Name": name, "CidrBlock": cidr})
    vpc = c.text("#vpc-id")
    c.go(f"/console/subnets?vpc={vpc}")
    c.submit("CreateSubnet", {"VpcId": vpc, "Name": f"{name}-subnet", "CidrBlock": subnet})
    sub = re.search(r"subnet-[0-9a-f]+", c.page.url).group(0)
    c.go(f"/console/instances?subnet={sub}")
    c.submit("RunInstances", {"Name": f"{name}-instance", "SubnetId": sub})
    inst = c.text("#instance-id")
    ip = c.text("#private-ip")
    # The instance runs shortly after launch; the page says so once it does.
    wait_for(lambda: (c.page.reload(), c.text("#instance-state"))[1], lambda s: s == "running",
             timeout=10, what=f"{inst} running")
    return {"vpc": vpc, "subnet": sub, "instance": inst, "ip": ip}


def test_the_seed_walkthrough_in_a_browser(browser, console_server, shots):
    server = console_server
    a = Console(browser, server, "A", REGION_A)
    b = Console(browser, server, "B", REGION_B)
    try:
        # A: VPC, subnet, instance.
        na = _make_network(a, "vpc-a-console", CIDR_A, SUB_A)
        shots(a.page, "a-instance")
        # B, in its own context and region: the same.
        nb = _make_network(b, "vpc-b-console", CIDR_B, SUB_B)
        shots(b.page, "b-instance")

        # A requests the peering: another account, another region.
        a.go("/console/peering")
        a.submit("CreateVpcPeeringConnection", {
            "Name": "a-to-b", "VpcId": na["vpc"], "PeerOwnerId": account_id("B"),
            "PeerRegion": REGION_B, "PeerVpcId": nb["vpc"]})
        pcx = re.search(r"pcx-[0-9a-f]+", a.page.url).group(0)
        wait_for(lambda: (a.page.reload(), a.text("#pcx-status"))[1],
                 lambda s: s.startswith("pending-acceptance"), timeout=5, what="pending-acceptance")
        shots(a.page, "a-peering-requested")
        # Only the accepter's account and region offer Accept.
        assert a.page.locator('form[data-action="AcceptVpcPeeringConnection"]').count() == 0

        # B accepts from its peering list, with the AWS console's columns.
        b.go("/console/peering")
        row = b.page.locator(f'#peering tr[data-id="{pcx}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == pcx and cells[3] == na["vpc"] and cells[4] == nb["vpc"]
        assert cells[5] == CIDR_A and cells[7] == account_id("A") and cells[8] == account_id("B")
        assert cells[9] == REGION_A and cells[10] == REGION_B
        shots(b.page, "b-peering-list")
        b.submit("AcceptVpcPeeringConnection", within=f'#peering tr[data-id="{pcx}"]')
        assert "Modify my route tables now" in b.flash()
        assert b.page.get_attribute("#flash a", "href") == f"/console/route-tables?vpc={nb['vpc']}"
        wait_for(lambda: (b.page.reload(), b.text("#pcx-status"))[1],
                 lambda s: s.startswith("active"), timeout=5, what="active")
        shots(b.page, "b-peering-accepted")

        # Routes both ways, chosen in the target picker by peering connection.
        for c, n, peer_cidr in ((a, na, CIDR_B), (b, nb, CIDR_A)):
            rtb = _route_table_of(c, n["vpc"])
            c.go(f"/console/route-tables/{rtb}")
            options = c.page.locator("#route-target option").all_inner_texts()
            assert any(pcx in o for o in options), options
            c.submit("CreateRoute", {"DestinationCidrBlock": peer_cidr,
                                     "Target": f"VpcPeeringConnectionId={pcx}"})
            route = c.page.locator(f'#routes tr[data-destination="{peer_cidr}"]')
            assert pcx in route.inner_text() and "active" in route.inner_text()
            n["rtb"] = rtb
        shots(a.page, "a-route-added")

        # Security groups: ICMP from the peer's CIDR, in the inbound editor.
        for c, n, peer_cidr in ((a, na, CIDR_B), (b, nb, CIDR_A)):
            c.go(f"/console/instances/{n['instance']}")
            sg = c.page.locator("dl.facts a[href^='/console/security-groups/']").first.inner_text()
            c.go(f"/console/security-groups/{sg}")
            c.submit("AuthorizeSecurityGroupIngress", {
                "IpPermissions.1.IpProtocol": "icmp", "SgPorts": "-1", "Peer": peer_cidr})
            assert peer_cidr in c.text("#inbound-rules")
        shots(b.page, "b-security-group")

        # Test connectivity from A's instance: reachable.
        a.go(f"/console/instances/{na['instance']}")
        a.page.fill("#test-destination", nb["ip"])
        a.page.select_option("#test-protocol", "icmp")
        with a.page.expect_navigation():
            a.page.click("#test-connectivity")
        assert a.text("#verdict") == "Reachable", a.page.content()
        assert pcx in a.text("#forward-hops")
        if ROOT:  # a real ping behind the verdict, once the kernel has the new rules
            _probe_until(a, "delivered.")
        shots(a.page, "a-reachable")

        # Remove A's route: the analyzer names the missing route.
        a.go(f"/console/route-tables/{na['rtb']}")
        a.submit("DeleteRoute", within=f'#routes tr[data-destination="{CIDR_B}"]')
        assert a.page.locator(f'#routes tr[data-destination="{CIDR_B}"]').count() == 0
        a.go(f"/console/instances/{na['instance']}")
        a.page.fill("#test-destination", nb["ip"])
        with a.page.expect_navigation():
            a.page.click("#test-connectivity")
        assert a.text("#verdict") == "Not reachable"
        assert "missing-route" in a.text("#diagnoses")
        assert "NO_ROUTE_TO_DESTINATION" in a.text("#explanations")
        if ROOT:
            _probe_until(a, "not delivered.")
        shots(a.page, "a-missing-route")
        # The diagnosis' fix, applied after confirmation (a CreateRoute the user submits).
        fix = a.page.locator("form.apply-fix")
        assert CIDR_B in fix.inner_text() and pcx in fix.inner_text()
        a.submit("CreateRoute", within="#diagnoses")
        with a.page.expect_navigation():
            a.page.click("#rerun")
        assert a.text("#verdict") == "Reachable"
        shots(a.page, "a-fix-applied")

        # The topology shows both VPCs and the active peering; clicking it shows the routes.
        a.go(f"/console/topology?vpc={na['vpc']}")
        assert a.page.locator(f'svg g.vpc[data-vpc="{na["vpc"]}"]').count() == 1
        assert a.page.locator(f'svg g.vpc[data-vpc="{nb["vpc"]}"]').count() == 1
        edge = a.page.locator(f'svg a[data-pcx="{pcx}"] path')
        assert "active" in edge.get_attribute("class")
        shots(a.page, "a-topology")
        # Click the middle of the drawn edge itself.
        point = edge.evaluate("""p => {
            p.scrollIntoView({block: "center"});
            const m = p.getPointAtLength(p.getTotalLength() / 2);
            const s = new DOMPoint(m.x, m.y).matrixTransform(p.getScreenCTM());
            return [s.x, s.y];
        }""")
        with a.page.expect_navigation():
            a.page.mouse.click(point[0], point[1])
        assert a.page.url.endswith(f"/console/peering/{pcx}")
        assert "routes to the peer's CIDRs" in a.text('section[data-side="Requester"]')
        assert "visible only to that account" in a.text('section[data-side="Accepter"]')

        # The console's writes went through the API's path: boto3 sees them.
        ec2 = server.client("B", region=REGION_B)
        got = ec2.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])
        assert got["VpcPeeringConnections"][0]["Status"]["Code"] == "active"

        # Negative: B cannot see A's pages, and learns nothing from the answer.
        for path in (f"/console/vpcs/{na['vpc']}", f"/console/instances/{na['instance']}",
                     f"/console/route-tables/{na['rtb']}"):
            r = b.go(path)
            assert r.status == 404, (path, r.status)
        b.page.select_option("#region-select", REGION_A)
        with b.page.expect_navigation():
            b.page.click("form.region button")
        assert b.go(f"/console/vpcs/{na['vpc']}").status == 404
        seen = b.text("p.error").replace(na["vpc"], "ID")
        made_up = "vpc-0123456789abcdef0"
        assert b.go(f"/console/vpcs/{made_up}").status == 404
        assert b.text("p.error").replace(made_up, "ID") == seen  # exactly as for a missing one
        assert a.errors == [] and b.errors == []
    finally:
        a.close()
        b.close()


def test_a_request_without_the_csrf_token_is_refused(browser, server, client):
    a = Console(browser, server, "A", REGION_A)
    try:
        before = len(client("A").describe_vpcs()["Vpcs"])
        for form in ({"Action": "CreateVpc", "CidrBlock": "10.41.0.0/16"},
                     {"Action": "CreateVpc", "CidrBlock": "10.41.0.0/16", "csrf": "0" * 64}):
            r = a.ctx.request.post(server.url + "/console/do", form=form, max_redirects=0)
            assert r.status == 403, r.status
            assert "CSRF" in r.text()
        assert len(client("A").describe_vpcs()["Vpcs"]) == before
        # Signing out needs the token too.
        assert a.ctx.request.post(server.url + "/console/signout", form={}, max_redirects=0).status == 403
        assert a.go("/console/vpcs").status == 200 and a.page.url.endswith("/console/vpcs")
    finally:
        a.close()


def test_a_script_in_a_tag_renders_as_text(browser, server, shots):
    a = Console(browser, server, "A", REGION_A)
    value = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    try:
        a.go("/console/vpcs")
        a.submit("CreateVpc", {"Name": value, "CidrBlock": "10.42.0.0/16"})
        vpc = a.text("#vpc-id")
        a.submit("CreateTags", {"Tag.1.Key": "note", "Tag.1.Value": value})
        a.go(f"/console/vpcs/{vpc}")
        cells = a.page.locator("td.tag-value")
        assert value in cells.all_inner_texts()
        assert a.page.locator("td.tag-value script, td.tag-value img, span.name script").count() == 0
        a.go("/console/vpcs")
        assert value in a.page.locator("#vpcs").inner_text()
        assert a.page.evaluate("window.__pwned") is None
        shots(a.page, "script-tag-as-text")
    finally:
        a.close()


def test_a_wrong_secret_cannot_sign_in(browser, server):
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        _, akid, secret = server.creds("A")
        for key, sec in ((akid, secret + "x"), (akid, ""), ("AKIDNOPE", secret)):
            page.goto(server.url + "/console/signin")
            page.fill('input[name="access_key_id"]', key)
            page.fill('input[name="secret_access_key"]', sec)
            page.evaluate("document.querySelector('input[name=secret_access_key]').required = false")
            with page.expect_navigation() as nav:
                page.click('main.signin button[type="submit"]')
            assert nav.value.status in (401, 403), nav.value.status
            assert "Sign-in failed" in page.locator("#signin-error").inner_text()
        assert not any(c["name"] == "vpcd_console" for c in ctx.cookies())
        page.goto(server.url + "/console/vpcs")
        assert page.url.endswith("/console/signin")
    finally:
        ctx.close()


def test_the_session_cookie_is_httponly_strict_and_expiring(browser, server):
    a = Console(browser, server, "A", REGION_A)
    try:
        cookie = next(c for c in a.ctx.cookies() if c["name"] == "vpcd_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["expires"] > 0  # a Max-Age, not a browser-lifetime cookie
        assert a.page.evaluate("document.cookie") == ""
    finally:
        a.close()
