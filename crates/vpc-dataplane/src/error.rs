//! Errors, one enum per operation area.

/// A kernel operation: a netlink request, a namespace or sysctl file, or
/// one of the tools (`nft`, `conntrack`).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("could not run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{cmd}` failed (exit code {}): {stderr}", code.map_or("none (signal)".to_string(), |c| c.to_string()))]
    Failed {
        cmd: String,
        code: Option<i32>,
        stderr: String,
    },
    /// It succeeded but printed something we could not read.
    #[error("`{cmd}`: unexpected output: {detail}")]
    Output { cmd: String, detail: String },
    /// A link that should have existed did not.
    #[error("namespace {ns}: link {link} is missing")]
    MissingLink { ns: String, link: String },
}

/// Starting the data plane ([`Dataplane::new`](crate::Dataplane::new)).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the data plane must run as root (effective uid {0}); run vpcd as root or pass --no-dataplane")]
    NotRoot(u32),
    #[error("cannot determine the effective uid: {0}")]
    Uid(String),
    #[error("`{0}` not found (the data plane needs iproute2, nftables, conntrack, procps and util-linux)")]
    MissingTool(&'static str),
    #[error("invalid data-plane tag {0:?}: expected 1 to 8 lowercase letters or digits")]
    BadTag(String),
}

/// Applying a plan ([`Dataplane::reconcile`](crate::Dataplane::reconcile)).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// `ip netns` could not be listed, so nothing was attempted.
    #[error("listing network namespaces: {0}")]
    List(#[source] std::io::Error),
    /// Some namespaces failed; the others were applied. The failed ones are
    /// applied in full on the next reconcile.
    #[error("{} namespace(s) failed: {}", .0.len(), summary(.0))]
    Namespaces(Vec<(String, CommandError)>),
}

/// Removing everything a data directory created ([`teardown`](crate::teardown)).
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("listing network namespaces: {0}")]
    List(#[source] std::io::Error),
    #[error("{} namespace(s) could not be deleted: {}", .0.len(), summary(.0))]
    Namespaces(Vec<(String, CommandError)>),
}

/// Any data-plane failure.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
}

fn summary(v: &[(String, CommandError)]) -> String {
    v.iter()
        .map(|(ns, e)| format!("{ns}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}
