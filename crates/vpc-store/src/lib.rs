//! Durable state for vpcd, behind one narrow interface with two backends.
//!
//! * [`sqlite::Store`]: one SQLite database (WAL) in a data directory, the
//!   default; one server writes it.
//! * [`etcd::EtcdStore`]: an etcd cluster (`--store etcd://HOST:PORT,…`),
//!   shared by several API servers under one key prefix.
//!
//! The interface ([`StateStore`]) knows nothing of resource types: it
//! commits a change list (the `(kind, id)` pairs an action touched, encoded
//! from the World), loads the whole World, and streams other writers'
//! commits ([`Update`]). A commit is guarded by the [`Revision`] the writer's
//! World was at: if another writer committed since, it fails with
//! [`StoreError::Conflict`] and nothing is written, so no update is ever
//! lost. Accounts, access keys and settings live in the store too.

pub mod clock;
pub mod etcd;
pub mod sqlite;
pub mod testkit;

pub use sqlite::{db_path, CompactionPhase, Store};

mod usage;
pub use usage::{CounterId, CounterValue};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vpc_model::usage::Usage;
use vpc_model::{Kind, Timestamp, World};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("stored {kind} record {id} is unreadable: {source}")]
    Decode {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
    /// Another writer committed after the revision this commit was based on;
    /// nothing was written.
    #[error("another server committed first (state at revision {base} is stale)")]
    Conflict { base: Revision },
    #[error("account {0} already exists")]
    AccountExists(String),
    #[error("access key {0} is already in use")]
    KeyExists(String),
    /// A guarded removal found this setting present; nothing was removed.
    #[error("setting {0} exists")]
    SettingPresent(String),
    /// Another process holds the data directory's writer lock.
    #[error("another vpcd server writes {path} (it holds {lock}); stop it first, or give another --data-dir")]
    InUse { path: PathBuf, lock: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the World is after a commit: etcd's revision of the last commit
/// (0 before the first); always 0 for SQLite, which has one writer.
pub type Revision = i64;

/// One account and its access keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub keys: Vec<AccessKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The whole stored World and where it is.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub world: World,
    /// The revision of the last commit it holds (the base of the next commit).
    pub revision: Revision,
    /// The store's own position when it was read: following starts after it.
    pub as_of: Revision,
}

/// What another writer did, in commit order.
#[derive(Debug, Clone)]
pub enum Update {
    /// One commit: records now stored (kind, id, body) and records removed.
    Commit {
        revision: Revision,
        put: Vec<(Kind, String, String)>,
        removed: Vec<(Kind, String)>,
    },
    /// A setting changed (e.g. the simulated clock's offset).
    Setting { key: String, value: String },
    /// A setting was removed (a host deregistered, or a liveness setting
    /// whose holder died: see [`StateStore::hold_setting`]).
    SettingRemoved { key: String },
    /// The stream lost its place (e.g. the store compacted past it): this is
    /// the whole state now.
    Reset(Box<Snapshot>),
}

impl Update {
    /// Applies a commit to `world`; errors if a stored body is unreadable.
    pub fn apply(
        world: &mut World,
        put: &[(Kind, String, String)],
        removed: &[(Kind, String)],
    ) -> Result<()> {
        for (kind, id) in removed {
            world.forget(*kind, id);
        }
        for (kind, id, body) in put {
            world
                .decode(*kind, body)
                .map_err(|source| StoreError::Decode {
                    kind: kind.name().to_string(),
                    id: id.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Whether this process holds a cluster-wide role (the clock work) now.
#[derive(Debug, Clone)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// A role held for good (a store with one writer).
    pub fn always() -> Leadership {
        Leadership(Arc::new(AtomicBool::new(true)))
    }

    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A setting kept on a lease ([`StateStore::hold_setting`]): renewed until
/// this is dropped.
#[derive(Debug)]
pub struct HeldSetting(Arc<AtomicBool>);

impl HeldSetting {
    pub(crate) fn new() -> (HeldSetting, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        (HeldSetting(stop.clone()), stop)
    }
}

impl Drop for HeldSetting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The store interface: the change-list commit, the load, the stream of
/// other writers' commits; and accounts, keys and settings.
pub trait StateStore: Send + std::fmt::Debug {
    /// Reads the whole stored state.
    fn load(&mut self) -> Result<Snapshot>;

    /// Writes the records `changes` names, as they are in `world` (absent
    /// ones are removed), all or nothing, if no other writer committed after
    /// `base`; otherwise writes nothing and fails with [`StoreError::Conflict`].
    /// Returns the new revision.
    fn commit(
        &mut self,
        base: Revision,
        world: &World,
        changes: &[(Kind, String)],
    ) -> Result<Revision>;

    /// Does one small step of the store's own upkeep (SQLite: compacting
    /// its journal), which must not hold commits for long; returns whether
    /// more is left. Called between commits, once the last one is answered.
    fn maintain(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Streams what other writers commit after `as_of` (a [`Snapshot::as_of`]);
    /// None when this store has no other writer.
    fn follow(&mut self, as_of: Revision) -> Result<Option<std::sync::mpsc::Receiver<Update>>>;

    /// Joins the election for the role `name` (e.g. the clock work) as
    /// `holder`; the flag follows whether this process holds it.
    fn campaign(&mut self, name: &str, holder: &str) -> Result<Leadership>;

    /// Adds an account with one access key.
    fn add_account(&mut self, id: &str, access_key_id: &str, secret: &str) -> Result<()>;
    fn list_accounts(&mut self) -> Result<Vec<Account>>;
    /// The (account, secret) behind an access key id.
    fn find_key(&mut self, access_key_id: &str) -> Result<Option<(String, String)>>;
    fn get_setting(&mut self, key: &str) -> Result<Option<String>>;
    fn set_setting(&mut self, key: &str, value: &str) -> Result<()>;
    /// Every setting whose key starts with `prefix` (e.g. `host/`, the
    /// agents' registrations), by key.
    fn settings_with_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>>;

    /// Sets `key` to `value` for as long as this process lives: on etcd the
    /// setting is on a lease of `ttl_secs` that a background task keeps
    /// alive, so when the process dies (or is cut off from etcd for longer
    /// than the lease) etcd removes it and every follower gets
    /// [`Update::SettingRemoved`]; a lost lease is replaced and the setting
    /// put again. Returns once the setting is stored. A store with one
    /// process (SQLite) has nobody to tell and refuses.
    /// Dropping the returned [`HeldSetting`] stops the renewals (the lease
    /// then lapses as if the process had died).
    fn hold_setting(&mut self, key: &str, value: &str, ttl_secs: i64) -> Result<HeldSetting>;

    /// Removes the settings `keys` (absent ones are skipped) and moves the
    /// commit marker, all at once, if no commit came after `base` and none
    /// of the settings `unless` exists; otherwise removes nothing and fails
    /// with [`StoreError::Conflict`] (a later commit: look again) or
    /// [`StoreError::SettingPresent`]. Moving the marker makes every commit
    /// built on an older World run again after its writer saw the removal.
    fn remove_settings(
        &mut self,
        base: Revision,
        keys: &[String],
        unless: &[String],
    ) -> Result<Revision>;

    /// Adds metered usage to the hourly sums and moves the counters'
    /// baselines (removing those in `forget`), all or nothing, so no byte is
    /// counted twice or lost across a restart (`docs/metering.md`). Several
    /// meters (one per host) may add to the same sums at once.
    fn record_usage(
        &mut self,
        usage: &[Usage],
        baselines: &BTreeMap<CounterId, CounterValue>,
        forget: &[CounterId],
    ) -> Result<()>;
    /// The recorded baseline of every counter whose namespace starts with
    /// `namespace_prefix` (one host's: its namespaces carry its tag).
    fn meter_baselines(
        &mut self,
        namespace_prefix: &str,
    ) -> Result<BTreeMap<CounterId, CounterValue>>;
    /// Hourly usage within `[from, to)`: one account's, or everyone's.
    fn usage(
        &mut self,
        account: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Usage>>;
}

/// Which backend holds the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// SQLite in this data directory.
    Dir(PathBuf),
    /// An etcd cluster: client endpoints (`http://host:port`) and the key
    /// prefix this vpcd's state lives under.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
        security: EtcdSecurity,
    },
}

/// How vpcd talks to etcd beyond plaintext: TLS (`etcds://` or the
/// `--etcd-ca/--etcd-cert/--etcd-key` flags) and etcd's user/password
/// authentication. The default is plaintext without authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSecurity {
    /// TLS to every member; `None` is plaintext.
    pub tls: Option<EtcdTls>,
    /// An etcd user (the cluster has `auth enable` on).
    pub user: Option<EtcdUser>,
}

/// TLS to etcd: the CA that signed the members' certificates, and the
/// client certificate and key when the members ask for one
/// (`--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// An etcd user and its password (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Location {
    /// `etcd://HOST:PORT[,HOST:PORT…]` (plaintext) or `etcds://…` (TLS; give
    /// the CA with [`Location::with_security`]) under `prefix`, or the data
    /// directory.
    pub fn parse(store: Option<&str>, data_dir: PathBuf, prefix: &str) -> Result<Location> {
        let Some(spec) = store.filter(|s| !s.is_empty() && *s != "sqlite") else {
            return Ok(Location::Dir(data_dir));
        };
        let (rest, tls) = if let Some(rest) = spec.strip_prefix("etcd://") {
            (rest, None)
        } else if let Some(rest) = spec.strip_prefix("etcds://") {
            (rest, Some(EtcdTls::default()))
        } else {
            return Err(StoreError::Invalid(format!(
                "--store {spec:?}: expected etcd://HOST:PORT[,HOST:PORT...], etcds://... or sqlite"
            )));
        };
        let endpoints: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_end_matches('/').to_string())
            .collect();
        if endpoints.is_empty() {
            return Err(StoreError::Invalid(format!(
                "--store {spec:?} names no endpoint"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || !prefix.starts_with('/') {
            return Err(StoreError::Invalid(format!(
                "store prefix {prefix:?} must start with '/' and name something, e.g. /vpcd"
            )));
        }
        let security = EtcdSecurity { tls, user: None };
        Ok(Location::Etcd {
            endpoints: endpoints_for(&endpoints, &security),
            prefix: prefix.to_string(),
            security,
        })
    }

    /// The same etcd location with TLS (when `tls` is given, whatever the
    /// scheme) and a user. Checks that the pieces fit: TLS needs the CA, a
    /// client certificate needs its key. The SQLite location takes neither.
    pub fn with_security(self, tls: Option<EtcdTls>, user: Option<EtcdUser>) -> Result<Location> {
        match self {
            Location::Dir(dir) => {
                if tls.is_some() || user.is_some() {
                    return Err(StoreError::Invalid(
                        "--etcd-ca/--etcd-cert/--etcd-key/--etcd-user apply to --store etcd://... only"
                            .into(),
                    ));
                }
                Ok(Location::Dir(dir))
            }
            Location::Etcd {
                endpoints,
                prefix,
                security,
            } => {
                let security = EtcdSecurity {
                    tls: tls.or(security.tls),
                    user: user.or(security.user),
                };
                if let Some(t) = &security.tls {
                    if t.ca.is_none() {
                        return Err(StoreError::Invalid(
                            "TLS to etcd needs --etcd-ca FILE (the CA that signed the etcd members' certificates)"
                                .into(),
                        ));
                    }
                    if t.cert.is_some() != t.key.is_some() {
                        return Err(StoreError::Invalid(
                            "a client certificate for etcd needs both --etcd-cert and --etcd-key"
                                .into(),
                        ));
                    }
                }
                let hosts: Vec<String> = endpoints
                    .iter()
                    .map(|e| {
                        e.split_once("://")
                            .map_or(e.as_str(), |(_, h)| h)
                            .to_string()
                    })
                    .collect();
                Ok(Location::Etcd {
                    endpoints: endpoints_for(&hosts, &security),
                    prefix,
                    security,
                })
            }
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Etcd { .. })
    }
}

/// Client URLs for `HOST:PORT`s (`https://` with TLS).
fn endpoints_for(hosts: &[String], security: &EtcdSecurity) -> Vec<String> {
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    hosts.iter().map(|h| format!("{scheme}://{h}")).collect()
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", db_path(d).display()),
            Location::Etcd {
                endpoints, prefix, ..
            } => {
                write!(f, "etcd {} under {prefix}", endpoints.join(","))
            }
        }
    }
}

/// The cluster's hosts as the store holds them: their registrations
/// (`host/<name>`) and which are live (`alive/<name>`).
pub fn host_directory(store: &mut dyn StateStore) -> Result<vpc_model::placement::HostDirectory> {
    use vpc_model::placement::{HostDirectory, ALIVE_KEY_PREFIX, HOST_KEY_PREFIX};
    let mut settings = store.settings_with_prefix(HOST_KEY_PREFIX)?;
    settings.extend(store.settings_with_prefix(ALIVE_KEY_PREFIX)?);
    Ok(HostDirectory::from_settings(&settings))
}

/// Opens the store at `location` for a command or a helper thread: in a
/// data directory, a plain connection ([`Store::open`]) that never compacts,
/// so it is safe beside the server that writes there. The server's own
/// store is [`open_writer`].
pub fn open(location: &Location) -> Result<Box<dyn StateStore>> {
    Ok(match location {
        Location::Dir(dir) => Box::new(Store::open(dir)?),
        Location::Etcd {
            endpoints,
            prefix,
            security,
        } => Box::new(etcd::EtcdStore::connect_with(endpoints, prefix, security)?),
    })
}

/// Opens the store the server commits through: in a data directory the one
/// writer ([`Store::open_writer`]: background checkpoints, compaction, and
/// the directory's writer lock, so a second server fails to start instead of
/// compacting beside the first); on etcd as [`open`].
pub fn open_writer(location: &Location) -> Result<Box<dyn StateStore>> {
    Ok(match location {
        Location::Dir(dir) => Box::new(Store::open_writer(dir)?),
        Location::Etcd {
            endpoints,
            prefix,
            security,
        } => Box::new(etcd::EtcdStore::connect_with(endpoints, prefix, security)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations_parse() {
        let dir = PathBuf::from("/d");
        assert_eq!(
            Location::parse(None, dir.clone(), "/vpcd").unwrap(),
            Location::Dir(dir.clone())
        );
        assert_eq!(
            Location::parse(Some("sqlite"), dir.clone(), "/vpcd").unwrap(),
            Location::Dir(dir.clone())
        );
        assert_eq!(
            Location::parse(
                Some("etcd://127.0.0.1:2379,127.0.0.1:2479"),
                dir.clone(),
                "/x/"
            )
            .unwrap(),
            Location::Etcd {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://127.0.0.1:2479".into()
                ],
                prefix: "/x".into(),
                security: EtcdSecurity::default(),
            }
        );
        // etcds:// needs the CA; a client certificate needs its key.
        let tls = Location::parse(Some("etcds://h:1"), dir.clone(), "/vpcd").unwrap();
        assert!(tls.clone().with_security(None, None).is_err());
        let ca = Some(EtcdTls {
            ca: Some("/ca.pem".into()),
            ..Default::default()
        });
        match tls.clone().with_security(ca.clone(), None).unwrap() {
            Location::Etcd {
                endpoints,
                security,
                ..
            } => {
                assert_eq!(endpoints, vec!["https://h:1".to_string()]);
                assert_eq!(security.tls, ca);
            }
            other => panic!("{other:?}"),
        }
        let half = Some(EtcdTls {
            ca: Some("/ca.pem".into()),
            cert: Some("/c.pem".into()),
            key: None,
        });
        assert!(tls.with_security(half, None).is_err());
        // The flags turn TLS on for etcd:// too; SQLite takes none of them.
        let plain = Location::parse(Some("etcd://h:1"), dir.clone(), "/vpcd").unwrap();
        match plain.with_security(ca.clone(), None).unwrap() {
            Location::Etcd { endpoints, .. } => {
                assert_eq!(endpoints, vec!["https://h:1".to_string()])
            }
            other => panic!("{other:?}"),
        }
        assert!(Location::Dir(dir.clone()).with_security(ca, None).is_err());
        assert!(Location::parse(Some("postgres://x"), dir.clone(), "/vpcd").is_err());
        assert!(Location::parse(Some("etcd://"), dir.clone(), "/vpcd").is_err());
        assert!(Location::parse(Some("etcd://h:1"), dir, "vpcd").is_err());
    }
}
