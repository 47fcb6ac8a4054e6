//! Bytes as a form body (`Action=…&VpcId=…`) through `App::dispatch`, the path
//! an authenticated HTTP request takes, on one app per process with a small
//! seeded world.
//!
//! A value `@vpc`, `@subnet`, `@sg`, … stands for the seeded resource with
//! that id prefix, so inputs can name real resources. A leading `~` sends the
//! request as the peer account instead of the owner.
//!
//! Checked on every answer: an OK body is well-formed XML rooted at
//! `<{Action}Response>`; an error has an AWS-style code and a message and is a
//! client error (4xx), and leaves the published state unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use vpc_api::server::status_for;
use vpc_api::{App, Config, Params};
use vpc_model::region::Regions;
use vpc_model::{ops, Limits, World};

const OWNER: &str = "111111111111";
const PEER: &str = "222222222222";
const REGION: &str = "us-east-1";

struct Fixture {
    app: Arc<App>,
    /// Seeded ids; a value `@prefix` is replaced by the first id starting `prefix-`.
    ids: Vec<String>,
    _dir: tempfile::TempDir,
}

fn call(app: &App, account: &str, pairs: &[(&str, &str)], ids: &mut Vec<String>) -> String {
    let params = Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let body = app
        .dispatch(account, REGION, &params, "seed")
        .unwrap_or_else(|f| panic!("seeding {pairs:?}: {f}"));
    let doc = roxmltree::Document::parse(&body).expect("seed answer is XML");
    let mut first = None;
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        if name.ends_with("Id") && name != "requestId" {
            if let Some(text) = node.text().filter(|t| t.contains('-')) {
                first.get_or_insert_with(|| text.to_string());
                if !ids.iter().any(|i| i == text) {
                    ids.push(text.to_string());
                }
            }
        }
    }
    first.unwrap_or_default()
}

fn settle_timers(app: &App) {
    for _ in 0..16 {
        let Some(due) = ops::next_deadline(&app.snapshot()) else {
            return;
        };
        let now = app.now().0;
        if due.0 > now + 3_600_000 {
            return;
        }
        app.advance_clock(due.0 - now + 1).expect("advance clock");
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let app = App::open(Config {
            data_dir: dir.path().to_path_buf(),
            regions: Regions::default(),
            limits: Limits::default(),
            test_clock: true,
        group_commit: true,
        http: vpc_api::HttpLimits::default(),
        rates: vpc_model::ops::cost::RateTable::parse(vpc_model::ops::cost::DEFAULT_RATES).expect("rates"),
        serve_metrics: false,
        })
        .expect("open app");
        let mut ids = Vec::new();
        let ids_ref = &mut ids;
        let vpc = call(
            &app,
            OWNER,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")],
            ids_ref,
        );
        let peer_vpc = call(
            &app,
            PEER,
            &[("Action", "CreateVpc"), ("CidrBlock", "10.1.0.0/16")],
            ids_ref,
        );
        let subnet = call(
            &app,
            OWNER,
            &[
                ("Action", "CreateSubnet"),
                ("VpcId", &vpc),
                ("CidrBlock", "10.0.1.0/24"),
            ],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[
                ("Action", "CreateSecurityGroup"),
                ("VpcId", &vpc),
                ("GroupName", "web"),
                ("GroupDescription", "web"),
            ],
            ids_ref,
        );
        let table = call(
            &app,
            OWNER,
            &[("Action", "CreateRouteTable"), ("VpcId", &vpc)],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[
                ("Action", "AssociateRouteTable"),
                ("RouteTableId", &table),
                ("SubnetId", &subnet),
            ],
            ids_ref,
        );
        let gateway = call(&app, OWNER, &[("Action", "CreateInternetGateway")], ids_ref);
        call(
            &app,
            OWNER,
            &[
                ("Action", "AttachInternetGateway"),
                ("InternetGatewayId", &gateway),
                ("VpcId", &vpc),
            ],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[("Action", "CreateNetworkAcl"), ("VpcId", &vpc)],
            ids_ref,
        );
        let interface = call(
            &app,
            OWNER,
            &[("Action", "CreateNetworkInterface"), ("SubnetId", &subnet)],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[
                ("Action", "RunInstances"),
                ("ImageId", "ami-0123456789abcdef0"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SubnetId", &subnet),
            ],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[("Action", "AllocateAddress"), ("Domain", "vpc")],
            ids_ref,
        );
        let instance = ids_ref
            .iter()
            .find(|id| id.starts_with("i-"))
            .cloned()
            .expect("an instance id");
        let peering = call(
            &app,
            OWNER,
            &[
                ("Action", "CreateVpcPeeringConnection"),
                ("VpcId", &vpc),
                ("PeerVpcId", &peer_vpc),
                ("PeerOwnerId", PEER),
            ],
            ids_ref,
        );
        settle_timers(&app);
        call(
            &app,
            PEER,
            &[
                ("Action", "AcceptVpcPeeringConnection"),
                ("VpcPeeringConnectionId", &peering),
            ],
            ids_ref,
        );
        call(
            &app,
            OWNER,
            &[
                ("Action", "CreateNetworkInsightsPath"),
                ("Source", &interface),
                ("Destination", &instance),
                ("Protocol", "tcp"),
            ],
            ids_ref,
        );
        settle_timers(&app);
        Fixture {
            app,
            ids,
            _dir: dir,
        }
    })
}

