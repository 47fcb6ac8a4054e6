//! `--store` and `--store-prefix`: which backend holds the state.

use std::path::Path;
use vpc_store::Location;

/// Where state lives: SQLite in the data directory (the default) or an etcd
/// cluster shared by several servers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// `etcd://HOST:PORT[,HOST:PORT...]` to keep the state in an etcd cluster
    /// shared by several vpcd servers; `sqlite` (the default) for the data directory.
    #[arg(long, env = "VPCD_STORE")]
    pub store: Option<String>,
    /// The etcd key prefix this vpcd's state lives under (several vpcds can share one cluster).
    #[arg(long, env = "VPCD_STORE_PREFIX", default_value = "/vpcd")]
    pub store_prefix: String,
}

impl StoreArgs {
    pub fn location(&self, data_dir: &Path) -> anyhow::Result<Location> {
        Ok(Location::parse(
            self.store.as_deref(),
            data_dir.to_path_buf(),
            &self.store_prefix,
        )?)
    }
}
