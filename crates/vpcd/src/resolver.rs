//! The Amazon-provided DNS server of every VPC, as `vpcd serve` and
//! `vpcd agent` both start it (`docs/dns.md`): one `vpc_dns::DnsService`
//! answering in each router namespace of this data-plane tag, from the World
//! its source returns.

use std::net::SocketAddr;
use vpc_dns::server::WorldSource;
use vpc_dns::{DnsConfig, DnsService, QueryHook};

/// Parses `--dns-upstream` (HOST:PORT).
pub fn upstream_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e} (expected HOST:PORT, e.g. 127.0.0.1:5353)"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

/// Starts the DNS servers of the router namespaces `vpcd<tag>-vpc-…` on
/// `rt`, answering from `source`; the caller calls `DnsService::changed`
/// after each World it publishes. Returns the service and the line the
/// start-up banner prints.
pub fn start(
    tag: &str,
    upstream: Option<SocketAddr>,
    on_query: Option<QueryHook>,
    source: WorldSource,
    rt: &tokio::runtime::Handle,
) -> (DnsService, String) {
    let service = DnsService::start(
        DnsConfig {
            tag: tag.to_string(),
            port: 53,
            upstream,
            on_query,
        },
        source,
        rt,
    );
    let outside = upstream.map_or("NXDOMAIN for other names".to_string(), |u| {
        format!("other names forwarded to {u}")
    });
    (
        service,
        format!(
            "on (base + 2, 169.254.169.253 and fd00:ec2::253 in each VPC router, UDP and TCP 53; {outside})"
        ),
    )
}