/// Every record of the world as JSON, in a stable order.
fn fingerprint(w: &World) -> Vec<String> {
    fn rows<'a, T: serde::Serialize + 'a>(
        out: &mut Vec<String>,
        items: impl Iterator<Item = &'a T>,
    ) {
        out.extend(items.map(|i| serde_json::to_string(i).expect("records serialize")));
    }
    let mut out = Vec::new();
    rows(&mut out, w.vpcs.iter());
    rows(&mut out, w.subnets.iter());
    rows(&mut out, w.route_tables.iter());
    rows(&mut out, w.igws.iter());
    rows(&mut out, w.sgs.iter());
    rows(&mut out, w.acls.iter());
    rows(&mut out, w.peerings.iter());
    rows(&mut out, w.inits.iter());
    rows(&mut out, w.instances.iter());
    rows(&mut out, w.enis.iter());
    rows(&mut out, w.nat_gateways.iter());
    rows(&mut out, w.addresses.iter());
    rows(&mut out, w.insights_paths.iter());
    rows(&mut out, w.insights_analyses.iter());
    out
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let app = &fixture.app;
    let (account, body) = match data.split_first() {
        Some((b'~', rest)) => (PEER, rest),
        _ => (OWNER, data),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .into_owned()
        .map(|(name, value)| {
            let value = match value.strip_prefix('@') {
                Some(prefix) => fixture
                    .ids
                    .iter()
                    .find(|id| id.strip_prefix(prefix).is_some_and(|r| r.starts_with('-')))
                    .cloned()
                    .unwrap_or(value),
                None => value,
            };
            (name, value)
        })
        .collect();
    let params = Params::from_pairs(pairs);
    let action = params.get("Action").unwrap_or("").to_string();

    let before = app.snapshot();
    let answer = app.dispatch(account, REGION, &params, "fuzz");
    match answer {
        Ok(body) => {
            let doc = roxmltree::Document::parse(&body)
                .unwrap_or_else(|e| panic!("{action}: answer is not XML ({e}): {body}"));
            assert_eq!(
                doc.root_element().tag_name().name(),
                format!("{action}Response")
            );
        }
        Err(fault) => {
            assert!(
                fault.code.starts_with(|c: char| c.is_ascii_uppercase())
                    && fault
                        .code
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.'),
                "{action}: error code {:?} is not AWS-style",
                fault.code
            );
            assert!(
                !fault.message.is_empty(),
                "{action}: {} has no message",
                fault.code
            );
            let status = status_for(&fault.code);
            assert!(
                status.is_client_error(),
                "{action}: {} answers {status}: {}",
                fault.code,
                fault.message
            );
            let after = app.snapshot();
            // A timer that came due during the call is a legitimate change.
            let timer_due = ops::next_deadline(&before).is_some_and(|t| t.0 <= app.now().0);
            if !Arc::ptr_eq(&before, &after) && !timer_due {
                assert_eq!(
                    fingerprint(&before),
                    fingerprint(&after),
                    "{action} answered {} ({}) but changed the state",
                    fault.code,
                    fault.message
                );
            }
        }
    }
});
