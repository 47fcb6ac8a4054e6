//! The console's boundary without a browser: its router on a real `App`
//! (store on disk), requests as a browser sends them. The browser-driven
//! tests are `tests/e2e/test_console.py`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;
use vpc_api::{App, Config, Params};
use vpc_model::region::Regions;
use vpc_model::{Limits, Vpc};

const A: (&str, &str, &str) = ("111111111111", "AKIDCONA", "secretA");
const B: (&str, &str, &str) = ("222222222222", "AKIDCONB", "secretB");
const REGION: &str = "us-east-1";

fn open(dir: &std::path::Path) -> Arc<App> {
    App::open(Config {
        data_dir: dir.to_path_buf(),
        regions: Regions::default(),
        limits: Limits::default(),
        test_clock: true,
        group_commit: true,
        http: vpc_api::HttpLimits::default(),
        rates: vpc_model::ops::cost::RateTable::parse(vpc_model::ops::cost::DEFAULT_RATES)
            .expect("the built-in rates"),
        serve_metrics: false,
    })
    .expect("open app")
}

fn setup() -> (tempfile::TempDir, Arc<App>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = vpc_store::Store::open(dir.path()).expect("store");
    for (id, akid, secret) in [A, B] {
        store.add_account(id, akid, secret).expect("account");
    }
    drop(store);
    let app = open(dir.path());
    (dir, app)
}

