//! The etcd backend against a real etcd (started per test, see `testkit`).

use std::time::{Duration, Instant};
use vpc_model::{Kind, RegionInit, World};
use vpc_store::testkit::{EtcdCluster, EtcdServer};
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

/// Waits up to `within` for updates until `done` says the list is complete.
fn collect(
    updates: &std::sync::mpsc::Receiver<Update>,
    within: Duration,
    done: impl Fn(&[Update]) -> bool,
) -> Vec<Update> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while !done(&got) && Instant::now() < deadline {
        if let Ok(u) = updates.recv_timeout(Duration::from_millis(100)) {
            got.push(u);
        }
    }
    got
}

fn region_ids(world: &World) -> Vec<String> {
    world.iter::<RegionInit>().map(|r| r.id.clone()).collect()
}

/// etcd closes a connection whose client pings more often than its
/// `--grpc-keepalive-min-time` (GOAWAY too_many_pings); with the old 1 s
/// keep-alive a quiet watch broke every 4 s. Three keep-alive intervals
/// would be the strict proof of a longer interval; 12 s of quiet already
/// covers three breaks of the old setting and one ping of the new one.
#[test]
fn a_quiet_watch_stays_up() {
    let etcd = EtcdServer::start().unwrap();
    let (mut writer, mut follower) = (etcd.store("/quiet"), etcd.store("/quiet"));
    let snap = follower.load().unwrap();
    let updates = follower.follow(snap.as_of).unwrap().expect("a watch");
    std::thread::sleep(Duration::from_secs(12));
    let mut w = World::default();
    let r1 = put(&mut writer, 0, &mut w, "late").unwrap();
    let got = collect(&updates, Duration::from_secs(5), |g| !g.is_empty());
    assert!(
        matches!(&got[..], [Update::Commit { revision, .. }] if *revision == r1),
        "{got:?}"
    );
    assert_eq!(follower.watch_breaks(), 0, "the watch broke while quiet");
}

/// The member a follower watches through dies; commits go on through the
/// others; when the member is back, the follower resumes from the last
/// revision it saw and gets every commit made meanwhile, in order, whole.
#[test]
fn a_follower_whose_member_dies_misses_no_commit() {
    let mut cluster = EtcdCluster::start().unwrap();
    let mut follower = cluster.store_on(0, "/die");
    let mut writer =
        vpc_store::etcd::EtcdStore::connect(&cluster.endpoints()[1..], "/die").unwrap();
    let snap = follower.load().unwrap();
    let updates = follower.follow(snap.as_of).unwrap().expect("a watch");
    let mut mirror = snap.world;
    let mut w = World::default();
    let r1 = put(&mut writer, 0, &mut w, "before").unwrap();
    w.take_changes();
    let got = collect(&updates, Duration::from_secs(5), |g| !g.is_empty());
    assert!(
        matches!(&got[..], [Update::Commit { revision, .. }] if *revision == r1),
        "{got:?}"
    );
    cluster.kill_member(0);
    let mut revisions = vec![];
    let mut base = r1;
    for n in 0..3 {
        base = put(&mut writer, base, &mut w, &format!("during{n}")).unwrap();
        w.take_changes();
        revisions.push(base);
    }
    w.remove::<RegionInit>("before");
    let changes = w.take_changes();
    base = writer.commit(base, &w, &changes).unwrap();
    revisions.push(base);
    // Down for a while: the follower keeps trying.
    std::thread::sleep(Duration::from_millis(500));
    cluster.start_member(0).unwrap();
    let got = collect(&updates, Duration::from_secs(20), |g| g.len() >= 4);
    let seen: Vec<i64> = got
        .iter()
        .map(|u| match u {
            Update::Commit { revision, .. } => *revision,
            other => panic!("unexpected update {other:?}"),
        })
        .collect();
    assert_eq!(seen, revisions);
    for u in &got {
        if let Update::Commit { put, removed, .. } = u {
            Update::apply(&mut mirror, put, removed).unwrap();
        }
    }
    let mut truth = region_ids(&writer.load().unwrap().world);
    truth.sort();
    let mut mirrored = region_ids(&mirror);
    mirrored.sort();
    assert_eq!(mirrored, truth);
    assert_eq!(mirrored, ["during0", "during1", "during2"]);
    assert!(follower.watch_breaks() >= 1, "the watch never broke");
}

