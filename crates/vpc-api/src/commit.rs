//! Group commit: concurrent write actions share one store transaction (and,
//! on SQLite, one fsync), while each is still acknowledged only once it is
//! durable and each stays all-or-nothing.
//!
//! A write runs its operation on a clone of the *staged* World (the last
//! committed state plus every action staged since). An operation that fails
//! leaves nothing behind; one that succeeds replaces the staged World and
//! adds its change list to the open batch. The writer then waits for its
//! batch to be durable: whoever holds the store lock commits everything
//! staged so far in one transaction and publishes that World, so while one
//! batch is being committed the next one fills up. If a commit fails, every
//! action in that batch and every action staged on top of it fails with
//! `InternalError`, and staging restarts from the last committed World, so
//! no acknowledged state ever depends on a lost one.
//!
//! With a shared store (etcd) other servers commit too. A batch's commit is
//! guarded by the revision its World was built on; when another server got
//! there first the store writes nothing ([`StoreError::Conflict`]), and every
//! action of the batch runs again on the fresh World once the follower
//! ([`GroupCommit::follow`]) has applied the other server's commit: it then
//! succeeds, or fails with the error AWS gives on that state. A batch staged
//! on a World that a followed commit made stale is re-run the same way.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use vpc_model::{Fault, Kind, World};
use vpc_store::{Revision, StateStore, StoreError, Update};

/// How long a write keeps re-running after conflicts before it gives up
/// with `ServiceUnavailable` (which the AWS SDKs retry).
const CONFLICT_BUDGET: Duration = Duration::from_secs(10);
/// How long a conflicting write waits for the follower to bring the newer
/// commit before it reloads the World from the store itself.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// The writer of one store (the only one for SQLite; one of several for etcd).
#[derive(Debug)]
pub struct GroupCommit {
    staging: Mutex<Staging>,
    durable: Mutex<Durable>,
    /// Signalled whenever the committed World moves (ours or a followed commit).
    advanced: Condvar,
    /// Which batches are settled, and whether a writer is committing one.
    progress: Mutex<Progress>,
    /// Signalled when a committing writer is done: the writers of the open
    /// batch wait on it (one of them commits next).
    committer_done: Condvar,
    /// Signalled when a batch is settled: the writers of the batch being
    /// committed wait on it, so a commit wakes only the writers it concerns.
    batch_settled: Condvar,
    /// Taken around a whole write when batching is off (the baseline).
    one_at_a_time: Option<Mutex<()>>,
    /// Called with the store after this writer reloaded the World itself
    /// (the follower lagged), before the reloaded World is installed: the
    /// server reads again what the follower would have brought with the
    /// commits (the hosts' settings), so a re-run sees both.
    after_reload: std::sync::OnceLock<ReloadHook>,
}

/// A function of the store, run after a reload.
type ReloadFn = dyn Fn(&mut dyn StateStore) + Send + Sync;

/// What [`GroupCommit::on_reload`] runs.
pub struct ReloadHook(Box<ReloadFn>);

impl std::fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHook")
    }
}

#[derive(Debug)]
struct Staging {
    world: World,
    changes: Vec<(Kind, String)>,
    batch: u64,
}

/// Why a batch did not commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The store failed: its writers answer `InternalError`.
    Error,
    /// Built on a stale World (the committed one was at `base`): run again.
    Stale { base: Revision },
}

/// What the store holds; its lock is the right to commit.
#[derive(Debug)]
struct Durable {
    store: Box<dyn StateStore>,
    /// The newest committed World.
    world: World,
    /// The store revision `world` is at (the base of the next commit).
    revision: Revision,
}

/// Where the batches are. Writers whose batch is settled learn it here
/// without waiting for the store lock, which the next batch's commit holds
/// through its sync.
#[derive(Debug, Default)]
struct Progress {
    /// Every batch up to this one is settled (committed or failed).
    settled: u64,
    failed: BTreeMap<u64, Failure>,
    /// A writer is committing (or about to): the others wait for it.
    committing: bool,
    /// The batch that writer commits (the open one when it took the role).
    closing: u64,
}

impl Progress {
    fn settle(&mut self, upto: u64, failure: Option<Failure>) {
        if let Some(failure) = failure {
            for b in self.settled + 1..=upto {
                self.failed.insert(b, failure);
            }
        }
        self.settled = self.settled.max(upto);
    }
}