struct Answer {
    status: StatusCode,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

/// A browser: a cookie jar and the CSRF token of the last page.
struct Browser {
    router: axum::Router,
    cookies: HashMap<String, String>,
    csrf: String,
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl Browser {
    fn new(app: &Arc<App>) -> Browser {
        Browser {
            router: vpc_console::router(app.clone()),
            cookies: HashMap::new(),
            csrf: String::new(),
        }
    }

    async fn send(&mut self, req: Request<Body>) -> Answer {
        let r = self.router.clone().oneshot(req).await.expect("infallible");
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let set_cookies: Vec<String> = r
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let body =
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        if let Some(i) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[i + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_string();
        }
        Answer {
            status,
            location,
            set_cookies,
            body,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> Answer {
        let req = Request::get(path)
            .header(header::COOKIE, self.cookie_header())
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Answer {
        let req = Request::post(path)
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form_body(pairs)))
            .unwrap();
        self.send(req).await
    }

    /// Posts a console form with the page's CSRF token.
    async fn act(&mut self, pairs: &[(&str, &str)]) -> Answer {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post("/console/do", &all).await
    }

    async fn sign_in(app: &Arc<App>, who: (&str, &str, &str)) -> Browser {
        let mut b = Browser::new(app);
        b.get("/console/signin").await;
        let csrf = b.csrf.clone();
        let r = b
            .post(
                "/console/signin",
                &[
                    ("csrf", &csrf),
                    ("access_key_id", who.1),
                    ("secret_access_key", who.2),
                    ("region", REGION),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location, "/console/vpcs");
        b.get("/console/vpcs").await; // the page's CSRF token
        b
    }
}

fn vpc_count(app: &App, account: &str) -> usize {
    app.snapshot()
        .iter::<Vpc>()
        .filter(|v| v.meta.owner == account)
        .count()
}

/// The console's actions are the API's: the same handler runs (its error is
/// the API's, word for word), and a success is committed like an API write
/// (it survives reopening the store).
#[tokio::test(flavor = "multi_thread")]
async fn console_actions_are_the_api_actions_and_durable() {
    let (dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    for bad in [
        vec![("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/29")],
        vec![("Action", "CreateVpc"), ("CidrBlock", "nonsense")],
        vec![("Action", "DeleteVpc"), ("VpcId", "vpc-0123456789abcdef0")],
        vec![
            ("Action", "CreateRoute"),
            ("RouteTableId", "rtb-0123456789abcdef0"),
            ("DestinationCidrBlock", "10.1.0.0/16"),
            ("GatewayId", "igw-0123456789abcdef0"),
        ],
    ] {
        let api = app
            .dispatch(
                A.0,
                REGION,
                &Params::from_pairs(bad.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
                "test",
            )
            .expect_err("the API refuses it");
        let mut form = bad.clone();
        form.push(("next", "/console/vpcs"));
        let r = a.act(&form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let page = a.get(&r.location).await;
        let expected = format!("{}: {}", api.code, api.message);
        let escaped = expected.replace('\'', "&#39;").replace('"', "&quot;");
        assert!(
            page.body.contains(&expected) || page.body.contains(&escaped),
            "{expected} not in the page"
        );
    }
    let before = vpc_count(&app, A.0);
    let r = a
        .act(&[
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.5.0.0/16"),
            ("Name", "made in the console"),
            ("NameType", "vpc"),
            ("IdTag", "vpcId"),
            ("next", "/console/vpcs/{id}"),
        ])
        .await;
    assert!(
        r.location.starts_with("/console/vpcs/vpc-"),
        "{}",
        r.location
    );
    let id = r.location.trim_start_matches("/console/vpcs/").to_string();
    assert_eq!(vpc_count(&app, A.0), before + 1);
    let page = a.get(&r.location).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("made in the console"));
    drop(a);
    drop(app);
    let reopened = open(dir.path());
    let v = reopened
        .snapshot()
        .get::<Vpc>(&id)
        .cloned()
        .expect("durable");
    assert_eq!(v.meta.owner, A.0);
    assert_eq!(v.meta.tags[0].value, "made in the console");
}

/// Another account's resource is "not found", exactly as a missing one.
#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_pages_are_not_found() {
    let (_dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    let r = a
        .act(&[
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.6.0.0/16"),
            ("IdTag", "vpcId"),
            ("next", "/console/vpcs/{id}"),
        ])
        .await;
    let vpc = r.location.trim_start_matches("/console/vpcs/").to_string();
    let sg = app.snapshot().get::<Vpc>(&vpc).unwrap().default_sg.clone();
    let mut b = Browser::sign_in(&app, B).await;
    for path in [
        format!("/console/vpcs/{vpc}"),
        format!("/console/security-groups/{sg}"),
        "/console/vpcs/vpc-0123456789abcdef0".to_string(),
    ] {
        let r = b.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let list = b.get("/console/vpcs").await;
    assert!(!list.body.contains(&vpc));
    // And B cannot change it either: the action fails as for a missing VPC.
    b.act(&[
        ("Action", "DeleteVpc"),
        ("VpcId", &vpc),
        ("next", "/console/vpcs"),
    ])
    .await;
    assert!(app.snapshot().get::<Vpc>(&vpc).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_changing_request_needs_the_csrf_token() {
    let (_dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    let before = vpc_count(&app, A.0);
    for form in [
        vec![("Action", "CreateVpc"), ("CidrBlock", "10.7.0.0/16")],
        vec![
            ("csrf", "x"),
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.7.0.0/16"),
        ],
    ] {
        let r = a.post("/console/do", &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    for path in ["/console/region", "/console/signout", "/console/reach"] {
        assert_eq!(
            a.post(path, &[]).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(vpc_count(&app, A.0), before);
    // Without a session, nothing is done either.
    let mut anon = Browser::new(&app);
    let r = anon
        .post(
            "/console/do",
            &[("Action", "CreateVpc"), ("CidrBlock", "10.7.0.0/16")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(vpc_count(&app, A.0), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_text_is_escaped() {
    let (_dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let r = a
        .act(&[
            ("Action", "CreateVpc"),
            ("CidrBlock", "10.8.0.0/16"),
            ("Name", evil),
            ("NameType", "vpc"),
            ("IdTag", "vpcId"),
            ("next", "/console/vpcs/{id}"),
        ])
        .await;
    for path in [r.location.as_str(), "/console/vpcs", "/console/topology"] {
        let page = a.get(path).await;
        assert!(!page.body.contains("<script>"), "{path}");
        assert!(!page.body.contains("<img src=x"), "{path}");
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
    let page = a.get("/console/vpcs").await;
    assert!(page.set_cookies.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_checks_the_secret_and_sets_a_strict_cookie() {
    let (_dir, app) = setup();
    let mut b = Browser::new(&app);
    b.get("/console/signin").await;
    for (akid, secret) in [(A.1, "wrong"), (A.1, ""), ("AKIDNOPE", A.2), (B.1, A.2)] {
        let csrf = b.csrf.clone();
        let r = b
            .post(
                "/console/signin",
                &[
                    ("csrf", &csrf),
                    ("access_key_id", akid),
                    ("secret_access_key", secret),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(!r.set_cookies.iter().any(|c| c.starts_with("vpcd_console=")));
    }
    // Without the sign-in form's token, even the right secret is refused.
    let r = b
        .post(
            "/console/signin",
            &[
                ("csrf", "forged"),
                ("access_key_id", A.1),
                ("secret_access_key", A.2),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/console/vpcs").await.location, "/console/signin");

    let mut ok = Browser::new(&app);
    ok.get("/console/signin").await;
    let csrf = ok.csrf.clone();
    let r = ok
        .post(
            "/console/signin",
            &[
                ("csrf", &csrf),
                ("access_key_id", A.1),
                ("secret_access_key", A.2),
            ],
        )
        .await;
    let cookie = r
        .set_cookies
        .iter()
        .find(|c| c.starts_with("vpcd_console="))
        .expect("session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let page = ok.get("/console/vpcs").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = ok.csrf.clone();
    ok.post("/console/signout", &[("csrf", &csrf)]).await;
    assert_eq!(ok.get("/console/vpcs").await.location, "/console/signin");
}

/// The topology draws every VPC of the account and its peering edges, styled by
/// state, and collapses the boxes past 40 VPCs.
#[tokio::test(flavor = "multi_thread")]
async fn the_topology_draws_vpcs_and_peerings_by_state() {
    let (_dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    let mut vpcs = Vec::new();
    for i in 0..3 {
        let cidr = format!("10.{}.0.0/16", 20 + i);
        let r = a
            .act(&[
                ("Action", "CreateVpc"),
                ("CidrBlock", &cidr),
                ("IdTag", "vpcId"),
                ("next", "/console/vpcs/{id}"),
            ])
            .await;
        vpcs.push(r.location.trim_start_matches("/console/vpcs/").to_string());
    }
    let r = a
        .act(&[
            ("Action", "CreateVpcPeeringConnection"),
            ("VpcId", &vpcs[0]),
            ("PeerVpcId", &vpcs[1]),
            ("IdTag", "vpcPeeringConnectionId"),
            ("next", "/console/peering/{id}"),
        ])
        .await;
    let pcx = r
        .location
        .trim_start_matches("/console/peering/")
        .to_string();
    assert!(pcx.starts_with("pcx-"), "{}", r.location);
    let page = a.get("/console/topology").await;
    for v in &vpcs {
        assert!(page.body.contains(&format!("data-vpc=\"{v}\"")), "{v}");
    }
    assert!(page.body.contains(&format!("data-pcx=\"{pcx}\"")));
    assert!(page.body.contains("class=\"edge pending\""));
    // Filtered to the third VPC: no edge, and neither of the peered VPCs.
    let page = a.get(&format!("/console/topology?vpc={}", vpcs[2])).await;
    assert!(!page.body.contains("data-pcx="));
    assert!(!page.body.contains(&format!("data-vpc=\"{}\"", vpcs[0])));
    // Filtered to the first: its peer comes along.
    let page = a.get(&format!("/console/topology?vpc={}", vpcs[0])).await;
    assert!(page.body.contains(&format!("data-vpc=\"{}\"", vpcs[1])));
    assert!(page.body.contains("class=\"subnet\"") || !page.body.contains("subnets ·"));
    // Many VPCs: one line per VPC.
    let page = a.get("/console/topology?collapse=1").await;
    assert!(page.body.contains("subnets · "));
    assert!(!page.body.contains("class=\"subnet\""));
}

/// The costs page prices the signed-in account's metered usage, and only its own.
#[tokio::test(flavor = "multi_thread")]
async fn costs_show_only_the_accounts_own_usage() {
    use vpc_model::usage::{hour_of, TransferKind, Usage, UsageKey};
    let (dir, app) = setup();
    let mut a = Browser::sign_in(&app, A).await;
    assert!(a
        .get("/console/costs")
        .await
        .body
        .contains("id=\"no-usage\""));
    let usage = |account: &str, resource: &str, peer_region: &str| Usage {
        key: UsageKey {
            account: account.into(),
            region: REGION.into(),
            vpc_id: "vpc-0aaaaaaaaaaaaaaaa".into(),
            resource_id: resource.into(),
            kind: TransferKind::PeeringOut,
            az: "us-east-1a".into(),
            peer_region: peer_region.into(),
            peer_az: format!("{peer_region}a"),
        },
        hour: hour_of(app.now()),
        bytes: 5_000_000_000,
        packets: 1000,
    };
    let mut store = vpc_store::Store::open(dir.path()).unwrap();
    store
        .record_usage(
            &[
                usage(A.0, "pcx-0aaaaaaaaaaaaaaaa", "us-west-2"),
                usage(B.0, "pcx-0bbbbbbbbbbbbbbbb", "eu-west-1"),
            ],
            &Default::default(),
            &[],
        )
        .unwrap();
    let page = a.get("/console/costs").await;
    assert!(page.body.contains("pcx-0aaaaaaaaaaaaaaaa"));
    assert!(page.body.contains("USE1-USW2-AWS-Out-Bytes"));
    assert!(!page.body.contains("pcx-0bbbbbbbbbbbbbbbb"));
    assert!(!page.body.contains("eu-west-1a"));
}

/// Runs one EC2 action as `account` and returns the first `<tag>` value of its answer.
fn api(app: &App, account: &str, pairs: &[(&str, &str)], tag: &str) -> String {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let xml = app
        .dispatch(account, REGION, &Params::from_pairs(pairs), "req-flow-logs")
        .unwrap_or_else(|f| panic!("{}: {}", f.code, f.message));
    let open = format!("<{tag}>");
    let at = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    xml[at..at + xml[at..].find('<').unwrap()].to_string()
}

/// A VPC, a subnet and an interface of `account`: (vpc, eni).
fn vpc_with_eni(app: &App, account: &str, cidr: &str, subnet: &str) -> (String, String) {
    let vpc = api(
        app,
        account,
        &[("Action", "CreateVpc"), ("CidrBlock", cidr)],
        "vpcId",
    );
    let sub = api(
        app,
        account,
        &[
            ("Action", "CreateSubnet"),
            ("VpcId", &vpc),
            ("CidrBlock", subnet),
        ],
        "subnetId",
    );
    let eni = api(
        app,
        account,
        &[("Action", "CreateNetworkInterface"), ("SubnetId", &sub)],
        "networkInterfaceId",
    );
    (vpc, eni)
}

/// The flow-log page lists only the account's own flow logs, shows only the
/// records of its interfaces from a local file two accounts share, reads
/// its S3-layout objects, filters by interface and action, and escapes text.
#[tokio::test(flavor = "multi_thread")]
async fn flow_logs_show_only_the_accounts_own_records() {
    use std::io::Write;
    let td = |x: &str| format!("<td>{x}</td>");
    let (dir, app) = setup();
    let (va, eni_a) = vpc_with_eni(&app, A.0, "10.20.0.0/16", "10.20.1.0/24");
    let (vb, eni_b) = vpc_with_eni(&app, B.0, "10.21.0.0/16", "10.21.1.0/24");
    let flow_log = |account: &str, vpc: &str, kind: &str, dest: &str| {
        api(
            &app,
            account,
            &[
                ("Action", "CreateFlowLogs"),
                ("ResourceId.1", vpc),
                ("ResourceType", "VPC"),
                ("TrafficType", "ALL"),
                ("LogDestinationType", kind),
                ("LogDestination", dest),
            ],
            "item",
        )
    };
    let fl_a = flow_log(A.0, &va, "local-file", "shared.log");
    let fl_b = flow_log(B.0, &vb, "local-file", "shared.log");
    let fl_s3 = flow_log(A.0, &va, "s3", "arn:aws:s3:::bucket-a/logs");
    let flow_dir = dir.path().join("flow-logs");
    std::fs::create_dir_all(flow_dir.join("files")).unwrap();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let evil = "<script>alert(1)</script>";
    let local = format!(
        "{header}\n\
         2 {a} {eni_a} 10.20.1.5 10.20.1.6 40000 22 6 10 918273 1 2 ACCEPT OK\n\
         2 {a} {eni_a} 10.20.1.5 10.20.1.7 40001 {evil} 6 1 60 1 2 REJECT OK\n\
         2 {b} {eni_b} 10.21.1.5 10.21.1.6 40002 443 6 7 564738 1 2 ACCEPT OK\n",
        a = A.0,
        b = B.0
    );
    std::fs::write(flow_dir.join("files/shared.log"), local).unwrap();
    let key = format!(
        "s3/bucket-a/logs/AWSLogs/{a}/vpcflowlogs/{REGION}/2026/12/04/{a}_vpcflowlogs_{REGION}_{fl_s3}_20261204T1200Z_0badf00d.log.gz",
        a = A.0
    );
    let path = flow_dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    write!(
        gz,
        "{header}\n2 {a} {eni_a} 10.20.1.5 10.20.9.9 41000 8080 17 3 333 1 2 ACCEPT OK\n",
        a = A.0
    )
    .unwrap();
    gz.finish().unwrap();

    let mut a = Browser::sign_in(&app, A).await;
    let page = a.get("/console/flow-logs").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains(&fl_a) && body.contains(&fl_s3), "{body}");
    assert!(!body.contains(&fl_b), "B's flow log on A's page");
    assert!(
        body.contains(&td("918273")) && body.contains(&td("41000")),
        "{body}"
    );
    assert!(
        !body.contains(&eni_b) && !body.contains(&td("564738")),
        "B's record on A's page"
    );
    assert!(!body.contains("<script>"));
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Filters: action, then an interface no record has.
    let page = a.get("/console/flow-logs?action=REJECT").await;
    assert!(page.body.contains(&td("40001")) && !page.body.contains(&td("40000")));
    let page = a
        .get("/console/flow-logs?interface=eni-00000000000000000")
        .await;
    assert!(!page.body.contains(&td("40000")) && !page.body.contains(&td("41000")));
    let page = a.get(&format!("/console/flow-logs?flow-log={fl_s3}")).await;
    assert!(page.body.contains(&td("41000")) && !page.body.contains(&td("40000")));
    // B's flow log, asked for by ID, is not found for A.
    let r = a.get(&format!("/console/flow-logs?flow-log={fl_b}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let mut b = Browser::sign_in(&app, B).await;
    let page = b.get("/console/flow-logs").await;
    assert!(page.body.contains(&fl_b) && page.body.contains(&td("564738")));
    assert!(!page.body.contains(&fl_a) && !page.body.contains(&eni_a));
}
