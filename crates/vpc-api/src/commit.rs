//! Group commit: concurrent write actions share one SQLite transaction and
//! one fsync, while each is still acknowledged only once it is durable and
//! each stays all-or-nothing.
//!
//! A write runs its operation on a clone of the *staged* World (the last
//! committed state plus every action staged since). An operation that fails
//! leaves nothing behind; one that succeeds replaces the staged World and
//! adds its change list to the open batch. The writer then waits for its
//! batch to be durable: whoever holds the store lock commits everything
//! staged so far in one transaction and publishes that World, so while one
//! batch is being fsynced the next one fills up. If a commit fails, every
//! action in that batch and every action staged on top of it fails with
//! `InternalError`, and staging restarts from the last committed World, so
//! no acknowledged state ever depends on a lost one.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use vpc_model::{Fault, Kind, World};
use vpc_store::{Store, StoreError};

/// The single writer of one data directory.
#[derive(Debug)]
pub struct GroupCommit {
    staging: Mutex<Staging>,
    durable: Mutex<Durable>,
    /// Taken around a whole write when batching is off (the baseline).
    one_at_a_time: Option<Mutex<()>>,
}

#[derive(Debug)]
struct Staging {
    world: World,
    changes: Vec<(Kind, String)>,
    batch: u64,
}

/// What the store holds; its lock is the right to commit.
#[derive(Debug)]
struct Durable {
    store: Store,
    /// The newest committed World.
    world: World,
    /// Every batch up to this one is settled (committed or failed).
    settled: u64,
    failed: BTreeSet<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn internal_error() -> Fault {
    Fault::new("InternalError", "An internal error has occurred")
}

impl GroupCommit {
    /// A writer over `store`, whose contents are `world`. With `batching`
    /// off every write commits alone (one transaction and fsync each).
    pub fn new(store: Store, world: World, batching: bool) -> GroupCommit {
        GroupCommit {
            staging: Mutex::new(Staging {
                world: world.clone(),
                changes: Vec::new(),
                batch: 1,
            }),
            durable: Mutex::new(Durable {
                store,
                world,
                settled: 0,
                failed: BTreeSet::new(),
            }),
            one_at_a_time: (!batching).then(|| Mutex::new(())),
        }
    }

    /// Runs `operation` as one all-or-nothing action and returns its result
    /// once its changes are durable. `publish` receives each newly committed
    /// World, in commit order, before any writer of that batch returns.
    pub fn write<T>(
        &self,
        operation: impl FnOnce(&mut World) -> Result<T, Fault>,
        publish: impl Fn(&World),
    ) -> Result<T, Fault> {
        let _alone = self.one_at_a_time.as_ref().map(lock);
        let (out, batch) = {
            let mut staging = lock(&self.staging);
            let mut w = staging.world.clone();
            let out = operation(&mut w)?;
            let changes = w.take_changes();
            if changes.is_empty() && staging.changes.is_empty() {
                // Read nothing that is not durable yet, changed nothing.
                return Ok(out);
            }
            staging.world = w;
            staging.changes.extend(changes);
            (out, staging.batch)
        };
        self.wait_durable(batch, publish)?;
        Ok(out)
    }

    /// Commits open batches until `batch` is settled.
    fn wait_durable(&self, batch: u64, publish: impl Fn(&World)) -> Result<(), Fault> {
        let mut durable = lock(&self.durable);
        while durable.settled < batch {
            self.commit_open_batch(&mut durable, &publish);
        }
        if durable.failed.contains(&batch) {
            return Err(internal_error());
        }
        Ok(())
    }

    /// Closes the open batch and commits it in one transaction.
    fn commit_open_batch(&self, durable: &mut Durable, publish: &impl Fn(&World)) {
        let (world, mut changes, batch) = {
            let mut staging = lock(&self.staging);
            let batch = staging.batch;
            staging.batch += 1;
            let changes = std::mem::take(&mut staging.changes);
            (staging.world.clone(), changes, batch)
        };
        changes.sort();
        changes.dedup();
        match durable.store.commit(&world, &changes) {
            Ok(()) => {
                publish(&world);
                durable.world = world;
                durable.settled = batch;
            }
            Err(e) => {
                tracing::error!(error = %e, batch, "commit failed");
                // The batch opened meanwhile was staged on top of the lost
                // one: it fails too, and staging restarts from what is durable.
                let mut staging = lock(&self.staging);
                let built_on_lost = staging.batch;
                staging.world = durable.world.clone();
                staging.changes.clear();
                staging.batch += 1;
                durable.failed.extend(batch..=built_on_lost);
                durable.settled = built_on_lost;
            }
        }
    }

    /// Runs `f` on the store while no batch is being committed.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut lock(&self.durable).store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use vpc_model::RegionInit;

    fn record(id: &str) -> RegionInit {
        RegionInit {
            id: id.to_string(),
            default_vpc: None,
            default_dhcp_options: None,
        }
    }

    fn open(dir: &std::path::Path, batching: bool) -> GroupCommit {
        let store = Store::open(dir).unwrap();
        let world = store.load_world().unwrap();
        GroupCommit::new(store, world, batching)
    }

    fn committed(writer: &GroupCommit) -> World {
        lock(&writer.durable).world.clone()
    }

    /// 16 threads × 25 writes; returns how many commits they took.
    fn hammer(writer: &Arc<GroupCommit>) -> usize {
        let commits = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (writer, commits, start) = (writer.clone(), commits.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for n in 0..25 {
                        let id = format!("{t}:{n}");
                        let published = |w: &World| {
                            assert!(w.get::<RegionInit>(&id).is_some());
                            commits.fetch_add(1, Ordering::Relaxed);
                        };
                        let put = |w: &mut World| {
                            w.put(record(&id));
                            Ok(())
                        };
                        // Only the batch that holds this write may publish
                        // before it returns; any later one holds it too.
                        writer.write(put, published).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        commits.load(Ordering::Relaxed)
    }

    #[test]
    fn concurrent_writes_share_commits_and_all_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(open(dir.path(), true));
        let commits = hammer(&writer);
        assert!(commits < 400, "{commits} commits for 400 writes");
        assert_eq!(committed(&writer).iter::<RegionInit>().count(), 400);
        drop(writer);
        let reopened = open(dir.path(), true);
        assert_eq!(committed(&reopened).iter::<RegionInit>().count(), 400);
    }

    #[test]
    fn without_batching_every_write_commits_alone() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(open(dir.path(), false));
        assert_eq!(hammer(&writer), 400);
        drop(writer);
        assert_eq!(
            committed(&open(dir.path(), false))
                .iter::<RegionInit>()
                .count(),
            400
        );
    }

    #[test]
    fn a_failed_operation_stages_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let writer = open(dir.path(), true);
        let failed: Result<(), Fault> = writer.write(
            |w| {
                w.put(record("lost"));
                Err(Fault::invalid_param("no"))
            },
            |_| panic!("nothing to publish"),
        );
        assert_eq!(failed.unwrap_err().code, "InvalidParameterValue");
        let kept = |w: &mut World| {
            w.put(record("kept"));
            Ok(())
        };
        writer
            .write(kept, |published| {
                assert!(published.get::<RegionInit>("lost").is_none());
                assert!(published.get::<RegionInit>("kept").is_some());
            })
            .unwrap();
        drop(writer);
        let reopened = committed(&open(dir.path(), true));
        assert!(reopened.get::<RegionInit>("lost").is_none());
        assert!(reopened.get::<RegionInit>("kept").is_some());
    }
}
