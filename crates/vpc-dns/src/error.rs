//! Errors of the DNS service.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot enter network namespace {ns}: {source}")]
    Netns {
        ns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("socket thread: {0}")]
    Thread(String),
}

impl DnsError {
    /// A bind that failed because the namespace does not have the address
    /// yet (the reconciler adds it): worth trying again shortly.
    pub fn is_address_not_yet_there(&self) -> bool {
        matches!(self, DnsError::Bind { source, .. }
            if source.kind() == std::io::ErrorKind::AddrNotAvailable)
    }
}