/// Hands the committer's role back (and wakes the waiters) even if the
/// commit panicked, so no writer waits for a committer that is gone.
struct Committing<'a>(&'a GroupCommit);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        lock(&self.0.progress).committing = false;
        self.0.committer_done.notify_all();
        self.0.batch_settled.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn internal_error() -> Fault {
    Fault::new("InternalError", "An internal error has occurred")
}

impl GroupCommit {
    /// A writer over `store`, whose contents are `world` at `revision`. With
    /// `batching` off every write commits alone (one transaction each).
    pub fn new(
        store: Box<dyn StateStore>,
        world: World,
        revision: Revision,
        batching: bool,
    ) -> GroupCommit {
        GroupCommit {
            staging: Mutex::new(Staging {
                world: world.clone(),
                changes: Vec::new(),
                batch: 1,
            }),
            durable: Mutex::new(Durable {
                store,
                world,
                revision,
            }),
            advanced: Condvar::new(),
            progress: Mutex::new(Progress::default()),
            committer_done: Condvar::new(),
            batch_settled: Condvar::new(),
            one_at_a_time: (!batching).then(|| Mutex::new(())),
            after_reload: std::sync::OnceLock::new(),
        }
    }

    /// Runs `hook` with the store whenever this writer reloads the World
    /// itself because its follower lagged (set once).
    pub fn on_reload(&self, hook: impl Fn(&mut dyn StateStore) + Send + Sync + 'static) {
        let _ = self.after_reload.set(ReloadHook(Box::new(hook)));
    }

    /// Runs `operation` as one all-or-nothing action and returns its result
    /// once its changes are durable. `publish` receives each newly committed
    /// World, in commit order, before any writer of that batch returns. The
    /// operation may run more than once (after a conflict with another
    /// server); only the run that commits counts.
    pub fn write<T>(
        &self,
        operation: impl Fn(&mut World) -> Result<T, Fault>,
        publish: impl Fn(&World),
    ) -> Result<T, Fault> {
        let give_up = Instant::now() + CONFLICT_BUDGET;
        loop {
            match self.write_once(&operation, &publish) {
                Ok(out) => return Ok(out),
                Err(Err(fault)) => return Err(fault),
                Err(Ok(base)) => {
                    if Instant::now() >= give_up {
                        return Err(Fault::new(
                            "ServiceUnavailable",
                            "The request could not be completed: other API servers kept changing the same state. Retry the request.",
                        ));
                    }
                    self.wait_past(base, &publish);
                }
            }
        }
    }

    /// One run: Ok, a fault to answer with, or the stale base to wait past.
    fn write_once<T>(
        &self,
        operation: &impl Fn(&mut World) -> Result<T, Fault>,
        publish: &impl Fn(&World),
    ) -> Result<T, Result<Revision, Fault>> {
        let _alone = self.one_at_a_time.as_ref().map(lock);
        let (out, batch) = {
            let mut staging = lock(&self.staging);
            let mut w = staging.world.clone();
            let out = operation(&mut w).map_err(Err)?;
            let changes = w.take_changes();
            if changes.is_empty() && staging.changes.is_empty() {
                // Read nothing that is not durable yet, changed nothing.
                return Ok(out);
            }
            staging.world = w;
            staging.changes.extend(changes);
            (out, staging.batch)
        };
        match self.wait_durable(batch, publish) {
            None => Ok(out),
            Some(Failure::Error) => Err(Err(internal_error())),
            Some(Failure::Stale { base }) => Err(Ok(base)),
        }
    }

