//! The SQLite backend: one database (WAL) in the data directory.
//!
//! Records are JSON bodies keyed by (kind, id), in two tables: `resources`,
//! one row per record as of the last compaction, and `journal`, the records
//! committed since, appended in commit order (a removed record is a row with
//! no body). The World is `resources` with the journal replayed over it. A
//! commit (a whole batch of actions' change lists) appends its rows to the
//! journal in one transaction, and the server answers only after `COMMIT`
//! returns with `synchronous=FULL`, so every acknowledged write survives
//! `kill -9` and no half-applied action is ever visible. Appending touches
//! the last page or two of the journal, where writing records in place
//! would dirty one page of `resources` per record (record ids are random);
//! that difference is most of a write's cost in SQLite. Accounts and their
//! access keys live in their own tables so that `vpcd account add` can
//! write them while a server runs. One server writes a data directory, so
//! commits never conflict.
//!
//! **Compaction** folds the journal into `resources` once the journal holds
//! twice as many rows as `resources` (and at least [`COMPACT_MIN_ROWS`]),
//! so each committed row is rewritten a bounded number of times (about 1.5
//! on average), sequentially, and a load reads at most three rows per record
//! alive. It never holds commits for long: the server's store
//! ([`Store::open_writer`]) runs it a small step at a time between commits
//! ([`Store::maintain`]), each step its own short transaction:
//!
//! 1. *build*: the commit that crosses the threshold keeps the World it
//!    committed (a cheap clone; its journal position is `upto`) and the
//!    steps write that World into a new table, `resources_next`, in key
//!    order, a slice at a time. Loads ignore `resources_next`;
//! 2. *swap*: the step that writes the last slice also renames `resources`
//!    to `resources_old` and `resources_next` to `resources`, in the same
//!    transaction. The journal is untouched, so a load still replays every
//!    row of it over the new `resources`: a row at or before `upto` writes
//!    a record's version again or an older one that a later row of the
//!    same record supersedes, which leaves the World as it was;
//! 3. *cleanup*: the steps delete `resources_old` and the journal rows up to
//!    `upto`, a slice at a time, oldest first.
//!
//! So at every moment, a `kill -9` included, the tables a load reads hold
//! exactly the committed World, and compaction's own transactions need no
//! sync of their own: a WAL keeps its transactions in order, and the next
//! commit's sync makes them durable with it. A server that starts after a
//! crash drops a half-built `resources_next` or a leftover `resources_old`.
//! Commits append to the journal throughout; the steps are paced by the
//! rows committed ([`STEP_ROWS`], or four times the rows appended since the
//! last step), so a compaction finishes long before the next is due.
//!
//! The server's store also keeps WAL checkpoints off the commit path: a
//! [`Checkpointer`] thread with its own connection copies the WAL into the
//! database in the background, so a commit pays for writing its own frames
//! and one sync, never for a checkpoint.

use crate::{AccessKey, Account, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use vpc_model::{Kind, World};

/// Where a compaction under way is (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactionPhase {
    /// Writing `resources_next` from the World at the journal position it started at.
    Build,
    /// `resources` is the new table; deleting the old one and the journal's folded rows.
    Cleanup,
}

/// A compaction under way, advanced by [`Store::maintain`].
#[derive(Debug)]
enum Compaction {
    Build {
        /// The World as of journal row `upto`.
        snapshot: Box<World>,
        upto: i64,
        /// Kinds in the store's key order (by name), and where in them the
        /// next slice starts: this kind, after this ID.
        kinds: Vec<Kind>,
        kind: usize,
        after: Option<String>,
        /// Rows written to `resources_next` so far.
        written: u64,
    },
    Cleanup {
        upto: i64,
        /// `resources_old` still exists.
        old_left: bool,
    },
}

/// The database file inside a data directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("vpcd.db")
}

#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    /// Background checkpoints (the server's store only); stopped on drop.
    checkpointer: Option<Checkpointer>,
    /// Rows in `journal` and in `resources`, to decide when to compact.
    journal_rows: u64,
    resources_rows: u64,
    /// The compaction under way (the server's store only).
    compaction: Option<Compaction>,
    /// Rows committed since the last compaction step, to pace the steps.
    appended_since_step: u64,
    /// The data directory's writer lock (the server's store only), held
    /// while the store is open: one process compacts a data directory.
    writer_lock: Option<std::fs::File>,
}

