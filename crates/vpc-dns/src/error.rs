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
