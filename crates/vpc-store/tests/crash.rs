//! `kill -9` of a writing process at any moment, in the middle of a
//! compaction included: every commit it acknowledged is in the store after a
//! restart, each commit is there whole or not at all, and the store loads.
//!
//! The writer is this test binary run again (the same test, with
//! [`CHILD_DIR`] set): it commits numbered batches to a store in that
//! directory, prints `ack N PHASE` once commit N returned (PHASE: the
//! compaction under way after it), then runs the store's upkeep step, as
//! the server does. Batch N's contents follow from N alone, so the test
//! knows the exact World after any number of commits.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vpc_model::{Kind, RegionInit, World};
use vpc_store::{CompactionPhase, Store};

const CHILD_DIR: &str = "VPC_STORE_CRASH_WRITER_DIR";
const TEST: &str = "acknowledged_commits_survive_kill9_at_any_point_of_a_compaction";
/// Records a batch adds (about a CreateVpc's worth, times eight).
const PER_BATCH: usize = 40;

fn record(id: String, value: String) -> RegionInit {
    RegionInit {
        id,
        default_vpc: Some(value),
        // A body about the size of a small resource's.
        default_dhcp_options: Some("x".repeat(300)),
    }
}

/// Batch `n` (from 1): a counter naming it, new records, an update of an
/// older record and a removal of another.
fn apply_batch(w: &mut World, n: u64) {
    w.put(record("counter".into(), n.to_string()));
    for i in 0..PER_BATCH {
        w.put(record(format!("r{n}-{i}"), format!("v{n}")));
    }
    if n > 5 {
        w.put(record(format!("r{}-0", n - 5), format!("updated by {n}")));
    }
    if n > 9 {
        w.remove::<RegionInit>(&format!("r{}-1", n - 9));
    }
}

fn counter(w: &World) -> u64 {
    w.get::<RegionInit>("counter")
        .and_then(|r| r.default_vpc.as_deref())
        .map_or(0, |v| v.parse().unwrap())
}

fn contents(w: &World) -> Vec<(String, Option<String>, Option<String>)> {
    w.iter::<RegionInit>()
        .map(|r| {
            (
                r.id.clone(),
                r.default_vpc.clone(),
                r.default_dhcp_options.clone(),
            )
        })
        .collect()
}

/// The writer: commits batches after what the store holds until killed
/// (or for a minute at most, should the test that started it be gone).
fn write_until_killed(dir: &Path) {
    let mut store = Store::open_writer(dir).unwrap();
    let mut w = store.load_world().unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut n = counter(&w);
    while Instant::now() < give_up {
        n += 1;
        apply_batch(&mut w, n);
        let changes = w.take_changes();
        store.commit(&w, &changes).unwrap();
        let phase = match store.compaction() {
            None => "idle",
            Some(CompactionPhase::Build) => "build",
            Some(CompactionPhase::Cleanup) => "cleanup",
        };
        println!("ack {n} {phase}");
        store.maintain().unwrap();
    }
}

/// A writer process and its acknowledgements.
struct Writer {
    child: Child,
    acks: mpsc::Receiver<(u64, String)>,
}

impl Writer {
    fn start(dir: &Path) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { return };
                let mut words = line.split_whitespace();
                if words.next() != Some("ack") {
                    continue;
                }
                let n: u64 = words.next().unwrap().parse().unwrap();
                let phase = words.next().unwrap().to_string();
                if tx.send((n, phase)).is_err() {
                    return;
                }
            }
        });
        Writer { child, acks }
    }

    /// Waits for an acknowledgement that `until` accepts; the last
    /// acknowledged batch.
    fn wait(&mut self, mut until: impl FnMut(u64, &str) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, phase) = self
                .acks
                .recv_timeout(left)
                .expect("the writer stopped acknowledging");
            if until(n, &phase) {
                return n;
            }
        }
    }

    /// `kill -9`, then the last batch it acknowledged.
    fn kill(mut self, mut acked: u64) -> u64 {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        while let Ok((n, _)) = self.acks.recv_timeout(Duration::from_secs(2)) {
            acked = acked.max(n);
        }
        acked
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn acknowledged_commits_survive_kill9_at_any_point_of_a_compaction() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        write_until_killed(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The World after each number of batches, built as needed.
    let mut expected = vec![World::default()];
    let mut world_after = |n: u64| -> World {
        while expected.len() as u64 <= n {
            let mut w = expected.last().unwrap().clone();
            apply_batch(&mut w, expected.len() as u64);
            w.take_changes();
            expected.push(w);
        }
        expected[n as usize].clone()
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random_delay = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_micros(rng % 3000)
    };
    let mut killed_in = Vec::new();
    let mut acked = 0;
    // Each round kills the writer at another moment: while nothing is
    // compacting, while `resources_next` is being written, while the old
    // table and the journal are being deleted.
    for round in 0..9 {
        let mut writer = Writer::start(dir.path());
        let target = ["idle", "build", "cleanup"][round % 3];
        let start = acked;
        let mut last =
            writer.wait(|n, phase| (target != "idle" || n > start + 20) && phase == target);
        std::thread::sleep(random_delay());
        last = writer.kill(last);
        killed_in.push(target);
        assert!(last >= acked, "acknowledged batches went backwards");
        acked = last;

        // The store as the crash left it (read without the writer's
        // cleanup): it opens and loads, and holds every acknowledged batch,
        // whole, and nothing else. The next round's writer starts from it.
        let loaded = Store::open(dir.path()).unwrap().load_world().unwrap();
        let n = counter(&loaded);
        assert!(
            n == acked || n == acked + 1,
            "round {round} ({target}): the store holds batch {n}, {acked} was acknowledged"
        );
        assert!(
            contents(&loaded) == contents(&world_after(n)),
            "round {round} ({target}): the loaded World is not the World after batch {n}"
        );
        for kind in Kind::ALL {
            if *kind != Kind::RegionInit {
                assert!(loaded.encode_after(*kind, None, 1).is_empty());
            }
        }
        acked = n;
    }
    assert_eq!(
        killed_in,
        ["idle", "build", "cleanup", "idle", "build", "cleanup", "idle", "build", "cleanup"]
    );
    // A server starting on the last crash's leftovers drops them, loads the
    // same World and, closing, compacts it into `resources` alone.
    let store = Store::open_writer(dir.path()).unwrap();
    assert!(contents(&store.load_world().unwrap()) == contents(&world_after(acked)));
    drop(store);
    let db = rusqlite::Connection::open(vpc_store::db_path(dir.path())).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'resources%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(tables, ["resources"]);
    let journal: i64 = db
        .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, 0);
    let loaded = Store::open(dir.path()).unwrap().load_world().unwrap();
    assert!(contents(&loaded) == contents(&world_after(acked)));
}
