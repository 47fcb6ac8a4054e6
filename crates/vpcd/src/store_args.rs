//! `--store` and `--store-prefix`: which backend holds the state; and how
//! vpcd reaches a secured etcd (TLS files, etcd user).

use anyhow::Context;
use std::path::{Path, PathBuf};
use vpc_model::{Timestamp, World};
use vpc_store::{EtcdTls, EtcdUser, Location, StateStore, Store};

/// Where state lives: SQLite in the data directory (the default) or an etcd
/// cluster shared by several servers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// `etcd://HOST:PORT[,HOST:PORT...]` to keep the state in an etcd cluster
    /// shared by several vpcd servers (`etcds://...` for TLS); `sqlite` (the
    /// default) for the data directory.
    #[arg(long, env = "VPCD_STORE")]
    pub store: Option<String>,
    /// The etcd key prefix this vpcd's state lives under (several vpcds can share one cluster).
    #[arg(long, env = "VPCD_STORE_PREFIX", default_value = "/vpcd")]
    pub store_prefix: String,
    /// PEM file of the CA that signed the etcd members' certificates; turns
    /// TLS to etcd on.
    #[arg(long, env = "VPCD_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd members run with `--client-cert-auth`
    /// (with --etcd-key).
    #[arg(
        long,
        env = "VPCD_ETCD_CERT",
        value_name = "FILE",
        requires = "etcd_key"
    )]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(
        long,
        env = "VPCD_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    pub etcd_key: Option<PathBuf>,
    /// etcd user to log in as (etcd `auth enable`); the password comes from
    /// the environment variable VPCD_ETCD_PASSWORD or --etcd-password-file,
    /// never from the command line.
    #[arg(long, env = "VPCD_ETCD_USER", value_name = "USER")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password (its first line).
    #[arg(
        long,
        env = "VPCD_ETCD_PASSWORD_FILE",
        value_name = "FILE",
        requires = "etcd_user"
    )]
    pub etcd_password_file: Option<PathBuf>,
}

/// The environment variable that carries the etcd user's password.
const PASSWORD_ENV: &str = "VPCD_ETCD_PASSWORD";

impl StoreArgs {
    pub fn location(&self, data_dir: &Path) -> anyhow::Result<Location> {
        let location = Location::parse(
            self.store.as_deref(),
            data_dir.to_path_buf(),
            &self.store_prefix,
        )?;
        let tls = (self.etcd_ca.is_some() || self.etcd_cert.is_some()).then(|| EtcdTls {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        });
        Ok(location.with_security(tls, self.etcd_user()?)?)
    }

    /// Opens the state for a command that only reads it: the data
    /// directory's SQLite file (which must exist: a reader never creates
    /// one) or the etcd cluster of `--store`.
    pub fn open_reader(&self, data_dir: &Path) -> anyhow::Result<Box<dyn StateStore>> {
        let location = self.location(data_dir)?;
        Ok(match &location {
            Location::Dir(dir) => {
                if !vpc_store::db_path(dir).exists() {
                    anyhow::bail!(
                        "no vpcd state in {} (no vpcd.db); give the server's --data-dir, or --store for a cluster",
                        dir.display()
                    );
                }
                Box::new(Store::open(dir).with_context(|| format!("opening {}", dir.display()))?)
            }
            Location::Etcd { .. } => {
                let mut store =
                    vpc_store::open(&location).with_context(|| format!("opening {location}"))?;
                // A mistyped --store-prefix would otherwise read as an empty
                // cluster (no usage, no instances) instead of failing.
                if store.load()?.revision == 0 && store.list_accounts()?.is_empty() {
                    anyhow::bail!(
                        "no vpcd state in {location}: nothing was ever written under prefix {}; check --store-prefix",
                        self.store_prefix
                    );
                }
                store
            }
        })
    }

    fn etcd_user(&self) -> anyhow::Result<Option<EtcdUser>> {
        let Some(name) = self.etcd_user.clone() else {
            return Ok(None);
        };
        let password = match &self.etcd_password_file {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("--etcd-password-file {}", file.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            None => std::env::var(PASSWORD_ENV).map_err(|_| {
                anyhow::anyhow!(
                    "--etcd-user {name} needs its password in {PASSWORD_ENV} or --etcd-password-file FILE"
                )
            })?,
        };
        Ok(Some(EtcdUser { name, password }))
    }
}

/// Now on the store's clock: the wall clock plus the offset a test clock
/// (`serve --test-clock`) recorded in the store.
pub fn store_now(store: &mut dyn StateStore) -> anyhow::Result<Timestamp> {
    let offset = vpc_store::clock::stored_offset_ms(store)?;
    Ok(vpc_store::clock::now_with_offset(offset))
}

/// The stored World with every timer due by now applied (what an API
/// server would answer from).
pub fn load_current_world(store: &mut dyn StateStore) -> anyhow::Result<World> {
    let mut world = store.load().context("reading the stored state")?.world;
    let now = store_now(store)?;
    vpc_model::ops::tick(&mut world, now);
    Ok(world)
}