/// A follower that resumes from a revision the store compacted away gets the
/// whole state (a reset) and then goes on with the commits after it.
#[test]
fn a_follower_behind_a_compaction_reloads_the_whole_state() {
    let etcd = EtcdServer::start().unwrap();
    let (mut writer, mut follower) = (etcd.store("/compact"), etcd.store("/compact"));
    let mut w = World::default();
    let r1 = put(&mut writer, 0, &mut w, "old").unwrap();
    w.take_changes();
    let r2 = put(&mut writer, r1, &mut w, "gone").unwrap();
    w.take_changes();
    w.remove::<RegionInit>("gone");
    let changes = w.take_changes();
    let r3 = writer.commit(r2, &w, &changes).unwrap();
    // The follower last saw r1; the history up to r3 is compacted away.
    vpc_store::testkit::compact(&etcd.endpoint, r3).unwrap();
    let updates = follower.follow(r1).unwrap().expect("a watch");
    let got = collect(&updates, Duration::from_secs(5), |g| !g.is_empty());
    let mut mirror = match &got[..] {
        [Update::Reset(snap)] => {
            assert!(snap.as_of >= r3, "{} < {r3}", snap.as_of);
            assert_eq!(snap.revision, r3);
            snap.world.clone()
        }
        other => panic!("expected a reset, got {other:?}"),
    };
    assert_eq!(region_ids(&mirror), ["old"]);
    let r4 = put(&mut writer, r3, &mut w, "new").unwrap();
    let got = collect(&updates, Duration::from_secs(5), |g| !g.is_empty());
    match &got[..] {
        [Update::Commit {
            revision,
            put,
            removed,
        }] => {
            assert_eq!(*revision, r4);
            Update::apply(&mut mirror, put, removed).unwrap();
        }
        other => panic!("unexpected updates {other:?}"),
    }
    let mut ids = region_ids(&mirror);
    ids.sort();
    assert_eq!(ids, ["new", "old"]);
}

fn usage_of(account: &str, hour: i64, bytes: u64) -> vpc_model::usage::Usage {
    use vpc_model::usage::{TransferKind, Usage, UsageKey};
    Usage {
        key: UsageKey {
            account: account.into(),
            region: "us-east-1".into(),
            vpc_id: "vpc-1".into(),
            resource_id: "pcx-1".into(),
            kind: TransferKind::PeeringOut,
            az: "us-east-1a".into(),
            peer_region: "us-east-1".into(),
            peer_az: "us-east-1b".into(),
        },
        hour: vpc_model::Timestamp(hour * vpc_model::Timestamp::HOUR),
        bytes,
        packets: 1,
    }
}

#[test]
fn meters_on_several_hosts_add_to_one_sum_without_losing_an_update() {
    use std::collections::BTreeMap;
    let etcd = EtcdServer::start().unwrap();
    // Four hosts' meters, each adding 25 records of 1000 bytes to the same
    // hourly sum at once, and moving its own baselines with them.
    let writers: Vec<_> = (0..4)
        .map(|h| {
            let mut store = etcd.store("/u");
            std::thread::spawn(move || {
                for i in 1..=25u64 {
                    let mut base = BTreeMap::new();
                    base.insert(
                        (format!("vpcd{h:04x}-vpc-1"), "c".to_string()),
                        (i * 1000, i),
                    );
                    store
                        .record_usage(&[usage_of("111111111111", 5, 1000)], &base, &[])
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let mut reader = etcd.store("/u");
    let hour = vpc_model::Timestamp::HOUR;
    let all = reader
        .usage(
            None,
            vpc_model::Timestamp(0),
            vpc_model::Timestamp(10 * hour),
        )
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].bytes, all[0].packets), (100_000, 100));
    // Only hours that start in the range, one account's only.
    assert!(reader
        .usage(
            None,
            vpc_model::Timestamp(6 * hour),
            vpc_model::Timestamp(10 * hour)
        )
        .unwrap()
        .is_empty());
    assert!(reader
        .usage(
            Some("222222222222"),
            vpc_model::Timestamp(0),
            vpc_model::Timestamp(10 * hour)
        )
        .unwrap()
        .is_empty());
    // Each host reads back its own baselines; a forgotten one is gone.
    let mine = reader.meter_baselines("vpcd0002-").unwrap();
    assert_eq!(
        mine.into_iter().collect::<Vec<_>>(),
        [(
            ("vpcd0002-vpc-1".to_string(), "c".to_string()),
            (25_000, 25)
        )]
    );
    assert_eq!(reader.meter_baselines("vpcd").unwrap().len(), 4);
    reader
        .record_usage(
            &[],
            &BTreeMap::new(),
            &[("vpcd0002-vpc-1".into(), "c".into())],
        )
        .unwrap();
    assert!(reader.meter_baselines("vpcd0002-").unwrap().is_empty());
    // Another prefix (another vpcd on the same etcd) sees none of it.
    let mut other = etcd.store("/other");
    assert!(other
        .usage(
            None,
            vpc_model::Timestamp(0),
            vpc_model::Timestamp(10 * hour)
        )
        .unwrap()
        .is_empty());
}

/// The next update within `timeout` that `pick` accepts (others are skipped).
fn next_matching<T>(
    updates: &std::sync::mpsc::Receiver<Update>,
    timeout: Duration,
    mut pick: impl FnMut(&Update) -> Option<T>,
) -> Option<(T, Instant)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(u) = updates.recv_timeout(Duration::from_millis(50)) {
            if let Some(t) = pick(&u) {
                return Some((t, Instant::now()));
            }
        }
    }
    None
}