    /// Waits until the committed World has moved past `base` (the follower
    /// brings the other server's commit); reloads it from the store if the
    /// follower is too slow.
    fn wait_past(&self, base: Revision, publish: &impl Fn(&World)) {
        let durable = lock(&self.durable);
        let (mut durable, waited) = self
            .advanced
            .wait_timeout_while(durable, FOLLOW_WAIT, |d| d.revision == base)
            .unwrap_or_else(PoisonError::into_inner);
        if waited.timed_out() && durable.revision == base {
            match durable.store.load() {
                Ok(s) if s.revision != base => {
                    tracing::warn!(
                        base,
                        now = s.revision,
                        "the follower lags; reloaded the World"
                    );
                    if let Some(hook) = self.after_reload.get() {
                        (hook.0)(&mut *durable.store);
                    }
                    self.install(&mut durable, s.world, s.revision, publish);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reloading the World failed"),
            }
        }
    }

    /// Waits until `batch` is settled, committing the open batch itself when
    /// no other writer is; how it failed, if it did. One writer commits at a
    /// time; the others sleep until it is done and then either return (their
    /// batch was in it) or one of them commits the next batch.
    fn wait_durable(&self, batch: u64, publish: &impl Fn(&World)) -> Option<Failure> {
        let mut progress = lock(&self.progress);
        loop {
            if progress.settled >= batch {
                return progress.failed.get(&batch).copied();
            }
            if progress.committing {
                // A writer whose batch is being committed waits for it to
                // settle; one in the open batch waits for the committer
                // role to be free.
                let wake = if batch <= progress.closing {
                    &self.batch_settled
                } else {
                    &self.committer_done
                };
                progress = wake.wait(progress).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Nobody commits and `batch` is not settled: it is the open batch.
            progress.committing = true;
            progress.closing = batch;
            drop(progress);
            {
                let _role = Committing(self);
                let mut durable = lock(&self.durable);
                // A followed commit may have settled it meanwhile.
                if lock(&self.progress).settled < batch {
                    self.commit_open_batch(&mut durable, publish);
                }
            }
            progress = lock(&self.progress);
        }
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
        let base = durable.revision;
        match durable.store.commit(base, &world, &changes) {
            Ok(revision) => {
                publish(&world);
                durable.world = world;
                durable.revision = revision;
                lock(&self.progress).settle(batch, None);
                self.advanced.notify_all();
                // The batch's writers answer now; the store's upkeep step
                // (a slice of a compaction) runs while the next batch fills.
                self.batch_settled.notify_all();
                if let Err(e) = durable.store.maintain() {
                    tracing::warn!(error = %e, "store upkeep failed");
                }
            }
            Err(e) => {
                let failure = match e {
                    StoreError::Conflict { base } => Failure::Stale { base },
                    e => {
                        tracing::error!(error = %e, batch, "commit failed");
                        Failure::Error
                    }
                };
                // The batch opened meanwhile was staged on top of the lost
                // one: it fails too, and staging restarts from what is durable.
                let mut staging = lock(&self.staging);
                let built_on_lost = staging.batch;
                staging.world = durable.world.clone();
                staging.changes.clear();
                staging.batch += 1;
                lock(&self.progress).settle(built_on_lost, Some(failure));
                self.batch_settled.notify_all();
            }
        }
    }

    /// Makes `world` (at `revision`, committed by another server) the
    /// committed World; writes staged on the old one run again.
    fn install(
        &self,
        durable: &mut Durable,
        world: World,
        revision: Revision,
        publish: &impl Fn(&World),
    ) {
        let base = durable.revision;
        durable.world = world;
        durable.revision = revision;
        let mut staging = lock(&self.staging);
        if !staging.changes.is_empty() {
            let open = staging.batch;
            staging.batch += 1;
            staging.changes.clear();
            lock(&self.progress).settle(open, Some(Failure::Stale { base }));
            self.committer_done.notify_all();
            self.batch_settled.notify_all();
        }
        staging.world = durable.world.clone();
        drop(staging);
        publish(&durable.world);
        self.advanced.notify_all();
    }

    /// Applies another server's commit (or a whole new state) and publishes
    /// the result. A commit this server made itself, or one already applied,
    /// changes nothing.
    pub fn follow(&self, update: Update, publish: impl Fn(&World)) -> Result<(), StoreError> {
        let mut durable = lock(&self.durable);
        match update {
            Update::Commit {
                revision,
                put,
                removed,
            } => {
                if revision <= durable.revision {
                    return Ok(());
                }
                let mut w = durable.world.clone();
                Update::apply(&mut w, &put, &removed)?;
                self.install(&mut durable, w, revision, &publish);
            }
            Update::Reset(s) => {
                if s.revision != durable.revision {
                    self.install(&mut durable, s.world, s.revision, &publish);
                }
            }
            Update::Setting { .. } | Update::SettingRemoved { .. } => {}
        }
        Ok(())
    }

    /// Runs the store's upkeep (compaction steps) while no write is
    /// staged, for at most `budget`: the background ticker calls it, so a
    /// compaction that the last writes started finishes while the server is
    /// idle. A writer that arrives waits for one step at most.
    pub fn maintain(&self, budget: Duration) {
        let until = Instant::now() + budget;
        while Instant::now() < until && lock(&self.staging).changes.is_empty() {
            match lock(&self.durable).store.maintain() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "store upkeep failed");
                    return;
                }
            }
        }
    }

    /// Runs `f` on the store while no batch is being committed.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut dyn StateStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut *lock(&self.durable).store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use vpc_model::RegionInit;
    use vpc_store::Store;

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
        GroupCommit::new(Box::new(store), world, 0, batching)
    }

    fn committed(writer: &GroupCommit) -> World {
        lock(&writer.durable).world.clone()
    }

    /// 16 threads × 25 writes; returns how many commits they took.
    fn hammer(writer: &Arc<GroupCommit>) -> usize {
        hammer_with(writer, 25)
    }

    /// 16 threads × `each` writes of one record; how many commits they took.
    fn hammer_with(writer: &Arc<GroupCommit>, each: usize) -> usize {
        let commits = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (writer, commits, start) = (writer.clone(), commits.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for n in 0..each {
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

    /// Past the compaction threshold, the server's store compacts between
    /// batches (and, once the writers stop, from `maintain`) while the
    /// writers go on; everything written is there, and the journal holds
    /// only what came after the compaction began.
    #[test]
    fn the_store_compacts_between_batches_while_writers_go_on() {
        let stored = |dir: &std::path::Path| -> std::collections::BTreeSet<String> {
            Store::open(dir)
                .unwrap()
                .load_world()
                .unwrap()
                .iter::<RegionInit>()
                .map(|r| r.id.clone())
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_writer(dir.path()).unwrap();
        let world = store.load_world().unwrap();
        let writer = Arc::new(GroupCommit::new(Box::new(store), world, 0, true));
        let each = 700;
        let writes = 16 * each;
        assert!(writes as u64 > vpc_store::sqlite::COMPACT_MIN_ROWS);
        hammer_with(&writer, each);
        writer.maintain(Duration::from_secs(30));
        assert!(
            Store::open(dir.path()).unwrap().journal_rows()
                <= (writes as u64) - vpc_store::sqlite::COMPACT_MIN_ROWS + 16,
            "no compaction ran"
        );
        assert_eq!(stored(dir.path()).len(), writes);
        assert_eq!(committed(&writer).iter::<RegionInit>().count(), writes);
        drop(writer);
        let expected: std::collections::BTreeSet<String> = (0..16)
            .flat_map(|t| (0..each).map(move |n| format!("{t}:{n}")))
            .collect();
        assert_eq!(stored(dir.path()), expected);
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

/// Grouping under failures: a failing action or a failing commit.
#[cfg(test)]
mod failure_tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use vpc_model::RegionInit;
    use vpc_store::Store;

    fn record(id: &str) -> RegionInit {
        RegionInit {
            id: id.to_string(),
            default_vpc: None,
            default_dhcp_options: None,
        }
    }

    fn stored_ids(dir: &std::path::Path) -> BTreeSet<String> {
        Store::open(dir)
            .unwrap()
            .load_world()
            .unwrap()
            .iter::<RegionInit>()
            .map(|r| r.id.clone())
            .collect()
    }

    /// A real SQLite store whose commits fail while `failing` is set (a full
    /// disk, an I/O error): the only way to see what a failed batch does.
    #[derive(Debug)]
    struct Failing {
        store: Store,
        failing: Arc<AtomicBool>,
    }

    impl StateStore for Failing {
        fn load(&mut self) -> vpc_store::Result<vpc_store::Snapshot> {
            self.store.load()
        }
        fn commit(
            &mut self,
            base: Revision,
            world: &World,
            changes: &[(Kind, String)],
        ) -> vpc_store::Result<Revision> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Invalid("injected commit failure".into()));
            }
            StateStore::commit(&mut self.store, base, world, changes)
        }
        fn follow(
            &mut self,
            as_of: Revision,
        ) -> vpc_store::Result<Option<std::sync::mpsc::Receiver<Update>>> {
            self.store.follow(as_of)
        }
        fn campaign(
            &mut self,
            name: &str,
            holder: &str,
        ) -> vpc_store::Result<vpc_store::Leadership> {
            self.store.campaign(name, holder)
        }
        fn add_account(&mut self, id: &str, key: &str, secret: &str) -> vpc_store::Result<()> {
            StateStore::add_account(&mut self.store, id, key, secret)
        }
        fn list_accounts(&mut self) -> vpc_store::Result<Vec<vpc_store::Account>> {
            StateStore::list_accounts(&mut self.store)
        }
        fn find_key(&mut self, key: &str) -> vpc_store::Result<Option<(String, String)>> {
            StateStore::find_key(&mut self.store, key)
        }
        fn get_setting(&mut self, key: &str) -> vpc_store::Result<Option<String>> {
            StateStore::get_setting(&mut self.store, key)
        }
        fn set_setting(&mut self, key: &str, value: &str) -> vpc_store::Result<()> {
            StateStore::set_setting(&mut self.store, key, value)
        }
        fn settings_with_prefix(
            &mut self,
            prefix: &str,
        ) -> vpc_store::Result<Vec<(String, String)>> {
            StateStore::settings_with_prefix(&mut self.store, prefix)
        }
        fn hold_setting(
            &mut self,
            key: &str,
            value: &str,
            ttl: i64,
        ) -> vpc_store::Result<vpc_store::HeldSetting> {
            StateStore::hold_setting(&mut self.store, key, value, ttl)
        }
        fn remove_settings(
            &mut self,
            base: Revision,
            keys: &[String],
            unless: &[String],
        ) -> vpc_store::Result<Revision> {
            StateStore::remove_settings(&mut self.store, base, keys, unless)
        }
        fn record_usage(
            &mut self,
            usage: &[vpc_model::usage::Usage],
            baselines: &std::collections::BTreeMap<vpc_store::CounterId, vpc_store::CounterValue>,
            forget: &[vpc_store::CounterId],
        ) -> vpc_store::Result<()> {
            StateStore::record_usage(&mut self.store, usage, baselines, forget)
        }
        fn meter_baselines(
            &mut self,
            prefix: &str,
        ) -> vpc_store::Result<
            std::collections::BTreeMap<vpc_store::CounterId, vpc_store::CounterValue>,
        > {
            StateStore::meter_baselines(&mut self.store, prefix)
        }
        fn usage(
            &mut self,
            account: Option<&str>,
            from: vpc_model::Timestamp,
            to: vpc_model::Timestamp,
        ) -> vpc_store::Result<Vec<vpc_model::usage::Usage>> {
            StateStore::usage(&mut self.store, account, from, to)
        }
    }

    /// Runs `plan` (per thread, whether each of its writes fails) on a writer
    /// over a fresh store; returns the ids acknowledged, the ids refused and
    /// how many batches were committed.
    fn run_plan(
        dir: &std::path::Path,
        plan: &[Vec<bool>],
    ) -> (BTreeSet<String>, BTreeSet<String>, usize) {
        let store = Store::open_writer(dir).unwrap();
        let world = store.load_world().unwrap();
        let writer = Arc::new(GroupCommit::new(Box::new(store), world, 0, true));
        let commits = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(plan.len()));
        let threads: Vec<_> = plan
            .iter()
            .cloned()
            .enumerate()
            .map(|(t, writes)| {
                let (writer, commits, start) = (writer.clone(), commits.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let (mut acked, mut refused) = (BTreeSet::new(), BTreeSet::new());
                    for (n, fails) in writes.into_iter().enumerate() {
                        let id = format!("{t}:{n}");
                        let op = |w: &mut World| {
                            // Two records per action, so half of one would show.
                            w.put(record(&id));
                            w.put(record(&format!("{id}+")));
                            if fails {
                                return Err(Fault::invalid_param("refused"));
                            }
                            Ok(())
                        };
                        let published = |w: &World| {
                            // Nothing refused is ever published.
                            assert!(w.get::<RegionInit>(&id).is_some() != fails);
                            commits.fetch_add(1, Ordering::Relaxed);
                        };
                        match writer.write(op, published) {
                            Ok(()) => acked.insert(id),
                            Err(f) => {
                                assert_eq!(f.code, "InvalidParameterValue");
                                refused.insert(id)
                            }
                        };
                    }
                    (acked, refused)
                })
            })
            .collect();
        let (mut acked, mut refused) = (BTreeSet::new(), BTreeSet::new());
        for t in threads {
            let (a, r) = t.join().unwrap();
            acked.extend(a);
            refused.extend(r);
        }
        let published = lock(&writer.durable)
            .world
            .iter::<RegionInit>()
            .map(|r| r.id.clone())
            .filter(|id| !id.ends_with('+'))
            .collect::<BTreeSet<_>>();
        assert_eq!(published, acked);
        drop(writer);
        (acked, refused, commits.load(Ordering::Relaxed))
    }

    #[test]
    fn a_failing_action_in_a_group_leaves_the_others_committed() {
        let dir = tempfile::tempdir().unwrap();
        // 16 threads x 20 writes; every third write of each thread fails.
        let plan: Vec<Vec<bool>> = (0..16)
            .map(|_| (0..20).map(|n| n % 3 == 1).collect())
            .collect();
        let (acked, refused, commits) = run_plan(dir.path(), &plan);
        assert_eq!(refused.len(), 16 * 7);
        assert!(
            commits < acked.len(),
            "{commits} commits for {} writes: nothing was grouped",
            acked.len()
        );
        let stored = stored_ids(dir.path());
        for id in &acked {
            assert!(
                stored.contains(id) && stored.contains(&format!("{id}+")),
                "{id} lost"
            );
        }
        for id in &refused {
            assert!(
                !stored.contains(id) && !stored.contains(&format!("{id}+")),
                "{id} kept"
            );
        }
        assert_eq!(stored.len(), 2 * acked.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Whatever mix of concurrent actions fails, the store ends up with
        /// exactly the acknowledged ones, each whole.
        #[test]
        fn the_store_holds_exactly_the_acknowledged_actions(
            plan in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 1..12), 1..10)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (acked, refused, _) = run_plan(dir.path(), &plan);
            let expected_refused = plan.iter().flatten().filter(|f| **f).count();
            prop_assert_eq!(refused.len(), expected_refused);
            let stored = stored_ids(dir.path());
            let whole: BTreeSet<String> = acked
                .iter()
                .flat_map(|id| [id.clone(), format!("{id}+")])
                .collect();
            prop_assert_eq!(stored, whole);
        }
    }

    #[test]
    fn a_failed_commit_fails_its_whole_batch_and_nothing_of_it_survives() {
        let dir = tempfile::tempdir().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let store = Failing {
            store: Store::open_writer(dir.path()).unwrap(),
            failing: failing.clone(),
        };
        let world = store.store.load_world().unwrap();
        let writer = Arc::new(GroupCommit::new(Box::new(store), world, 0, true));
        let put = |id: String| {
            move |w: &mut World| -> Result<(), Fault> {
                w.put(record(&id));
                Ok(())
            }
        };
        writer.write(put("before".into()), |_| {}).unwrap();
        // While the store fails, concurrent writers all get InternalError and
        // publish nothing.
        failing.store(true, Ordering::SeqCst);
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (writer, start) = (writer.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    writer
                        .write(put(format!("lost{t}")), |_| {
                            panic!("a failed batch was published")
                        })
                        .unwrap_err()
                        .code
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "InternalError");
        }
        // Staging restarted from what is durable: the next batch holds only its own write.
        failing.store(false, Ordering::SeqCst);
        writer
            .write(put("after".into()), |w| {
                assert!(w.iter::<RegionInit>().all(|r| !r.id.starts_with("lost")));
            })
            .unwrap();
        drop(writer);
        let stored = stored_ids(dir.path());
        assert_eq!(
            stored,
            ["after", "before"].iter().map(|s| s.to_string()).collect()
        );
    }
}