/// The journal is compacted once it holds this many rows and at least
/// twice as many as `resources`.
pub const COMPACT_MIN_ROWS: u64 = 10_000;
/// The fewest rows one compaction step writes or deletes (a step does four
/// times the rows committed since the previous one when that is more): a
/// step's transaction takes a millisecond or two, which is what it can add
/// to the commit after it.
pub const STEP_ROWS: u64 = 256;

/// Page cache per connection: the whole working set of a large World, so a
/// commit's B-tree descent reads no page from the file (64 MiB).
const CACHE_KIB: i64 = 64 * 1024;
/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Past this many WAL frames (about 64 MiB) the checkpointer restarts the
/// log (briefly holding writers), so a busy server's WAL cannot grow without
/// bound; below it, checkpoints never block a commit.
const WAL_RESTART_FRAMES: i64 = 16 * 1024;

/// A thread that checkpoints the WAL of one database in the background.
#[derive(Debug)]
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: PathBuf) -> Result<Checkpointer> {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vpcd-checkpoint".into())
            .spawn(move || loop {
                let last = !matches!(
                    stopped.recv_timeout(CHECKPOINT_EVERY),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
                if let Err(e) = checkpoint(&conn, last) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
                if last {
                    return;
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A server closing its store leaves it compacted, so the next start
        // reads one table.
        if self.checkpointer.is_some() && (self.journal_rows > 0 || self.compaction.is_some()) {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, "compacting the journal on close failed");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Takes the data directory's writer lock (`vpcd.lock`, an exclusive
/// `flock` the kernel drops when the process dies, `kill -9` included).
fn lock_writer(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("vpcd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::CreateDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Invalid(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// One background checkpoint: passive (never waits for a writer) while the
/// WAL is small, a restart of the log once it is large or on the way out.
fn checkpoint(conn: &Connection, restart: bool) -> Result<()> {
    let (_busy, frames, _done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if restart || frames > WAL_RESTART_FRAMES {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

/// An empty `resources_next`, the table a compaction builds (any left over
/// from a compaction cut short goes first).
const NEW_RESOURCES_NEXT: &str = "
DROP TABLE IF EXISTS resources_next;
CREATE TABLE resources_next (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    seq  INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT
);
CREATE TABLE IF NOT EXISTS accounts (
    id      TEXT PRIMARY KEY,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id     TEXT PRIMARY KEY,
    secret_access_key TEXT NOT NULL,
    account_id        TEXT NOT NULL REFERENCES accounts(id)
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(db_path(dir))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::usage::SCHEMA)?;
        let count = |table: &str| -> Result<u64> {
            let n: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let (journal_rows, resources_rows) = (count("journal")?, count("resources")?);
        Ok(Store {
            conn,
            checkpointer: None,
            journal_rows,
            resources_rows,
            compaction: None,
            appended_since_step: 0,
            writer_lock: None,
        })
    }

    /// Opens the store a server commits through: like [`Store::open`], with
    /// the WAL checkpointed by a background thread instead of by commits,
    /// and the journal compacted step by step ([`Store::maintain`]). Drops
    /// what a compaction cut short by a crash left behind.
    pub fn open_writer(dir: &Path) -> Result<Store> {
        let lock = lock_writer(dir)?;
        let mut store = Store::open(dir)?;
        store.writer_lock = Some(lock);
        store.conn.execute_batch(
            "DROP TABLE IF EXISTS resources_next;
             DROP TABLE IF EXISTS resources_old;",
        )?;
        store.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        store.checkpointer = Some(Checkpointer::start(db_path(dir))?);
        Ok(store)
    }

    /// Reads every stored resource into a fresh world: `resources`, then the
    /// journal replayed in commit order, in one read transaction.
    pub fn load_world(&self) -> Result<World> {
        let mut w = World::default();
        let tx = self.conn.unchecked_transaction()?;
        for query in [
            "SELECT kind, id, body FROM resources",
            "SELECT kind, id, body FROM journal ORDER BY seq",
        ] {
            let mut stmt = tx.prepare(query)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let kind: String = row.get(0)?;
                let id: String = row.get(1)?;
                let body: Option<String> = row.get(2)?;
                let Some(k) = Kind::from_name(&kind) else {
                    return Err(StoreError::Invalid(format!(
                        "unknown record kind {kind} for {id}"
                    )));
                };
                match body {
                    Some(body) => w.decode(k, &body).map_err(|source| StoreError::Decode {
                        kind,
                        id,
                        source,
                    })?,
                    None => {
                        w.forget(k, &id);
                    }
                }
            }
        }
        tx.commit()?;
        Ok(w)
    }

    /// Writes a change list (one action's, or a batch of them) in a single
    /// transaction: the records as they are in `world`, absent ones removed.
    /// `world` is the whole committed state after the change: the server's
    /// store compacts from it once the journal is long enough.
    pub fn commit(&mut self, world: &World, changes: &[(Kind, String)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut append =
                tx.prepare_cached("INSERT INTO journal (kind, id, body) VALUES (?1, ?2, ?3)")?;
            for (kind, id) in changes {
                append.execute(params![kind.name(), id, world.encode(*kind, id)])?;
            }
        }
        let upto = tx.last_insert_rowid();
        tx.commit()?;
        self.journal_rows += changes.len() as u64;
        self.appended_since_step += changes.len() as u64;
        if self.checkpointer.is_some()
            && self.compaction.is_none()
            && self.journal_rows >= COMPACT_MIN_ROWS.max(2 * self.resources_rows)
        {
            let mut kinds = Kind::ALL.to_vec();
            kinds.sort_by_key(|k| k.name());
            self.appended_since_step = changes.len() as u64;
            self.compaction = Some(Compaction::Build {
                snapshot: Box::new(world.clone()),
                upto,
                kinds,
                kind: 0,
                after: None,
                written: 0,
            });
        }
        Ok(())
    }

    /// Where the compaction under way is, if one is.
    pub fn compaction(&self) -> Option<CompactionPhase> {
        match self.compaction {
            None => None,
            Some(Compaction::Build { .. }) => Some(CompactionPhase::Build),
            Some(Compaction::Cleanup { .. }) => Some(CompactionPhase::Cleanup),
        }
    }

    /// Runs one step of the compaction under way, in its own short
    /// transaction; returns whether more steps are left. The server calls it
    /// after each commit, once that commit's writers are answered, and when
    /// idle. A failed step changes nothing and is tried again next time.
    pub fn maintain(&mut self) -> Result<bool> {
        let Some(mut compaction) = self.compaction.take() else {
            self.appended_since_step = 0;
            return Ok(false);
        };
        let budget = STEP_ROWS.max(4 * self.appended_since_step);
        // A step's transaction is made durable by the next commit's sync
        // (see the module's documentation), so it does not sync itself.
        if let Err(e) = self.conn.pragma_update(None, "synchronous", "NORMAL") {
            self.compaction = Some(compaction);
            return Err(e.into());
        }
        let step = self.step(&mut compaction, budget);
        // Commits must sync again before anything else runs; if that cannot
        // be set, the connection is unusable for acknowledged writes.
        if let Err(e) = self.conn.pragma_update(None, "synchronous", "FULL") {
            self.compaction = Some(compaction);
            return Err(StoreError::Invalid(format!(
                "cannot restore synchronous=FULL after a compaction step: {e}"
            )));
        }
        match step {
            Ok(done) => {
                self.appended_since_step = 0;
                if !done {
                    self.compaction = Some(compaction);
                }
                Ok(!done)
            }
            Err(e) => {
                self.compaction = Some(compaction);
                Err(e)
            }
        }
    }

    /// One step of `compaction` over at most `budget` rows; whether the
    /// compaction is finished. `compaction` and the row counts move on only
    /// if the step's transaction committed.
    fn step(&mut self, compaction: &mut Compaction, budget: u64) -> Result<bool> {
        let limit = usize::try_from(budget).unwrap_or(usize::MAX);
        let tx = self.conn.transaction()?;
        match compaction {
            Compaction::Build {
                snapshot,
                upto,
                kinds,
                kind,
                after,
                written,
            } => {
                if *kind == 0 && after.is_none() && *written == 0 {
                    tx.execute_batch(NEW_RESOURCES_NEXT)?;
                }
                let (mut at, mut from, mut count) = (*kind, after.clone(), *written);
                let mut left = limit;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO resources_next (kind, id, body) VALUES (?1, ?2, ?3)",
                    )?;
                    while left > 0 && at < kinds.len() {
                        let name = kinds[at].name();
                        let slice = snapshot.encode_after(kinds[at], from.as_deref(), left);
                        for (id, body) in &slice {
                            insert.execute(params![name, id, body])?;
                        }
                        left -= slice.len();
                        count += slice.len() as u64;
                        if left > 0 {
                            // This kind is done.
                            at += 1;
                            from = None;
                        } else {
                            from = slice.last().map(|(id, _)| id.clone());
                        }
                    }
                }
                let built = at == kinds.len();
                if built {
                    tx.execute_batch(
                        "DROP TABLE IF EXISTS resources_old;
                         ALTER TABLE resources RENAME TO resources_old;
                         ALTER TABLE resources_next RENAME TO resources;",
                    )?;
                }
                tx.commit()?;
                if built {
                    self.resources_rows = count;
                    *compaction = Compaction::Cleanup {
                        upto: *upto,
                        old_left: true,
                    };
                } else {
                    (*kind, *after, *written) = (at, from, count);
                }
                Ok(false)
            }
            Compaction::Cleanup { upto, old_left } => {
                let mut left = limit;
                let mut old_gone = false;
                if *old_left {
                    let deleted = tx.execute(
                        "DELETE FROM resources_old WHERE (kind, id) IN
                             (SELECT kind, id FROM resources_old ORDER BY kind, id LIMIT ?1)",
                        [i64::try_from(left).unwrap_or(i64::MAX)],
                    )?;
                    if deleted < left {
                        tx.execute_batch("DROP TABLE resources_old")?;
                        old_gone = true;
                    }
                    left -= deleted;
                }
                let mut journal_deleted = 0;
                let mut journal_done = false;
                if left > 0 {
                    let first: Option<i64> =
                        tx.query_row("SELECT min(seq) FROM journal", [], |r| r.get(0))?;
                    match first {
                        Some(first) if first <= *upto => {
                            let n = i64::try_from(left).unwrap_or(i64::MAX);
                            let last = (*upto).min(first.saturating_add(n - 1));
                            journal_deleted =
                                tx.execute("DELETE FROM journal WHERE seq <= ?1", [last])?;
                            journal_done = last == *upto;
                        }
                        _ => journal_done = true,
                    }
                }
                tx.commit()?;
                self.journal_rows = self.journal_rows.saturating_sub(journal_deleted as u64);
                if old_gone {
                    *old_left = false;
                }
                Ok(!*old_left && journal_done)
            }
        }
    }

    /// Folds the whole journal into `resources` now: finishes the
    /// compaction under way, then, if the journal still holds rows, rewrites
    /// `resources` in key order with each record's newest version (removed
    /// ones left out) and empties the journal, in one transaction (which
    /// holds commits while it runs: a server does this only on close).
    pub fn compact(&mut self) -> Result<()> {
        while self.compaction.is_some() {
            self.maintain()?;
        }
        if self.journal_rows == 0 {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(NEW_RESOURCES_NEXT)?;
        tx.execute_batch(
            "INSERT INTO resources_next (kind, id, body)
                 SELECT kind, id, body FROM (
                     SELECT kind, id, body,
                            row_number() OVER (PARTITION BY kind, id ORDER BY seq DESC) AS newest
                     FROM (SELECT kind, id, body, 0 AS seq FROM resources
                           UNION ALL SELECT kind, id, body, seq FROM journal))
                 WHERE newest = 1 AND body IS NOT NULL
                 ORDER BY kind, id;
             DROP TABLE resources;
             ALTER TABLE resources_next RENAME TO resources;
             DELETE FROM journal;",
        )?;
        let rows: i64 = tx.query_row("SELECT count(*) FROM resources", [], |r| r.get(0))?;
        tx.commit()?;
        self.resources_rows = u64::try_from(rows).unwrap_or(0);
        self.journal_rows = 0;
        Ok(())
    }

    /// Rows waiting in the journal (what the next compaction folds in).
    pub fn journal_rows(&self) -> u64 {
        self.journal_rows
    }

    /// Adds an account with one access key.
    pub fn add_account(&mut self, id: &str, access_key_id: &str, secret: &str) -> Result<()> {
        check_account(id, access_key_id, secret)?;
        // It reads before it writes, and another process (the server) may
        // commit in between: take the write lock first (waiting for it, up
        // to the busy timeout) so the read is never of a stale snapshot.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: Option<String> = tx
            .query_row("SELECT id FROM accounts WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::AccountExists(id.to_string()));
        }
        let key: Option<String> = tx
            .query_row(
                "SELECT account_id FROM access_keys WHERE access_key_id = ?1",
                [access_key_id],
                |r| r.get(0),
            )
            .optional()?;
        if key.is_some() {
            return Err(StoreError::KeyExists(access_key_id.to_string()));
        }
        tx.execute("INSERT INTO accounts (id) VALUES (?1)", [id])?;
        tx.execute(
            "INSERT INTO access_keys (access_key_id, secret_access_key, account_id) VALUES (?1, ?2, ?3)",
            params![access_key_id, secret, id],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.id, k.access_key_id, k.secret_access_key
             FROM accounts a LEFT JOIN access_keys k ON k.account_id = a.id
             ORDER BY a.created, a.id, k.access_key_id",
        )?;
        let mut out: Vec<Account> = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let akid: Option<String> = r.get(1)?;
            let secret: Option<String> = r.get(2)?;
            if out.last().map(|a| a.id.as_str()) != Some(id.as_str()) {
                out.push(Account {
                    id: id.clone(),
                    keys: Vec::new(),
                });
            }
            if let (Some(a), Some(s)) = (akid, secret) {
                out.last_mut().expect("pushed").keys.push(AccessKey {
                    access_key_id: a,
                    secret_access_key: s,
                });
            }
        }
        Ok(out)
    }

    /// The (account, secret) behind an access key id.
    pub fn find_key(&self, access_key_id: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT account_id, secret_access_key FROM access_keys WHERE access_key_id = ?1",
                [access_key_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn get_setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

impl crate::StateStore for Store {
    fn load(&mut self) -> Result<crate::Snapshot> {
        Ok(crate::Snapshot {
            world: self.load_world()?,
            revision: 0,
            as_of: 0,
        })
    }

    fn commit(
        &mut self,
        _base: crate::Revision,
        world: &World,
        changes: &[(Kind, String)],
    ) -> Result<crate::Revision> {
        Store::commit(self, world, changes)?;
        Ok(0)
    }

    fn maintain(&mut self) -> Result<bool> {
        Store::maintain(self)
    }

    fn follow(
        &mut self,
        _as_of: crate::Revision,
    ) -> Result<Option<std::sync::mpsc::Receiver<crate::Update>>> {
        Ok(None)
    }

    fn campaign(&mut self, _name: &str, _holder: &str) -> Result<crate::Leadership> {
        Ok(crate::Leadership::always())
    }

    fn add_account(&mut self, id: &str, access_key_id: &str, secret: &str) -> Result<()> {
        Store::add_account(self, id, access_key_id, secret)
    }

    fn list_accounts(&mut self) -> Result<Vec<Account>> {
        Store::list_accounts(self)
    }

    fn find_key(&mut self, access_key_id: &str) -> Result<Option<(String, String)>> {
        Store::find_key(self, access_key_id)
    }

    fn get_setting(&mut self, key: &str) -> Result<Option<String>> {
        Store::get_setting(self, key)
    }

    fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        Store::set_setting(self, key, value)
    }

    fn settings_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn hold_setting(
        &mut self,
        key: &str,
        _value: &str,
        _ttl_secs: i64,
    ) -> Result<crate::HeldSetting> {
        Err(StoreError::Invalid(format!(
            "setting {key}: a setting held while a process lives needs a shared store (--store etcd://...)"
        )))
    }

    fn remove_settings(
        &mut self,
        base: crate::Revision,
        keys: &[String],
        unless: &[String],
    ) -> Result<crate::Revision> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for key in unless {
            let present: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM settings WHERE key = ?1)",
                [key],
                |r| r.get(0),
            )?;
            if present {
                return Err(StoreError::SettingPresent(key.clone()));
            }
        }
        for key in keys {
            tx.execute("DELETE FROM settings WHERE key = ?1", [key])?;
        }
        tx.commit()?;
        Ok(base)
    }

    fn record_usage(
        &mut self,
        usage: &[vpc_model::usage::Usage],
        baselines: &std::collections::BTreeMap<crate::CounterId, crate::CounterValue>,
        forget: &[crate::CounterId],
    ) -> Result<()> {
        Store::record_usage(self, usage, baselines, forget)
    }

    fn meter_baselines(
        &mut self,
        namespace_prefix: &str,
    ) -> Result<std::collections::BTreeMap<crate::CounterId, crate::CounterValue>> {
        let mut all = Store::meter_baselines(self)?;
        all.retain(|(ns, _), _| ns.starts_with(namespace_prefix));
        Ok(all)
    }

    fn usage(
        &mut self,
        account: Option<&str>,
        from: vpc_model::Timestamp,
        to: vpc_model::Timestamp,
    ) -> Result<Vec<vpc_model::usage::Usage>> {
        Store::usage(self, account, from, to)
    }
}

/// Checks an account id and key before either backend stores them.
pub(crate) fn check_account(id: &str, access_key_id: &str, secret: &str) -> Result<()> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Invalid(format!(
            "account id {id:?} must be 12 digits"
        )));
    }
    if access_key_id.is_empty() || secret.is_empty() {
        return Err(StoreError::Invalid(
            "access key id and secret access key must not be empty".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_model::RegionInit;

    fn record(id: &str, v: &str) -> RegionInit {
        RegionInit {
            id: id.to_string(),
            default_vpc: Some(v.to_string()),
            default_dhcp_options: None,
        }
    }

    fn contents(w: &World) -> Vec<(String, Option<String>)> {
        w.iter::<RegionInit>()
            .map(|r| (r.id.clone(), r.default_vpc.clone()))
            .collect()
    }

    /// Puts, updates and removals, some before a compaction and some after,
    /// read back alike from the journal, from `resources` and from both.
    #[test]
    fn the_journal_and_compaction_keep_each_records_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::default();
        let mut s = Store::open(dir.path()).unwrap();
        let step = |s: &mut Store, w: &mut World, f: &dyn Fn(&mut World)| {
            f(w);
            let changes = w.take_changes();
            s.commit(w, &changes).unwrap();
            assert_eq!(contents(&s.load_world().unwrap()), contents(w));
        };
        for i in 0..20 {
            step(&mut s, &mut w, &|w| w.put(record(&format!("r{i:02}"), "1")));
        }
        step(&mut s, &mut w, &|w| w.put(record("r03", "2")));
        step(&mut s, &mut w, &|w| {
            w.remove::<RegionInit>("r04");
        });
        assert_eq!(s.journal_rows(), 22);
        s.compact().unwrap();
        assert_eq!(s.journal_rows(), 0);
        assert_eq!(contents(&s.load_world().unwrap()), contents(&w));
        // After the compaction: update a compacted record, remove one,
        // bring back the removed one, then a record put and removed again.
        step(&mut s, &mut w, &|w| w.put(record("r03", "3")));
        step(&mut s, &mut w, &|w| {
            w.remove::<RegionInit>("r05");
        });
        step(&mut s, &mut w, &|w| w.put(record("r04", "back")));
        step(&mut s, &mut w, &|w| w.put(record("gone", "x")));
        step(&mut s, &mut w, &|w| {
            w.remove::<RegionInit>("gone");
        });
        drop(s);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.journal_rows(), 5);
        let loaded = reopened.load_world().unwrap();
        assert_eq!(contents(&loaded), contents(&w));
        assert_eq!(
            loaded
                .get::<RegionInit>("r03")
                .unwrap()
                .default_vpc
                .as_deref(),
            Some("3")
        );
        assert!(loaded.get::<RegionInit>("r05").is_none());
        assert!(loaded.get::<RegionInit>("gone").is_none());
    }

    /// One process writes a data directory: a second writer is refused
    /// while the first lives, and commands' plain connections (`vpcd
    /// account add`, readers) opened and closed beside it in every phase of
    /// a compaction neither compact nor disturb it: every committed record
    /// is loaded back.
    #[test]
    fn one_writer_per_directory_and_plain_connections_beside_it_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::default();
        let mut s = Store::open_writer(dir.path()).unwrap();
        match Store::open_writer(dir.path()) {
            Err(StoreError::InUse { path, lock }) => {
                assert_eq!(path, dir.path());
                assert_eq!(lock, dir.path().join("vpcd.lock"));
            }
            other => panic!("a second writer must be refused: {other:?}"),
        }
        let mut seen = std::collections::BTreeSet::new();
        for b in 0..200 {
            for i in 0..100 {
                w.put(record(&format!("b{b}-{i}"), "v"));
            }
            let changes = w.take_changes();
            s.commit(&w, &changes).unwrap();
            seen.insert(s.compaction());
            // A command opens its own connection, writes an account, reads
            // the World and closes, in whatever phase the server is.
            {
                let mut cli = crate::open(&crate::Location::Dir(dir.path().to_path_buf())).unwrap();
                cli.add_account(&format!("{:012}", b), &format!("AKIA{b:016}"), "secret")
                    .unwrap();
                assert_eq!(
                    contents(&cli.load().unwrap().world),
                    contents(&w),
                    "batch {b}"
                );
            }
            s.maintain().unwrap();
        }
        assert!(
            seen.contains(&Some(CompactionPhase::Build))
                && seen.contains(&Some(CompactionPhase::Cleanup)),
            "{seen:?}"
        );
        drop(s);
        let again = Store::open_writer(dir.path()).unwrap();
        assert_eq!(contents(&again.load_world().unwrap()), contents(&w));
    }

    /// The server's store: the journal compacts itself, a step at a time
    /// between commits, once it is long enough; a load in any phase reads
    /// exactly the committed World; checkpoints run in the background;
    /// closing compacts.
    #[test]
    fn the_writer_compacts_step_by_step_between_commits_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::default();
        let mut s = Store::open_writer(dir.path()).unwrap();
        let db = db_path(dir.path());
        let fresh = std::fs::metadata(&db).unwrap().len();
        let mut phases = vec![None];
        let mut steps = 0;
        // Batches of 100 records (some replacing or removing older ones),
        // past the compaction threshold and far enough for it to finish.
        for b in 0..200 {
            for i in 0..100 {
                w.put(record(&format!("b{b}-{i}"), "v"));
            }
            if b > 10 {
                w.put(record(&format!("b{}-0", b - 10), "again"));
                w.remove::<RegionInit>(&format!("b{}-1", b - 10));
            }
            let changes = w.take_changes();
            s.commit(&w, &changes).unwrap();
            if s.compaction().is_some() {
                steps += 1;
            }
            s.maintain().unwrap();
            if phases.last() != Some(&s.compaction()) {
                phases.push(s.compaction());
            }
            if b % 7 == 0 {
                assert_eq!(
                    contents(&s.load_world().unwrap()),
                    contents(&w),
                    "batch {b}"
                );
            }
            if b == 0 {
                // Commits never checkpoint on this connection; the
                // checkpointer copies the WAL into the database by itself.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while std::fs::metadata(&db).unwrap().len() < fresh + 4096 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no background checkpoint"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        assert_eq!(
            phases,
            [
                None,
                Some(CompactionPhase::Build),
                Some(CompactionPhase::Cleanup),
                None
            ]
        );
        assert!(steps > 20, "{steps} steps: the compaction ran in slices");
        // The journal holds what was committed after the compaction began;
        // `resources` holds the World as of then, and nothing else is left.
        assert!(s.journal_rows() < 200 * 102 - COMPACT_MIN_ROWS);
        let tables: Vec<String> = s
            .conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'resources%'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(tables, ["resources"]);
        assert_eq!(contents(&s.load_world().unwrap()), contents(&w));
        drop(s);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.journal_rows(), 0, "closing compacts");
        assert_eq!(contents(&reopened.load_world().unwrap()), contents(&w));
    }

    #[test]
    fn accounts_round_trip() {
        let dir = std::env::temp_dir().join(format!("vpcd-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir).unwrap();
        s.add_account("111111111111", "AKIA1", "secret1").unwrap();
        assert!(matches!(
            s.add_account("111111111111", "AKIA2", "x"),
            Err(StoreError::AccountExists(_))
        ));
        assert!(matches!(
            s.add_account("222222222222", "AKIA1", "x"),
            Err(StoreError::KeyExists(_))
        ));
        assert!(s.add_account("12", "AKIA3", "x").is_err());
        let list = s.list_accounts().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].keys[0].access_key_id, "AKIA1");
        assert_eq!(
            s.find_key("AKIA1").unwrap(),
            Some(("111111111111".into(), "secret1".into()))
        );
        assert_eq!(s.find_key("nope").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
