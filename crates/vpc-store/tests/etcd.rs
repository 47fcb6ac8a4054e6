//! The etcd backend against a real etcd (started per test, see `testkit`).

use std::time::{Duration, Instant};
use vpc_model::{Kind, RegionInit, World};
use vpc_store::testkit::EtcdServer;
use vpc_store::{StateStore, StoreError, Update};

fn record(id: &str) -> RegionInit {
    RegionInit {
        id: id.to_string(),
        default_vpc: None,
        default_dhcp_options: None,
    }
}

fn put(
    store: &mut dyn StateStore,
    base: i64,
    world: &mut World,
    id: &str,
) -> Result<i64, StoreError> {
    world.put(record(id));
    let changes = world.take_changes();
    store.commit(base, world, &changes)
}

#[test]
fn a_commit_on_a_stale_revision_writes_nothing() {
    let etcd = EtcdServer::start().unwrap();
    let (mut one, mut two) = (etcd.store("/t"), etcd.store("/t"));
    let base = one.load().unwrap().revision;
    assert_eq!(base, 0);
    let mut w1 = World::default();
    let r1 = put(&mut one, base, &mut w1, "first").unwrap();
    assert!(r1 > base);
    // The second writer still believes the state is at `base`.
    let mut w2 = World::default();
    let lost = put(&mut two, base, &mut w2, "second");
    assert!(
        matches!(lost, Err(StoreError::Conflict { base: 0 })),
        "{lost:?}"
    );
    let seen = two.load().unwrap();
    assert_eq!(seen.revision, r1);
    assert!(seen.world.get::<RegionInit>("first").is_some());
    assert!(seen.world.get::<RegionInit>("second").is_none());
    // On the fresh state it commits.
    let mut w2 = seen.world.clone();
    let r2 = put(&mut two, seen.revision, &mut w2, "second").unwrap();
    let last = one.load().unwrap();
    assert_eq!(last.revision, r2);
    assert_eq!(last.world.iter::<RegionInit>().count(), 2);
    // Deletes are commits too.
    let mut w3 = last.world.clone();
    w3.remove::<RegionInit>("first");
    let changes = w3.take_changes();
    one.commit(r2, &w3, &changes).unwrap();
    let after = two.load().unwrap().world;
    assert!(after.get::<RegionInit>("first").is_none());
    assert!(after.get::<RegionInit>("second").is_some());
}

#[test]
fn followers_get_each_commit_whole_and_settings() {
    let etcd = EtcdServer::start().unwrap();
    let (mut writer, mut follower) = (etcd.store("/f"), etcd.store("/f"));
    let snap = follower.load().unwrap();
    let updates = follower
        .follow(snap.as_of)
        .unwrap()
        .expect("etcd has other writers");
    let mut w = World::default();
    for n in 0..3 {
        w.put(record(&format!("a{n}")));
    }
    let r1 = writer.commit(0, &w, &w.clone().take_changes()).unwrap();
    w.take_changes();
    w.remove::<RegionInit>("a0");
    let r2 = writer.commit(r1, &w, &w.clone().take_changes()).unwrap();
    writer.set_setting("clock_offset_ms", "42").unwrap();
    let mut mirror = snap.world;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        if let Ok(u) = updates.recv_timeout(Duration::from_millis(100)) {
            got.push(u);
        }
    }
    match &got[..] {
        [Update::Commit {
            revision: a,
            put,
            removed,
        }, Update::Commit {
            revision: b,
            put: put2,
            removed: removed2,
        }, Update::Setting { key, value }] => {
            assert_eq!((*a, *b), (r1, r2));
            assert_eq!(put.len(), 3);
            assert!(removed.is_empty());
            Update::apply(&mut mirror, put, removed).unwrap();
            assert!(put2.is_empty());
            assert_eq!(removed2, &vec![(Kind::RegionInit, "a0".to_string())]);
            Update::apply(&mut mirror, put2, removed2).unwrap();
            assert_eq!((key.as_str(), value.as_str()), ("clock_offset_ms", "42"));
        }
        other => panic!("unexpected updates {other:?}"),
    }
    let ids: Vec<&str> = mirror.iter::<RegionInit>().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
}

#[test]
fn accounts_and_keys_are_shared_and_unique() {
    let etcd = EtcdServer::start().unwrap();
    let (mut one, mut two) = (etcd.store("/acct"), etcd.store("/acct"));
    one.add_account("111111111111", "AKIA1", "secret1").unwrap();
    assert!(matches!(
        two.add_account("111111111111", "AKIA2", "x"),
        Err(StoreError::AccountExists(_))
    ));
    assert!(matches!(
        two.add_account("222222222222", "AKIA1", "x"),
        Err(StoreError::KeyExists(_))
    ));
    assert!(two.add_account("12", "AKIA3", "x").is_err());
    two.add_account("222222222222", "AKIA2", "secret2").unwrap();
    let list = one.list_accounts().unwrap();
    assert_eq!(
        list.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["111111111111", "222222222222"]
    );
    assert_eq!(
        two.find_key("AKIA1").unwrap(),
        Some(("111111111111".into(), "secret1".into()))
    );
    assert_eq!(two.find_key("nope").unwrap(), None);
    // Another prefix is another vpcd: it sees none of this.
    assert!(etcd.store("/other").list_accounts().unwrap().is_empty());
}

#[test]
fn one_of_two_campaigners_holds_the_role() {
    let etcd = EtcdServer::start().unwrap();
    let (mut one, mut two) = (etcd.store("/lead"), etcd.store("/lead"));
    let a = one.campaign("clock", "one").unwrap();
    let b = two.campaign("clock", "two").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(a.is_leader() || b.is_leader()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..20 {
        assert!(a.is_leader() ^ b.is_leader(), "exactly one leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unreachable_cluster_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = vpc_store::etcd::EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], "/x")
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach etcd"), "{err}");
}
