//! Privileged tests of the VXLAN underlay's links (`underlay::Underlay`):
//! a lab fabric of two simulated hosts and one router namespace, all under
//! a random tag and removed by a Drop guard, also on panic. Nothing here
//! sends a packet; the tests look at the links the agent keeps.
//!
//! They need root. Without it they fail with a clear message (they never
//! skip).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::process::Command;
use vpc_dataplane::placement::{self, Placement};
use vpc_dataplane::underlay::{self, Underlay, VxlanRouter};
use vpc_model::placement::HostRecord;

const VPC: &str = "vpc-0f1e2d3c4b5a69788";
const M1: &str = "m-0123456789ab";
const M2: &str = "m-0a0b0c0d0e0f";

/// A lab fabric (hosts h1, h2) and a router namespace on h1.
struct Fabric {
    tag: String,
    router: String,
}

impl Fabric {
    fn new() -> Fabric {
        assert!(
            nix_is_root(),
            "tests/underlay.rs needs root (network namespaces): run it as root"
        );
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let tag = format!("mb{:04x}", h.finish() & 0xffff);
        let hosts = [
            ("h1".to_string(), underlay::lab_host_addr(0)),
            ("h2".to_string(), underlay::lab_host_addr(1)),
        ];
        let fabric = Fabric {
            router: format!("vpcdlab{tag}-r"),
            tag,
        };
        underlay::lab_fabric_up(&fabric.tag, &hosts).expect("lab fabric");
        let out = Command::new("ip")
            .args(["netns", "add", &fabric.router])
            .output()
            .expect("ip netns add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fabric
    }

    fn underlay(&self) -> Underlay {
        Underlay::new(
            Some(underlay::lab_host_ns(&self.tag, "h1")),
            underlay::lab_host_addr(0),
        )
        .expect("underlay")
    }

    fn router(&self, middleboxes: &[&str]) -> Vec<VxlanRouter> {
        vec![VxlanRouter {
            ns: self.router.clone(),
            vpc: VPC.into(),
            middleboxes: middleboxes.iter().map(|m| m.to_string()).collect(),
        }]
    }

    /// The router's links: name → (up, MAC, its addresses).
    fn links(&self) -> BTreeMap<String, (bool, String, BTreeSet<String>)> {
        let out = by_hand(&self.router, &["ip", "-j", "addr", "show"]);
        let links: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ip -j addr");
        links
            .iter()
            .map(|l| {
                let flags: Vec<&str> = l["flags"]
                    .as_array()
                    .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                let addrs = l["addr_info"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["local"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    l["ifname"].as_str().unwrap_or_default().to_string(),
                    (
                        flags.contains(&"UP"),
                        l["address"].as_str().unwrap_or_default().to_string(),
                        addrs,
                    ),
                )
            })
            .collect()
    }

    /// Asserts that middlebox link `m` is whole: up, with its MAC and only
    /// its address.
    #[track_caller]
    fn assert_whole(&self, m: &str) {
        let links = self.links();
        let (up, mac, addrs) = links.get(m).unwrap_or_else(|| panic!("no {m}: {links:?}"));
        assert!(*up, "{m} is down");
        assert_eq!(*mac, placement::middlebox_mac_text(m));
        let want: BTreeSet<String> = [placement::middlebox_address(m).to_string()].into();
        assert_eq!(*addrs, want, "{m}'s addresses");
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.router])
            .status();
        let _ = underlay::lab_fabric_down(&self.tag, &["h1".into(), "h2".into()]);
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `args` inside `ns` and insists that it succeeds; its output.
#[track_caller]
fn by_hand(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn placement(hosts: &[(&str, Ipv4Addr)]) -> Placement {
    Placement {
        local: "h1".into(),
        hosts: hosts
            .iter()
            .map(|(name, addr)| {
                (
                    name.to_string(),
                    HostRecord {
                        name: name.to_string(),
                        zones: vec![],
                        underlay: *addr,
                        tag: "t".into(),
                        pid: 1,
                    },
                )
            })
            .collect(),
        backbone: false,
    }
}

#[test]
fn half_made_middlebox_links_are_made_again_and_go_when_the_cluster_shrinks() {
    let f = Fabric::new();
    let ul = f.underlay();
    let two = placement(&[
        ("h1", underlay::lab_host_addr(0)),
        ("h2", underlay::lab_host_addr(1)),
    ]);
    let x = placement::vxlan_link(VPC);

    // First pass: the x- link and both middlebox links, whole.
    assert_eq!(
        ul.converge(&two, &f.router(&[M1, M2])).expect("converge"),
        1
    );
    f.assert_whole(M1);
    f.assert_whole(M2);
    let index = |m: &str| by_hand(&f.router, &["cat", &format!("/sys/class/net/{m}/ifindex")]);
    let (i1, i2) = (index(M1), index(M2));
    // A pass with nothing to do makes nothing again.
    assert_eq!(
        ul.converge(&two, &f.router(&[M1, M2])).expect("converge"),
        0
    );
    assert_eq!((index(M1), index(M2)), (i1, i2));

    // Half made, as an agent stopped between the steps leaves them: M1
    // added but neither addressed nor up (and the kernel's random MAC); M2
    // addressed but down. The next pass makes them whole, with their MACs.
    by_hand(&f.router, &["ip", "link", "del", M1]);
    by_hand(
        &f.router,
        &[
            "ip", "link", "add", "link", &x, "name", M1, "type", "macvlan", "mode", "private",
        ],
    );
    by_hand(&f.router, &["ip", "link", "set", M2, "down"]);
    assert_ne!(f.links()[M1].1, placement::middlebox_mac_text(M1));
    assert_eq!(
        ul.converge(&two, &f.router(&[M1, M2])).expect("converge"),
        0
    );
    f.assert_whole(M1);
    f.assert_whole(M2);
    // Up but its address gone: made again too.
    by_hand(&f.router, &["ip", "addr", "flush", "dev", M2]);
    ul.converge(&two, &f.router(&[M1, M2])).expect("converge");
    f.assert_whole(M2);

    // A middlebox link that cannot be made (a name too long for a link)
    // does not hide that the x- link was made, and the others are made.
    by_hand(&f.router, &["ip", "link", "del", &x]);
    let bad = "m-0123456789abcdef0";
    assert_eq!(
        ul.converge(&two, &f.router(&[M1, bad]))
            .expect("x- made counts"),
        1
    );
    f.assert_whole(M1);
    assert!(!f.links().contains_key(M2), "M2 went with the x- link");
    // Nothing made and a middlebox link failing: the error.
    assert!(ul.converge(&two, &f.router(&[M1, bad])).is_err());

    // Alone: middlebox links go; the x- link stays, with no FDB entry.
    let alone = placement(&[("h1", underlay::lab_host_addr(0))]);
    ul.converge(&two, &f.router(&[M1, M2])).expect("converge");
    f.assert_whole(M2);
    assert_eq!(ul.converge(&alone, &f.router(&[])).expect("alone"), 0);
    let links = f.links();
    assert!(
        !links.keys().any(|n| n.starts_with("m-")),
        "middlebox links left alone: {links:?}"
    );
    assert!(links.contains_key(&x));
    let fdb = by_hand(&f.router, &["bridge", "fdb", "show", "dev", &x]);
    assert!(!fdb.contains("dst"), "FDB entries left: {fdb}");
}
