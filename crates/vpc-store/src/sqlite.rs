//! The SQLite backend: one database (WAL) in the data directory.
//!
//! Resources are stored one row per record, as JSON, keyed by (kind, id). An
//! API action's whole change list is written in one transaction, and the
//! server answers only after `COMMIT` returns with `synchronous=FULL`, so
//! every acknowledged write survives `kill -9` and no half-applied action is
//! ever visible. Accounts and their access keys live in their own tables so
//! that `vpcd account add` can write them while a server runs. One server
//! writes a data directory, so commits never conflict.

use crate::{AccessKey, Account, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use vpc_model::{Kind, World};

/// The database file inside a data directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("vpcd.db")
}

#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
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
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::usage::SCHEMA)?;
        Ok(Store { conn })
    }

    /// Reads every stored resource into a fresh world.
    pub fn load_world(&self) -> Result<World> {
        let mut w = World::default();
        let mut stmt = self.conn.prepare("SELECT kind, id, body FROM resources")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let id: String = row.get(1)?;
            let body: String = row.get(2)?;
            let Some(k) = Kind::from_name(&kind) else {
                return Err(StoreError::Invalid(format!(
                    "unknown record kind {kind} for {id}"
                )));
            };
            w.decode(k, &body)
                .map_err(|source| StoreError::Decode { kind, id, source })?;
        }
        Ok(w)
    }

    /// Writes one action's changes in a single transaction.
    pub fn commit(&mut self, world: &World, changes: &[(Kind, String)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut up = tx.prepare_cached(
                "INSERT INTO resources (kind, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            )?;
            let mut del = tx.prepare_cached("DELETE FROM resources WHERE kind = ?1 AND id = ?2")?;
            for (kind, id) in changes {
                match world.encode(*kind, id) {
                    Some(body) => up.execute(params![kind.name(), id, body])?,
                    None => del.execute(params![kind.name(), id])?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds an account with one access key.
    pub fn add_account(&mut self, id: &str, access_key_id: &str, secret: &str) -> Result<()> {
        check_account(id, access_key_id, secret)?;
        let tx = self.conn.transaction()?;
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