#[test]
fn a_removed_setting_reaches_followers_and_a_guarded_removal_moves_the_marker() {
    let etcd = EtcdServer::start().unwrap();
    let (mut writer, mut follower) = (etcd.store("/rm"), etcd.store("/rm"));
    writer.set_setting("host/h1", "one").unwrap();
    writer.set_setting("gateway/h1", "gw").unwrap();
    writer.set_setting("host/h2", "two").unwrap();
    writer.set_setting("alive/h2", "pid").unwrap();
    let mut w = World::default();
    let base = put(&mut writer, 0, &mut w, "r1").unwrap();
    let snap = follower.load().unwrap();
    assert_eq!(snap.revision, base);
    let updates = follower.follow(snap.as_of).unwrap().unwrap();

    // A stale base removes nothing.
    let stale = writer.remove_settings(base - 1, &["host/h1".into()], &[]);
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    // A setting that must be absent is there: nothing removed, and it is named.
    let held = writer.remove_settings(base, &["host/h2".into()], &["alive/h2".into()]);
    assert!(
        matches!(&held, Err(StoreError::SettingPresent(k)) if k == "alive/h2"),
        "{held:?}"
    );
    assert_eq!(
        writer.get_setting("host/h2").unwrap().as_deref(),
        Some("two")
    );

    // The removal of h1's registration and gateways is one revision that
    // moves the commit marker; followers get both removals, then the commit.
    let r = writer
        .remove_settings(
            base,
            &["host/h1".into(), "gateway/h1".into()],
            &["alive/h1".into()],
        )
        .unwrap();
    assert!(r > base);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        if let Ok(u) = updates.recv_timeout(Duration::from_millis(50)) {
            got.push(u);
        }
    }
    let removed: Vec<&str> = got
        .iter()
        .filter_map(|u| match u {
            Update::SettingRemoved { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(removed.len(), 2, "{got:?}");
    assert!(removed.contains(&"host/h1") && removed.contains(&"gateway/h1"));
    assert!(
        matches!(got.last(), Some(Update::Commit { revision, put, removed }) if *revision == r && put.is_empty() && removed.is_empty()),
        "{got:?}"
    );
    assert_eq!(writer.get_setting("host/h1").unwrap(), None);
    assert_eq!(
        follower.settings_with_prefix("host/").unwrap(),
        vec![("host/h2".to_string(), "two".to_string())]
    );
    // A commit built on the World before the removal now conflicts.
    let late = put(&mut writer, base, &mut w, "r2");
    assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");
    put(&mut writer, r, &mut w, "r2").unwrap();
}

#[test]
fn a_held_setting_lives_while_renewed_and_lapses_when_its_holder_stops() {
    let etcd = EtcdServer::start().unwrap();
    let (mut holder, mut follower) = (etcd.store("/live"), etcd.store("/live"));
    let snap = follower.load().unwrap();
    let updates = follower.follow(snap.as_of).unwrap().unwrap();
    let held = holder.hold_setting("alive/h1", "123", 2).unwrap();
    assert_eq!(
        follower.get_setting("alive/h1").unwrap().as_deref(),
        Some("123")
    );
    assert!(
        next_matching(&updates, Duration::from_secs(2), |u| match u {
            Update::Setting { key, value } if key == "alive/h1" && value == "123" => Some(()),
            _ => None,
        })
        .is_some()
    );
    // Renewed: still there after three TTLs.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        follower.get_setting("alive/h1").unwrap().as_deref(),
        Some("123")
    );
    // The holder stops renewing (as when it dies): etcd removes the setting
    // after the lease's TTL and followers are told.
    let stopped = Instant::now();
    drop(held);
    let (_, at) = next_matching(&updates, Duration::from_secs(10), |u| match u {
        Update::SettingRemoved { key } if key == "alive/h1" => Some(()),
        _ => None,
    })
    .expect("the lapsed setting's removal");
    let after = at - stopped;
    assert!(after >= Duration::from_millis(500), "{after:?}");
    assert_eq!(follower.get_setting("alive/h1").unwrap(), None);
    // A new holder puts it again.
    let _again = holder.hold_setting("alive/h1", "456", 2).unwrap();
    assert_eq!(
        follower.get_setting("alive/h1").unwrap().as_deref(),
        Some("456")
    );
}

#[test]
fn sqlite_refuses_a_held_setting_and_removes_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = vpc_store::Store::open_writer(dir.path()).unwrap();
    assert!(matches!(
        StateStore::hold_setting(&mut store, "alive/h1", "1", 2),
        Err(StoreError::Invalid(_))
    ));
    StateStore::set_setting(&mut store, "host/h1", "x").unwrap();
    StateStore::set_setting(&mut store, "alive/h1", "1").unwrap();
    let refused =
        StateStore::remove_settings(&mut store, 0, &["host/h1".into()], &["alive/h1".into()]);
    assert!(
        matches!(refused, Err(StoreError::SettingPresent(_))),
        "{refused:?}"
    );
    assert!(StateStore::get_setting(&mut store, "host/h1")
        .unwrap()
        .is_some());
    StateStore::remove_settings(&mut store, 0, &["host/h1".into(), "alive/h1".into()], &[])
        .unwrap();
    assert!(StateStore::settings_with_prefix(&mut store, "")
        .unwrap()
        .iter()
        .all(|(k, _)| k != "host/h1" && k != "alive/h1"));
}