/// Two writers on one etcd: the cluster case (needs the `etcd` binary).
#[cfg(test)]
mod cluster_tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use vpc_model::RegionInit;
    use vpc_store::testkit::EtcdServer;

    /// A writer on `etcd` under `prefix` with its follower thread running.
    fn writer(etcd: &EtcdServer, prefix: &str) -> Arc<GroupCommit> {
        let mut store = etcd.store(prefix);
        let snap = store.load().unwrap();
        let updates = store.follow(snap.as_of).unwrap().unwrap();
        let gc = Arc::new(GroupCommit::new(
            Box::new(store),
            snap.world,
            snap.revision,
            true,
        ));
        let follower = Arc::downgrade(&gc);
        std::thread::spawn(move || {
            for u in updates {
                let Some(gc) = follower.upgrade() else { return };
                gc.follow(u, |_| {}).unwrap();
            }
        });
        gc
    }

    fn counter(w: &World) -> u64 {
        w.get::<RegionInit>("counter")
            .and_then(|r| r.default_vpc.as_deref())
            .map_or(0, |v| v.parse().unwrap())
    }

    #[test]
    fn a_writer_whose_follower_lags_reloads_and_runs_its_hook_before_re_running() {
        let record = |id: &str| RegionInit {
            id: id.to_string(),
            default_vpc: None,
            default_dhcp_options: None,
        };
        let etcd = EtcdServer::start().unwrap();
        // No follower: a conflict makes the writer reload the World itself.
        let mut store = etcd.store("/lag");
        let snap = store.load().unwrap();
        let gc = GroupCommit::new(Box::new(store), snap.world, snap.revision, true);
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hook_saw = seen.clone();
        gc.on_reload(move |store| {
            let v = store.get_setting("marker").unwrap();
            hook_saw.store(
                v.map_or(0, |v| v.parse().unwrap()),
                std::sync::atomic::Ordering::SeqCst,
            );
        });
        let mut other = etcd.store("/lag");
        let mut w = World::default();
        w.put(record("elsewhere"));
        other
            .commit(snap.revision, &w, &w.clone().take_changes())
            .unwrap();
        other.set_setting("marker", "7").unwrap();
        // The write runs on the stale World, conflicts, reloads (the hook
        // reading the setting then), and runs again on the fresh World.
        let runs = std::sync::atomic::AtomicU64::new(0);
        gc.write(
            |w| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                w.put(record("mine"));
                Ok(())
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 7);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        let stored = etcd.store("/lag").load().unwrap().world;
        assert!(stored.get::<RegionInit>("elsewhere").is_some());
        assert!(stored.get::<RegionInit>("mine").is_some());
    }

    #[test]
    fn two_servers_incrementing_one_record_lose_no_update() {
        let etcd = EtcdServer::start().unwrap();
        let servers = [writer(&etcd, "/inc"), writer(&etcd, "/inc")];
        let start = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (gc, start) = (servers[t % 2].clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..15 {
                        // Read-modify-write: a lost update would show in the total.
                        gc.write(
                            |w| {
                                let n = counter(w);
                                w.put(RegionInit {
                                    id: "counter".into(),
                                    default_vpc: Some((n + 1).to_string()),
                                    default_dhcp_options: None,
                                });
                                Ok(())
                            },
                            |_| {},
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stored = etcd.store("/inc").load().unwrap().world;
        assert_eq!(counter(&stored), 16 * 15);
        // Both servers converge on it.
        for gc in &servers {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while counter(&lock(&gc.durable).world) != 16 * 15 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a server did not converge"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    #[test]
    fn the_loser_of_a_conflict_gets_the_error_the_fresh_state_gives() {
        let etcd = EtcdServer::start().unwrap();
        let (one, two) = (writer(&etcd, "/once"), writer(&etcd, "/once"));
        // "Create once": succeeds only where the record is absent.
        let create = |w: &mut World| {
            if w.get::<RegionInit>("only").is_some() {
                return Err(Fault::new("InvalidParameterValue", "exists"));
            }
            w.put(RegionInit {
                id: "only".into(),
                default_vpc: None,
                default_dhcp_options: None,
            });
            Ok(())
        };
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (gc, start) = (
                    if t % 2 == 0 { one.clone() } else { two.clone() },
                    start.clone(),
                );
                std::thread::spawn(move || {
                    start.wait();
                    gc.write(create, |_| {}).map_err(|f| f.code)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|c| c == "InvalidParameterValue"));
    }
}
