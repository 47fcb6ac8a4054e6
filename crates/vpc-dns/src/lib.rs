//! The Amazon-provided DNS server of every VPC (`docs/dns.md`).
//!
//! * [`zone`] is pure: from a [`World`](vpc_model::World) and the querying
//!   VPC it decides what a name resolves to, with the rules of
//!   `vpc_model::ops::dns` (which names exist, split horizon, what crosses a
//!   peering). No I/O, no wire format.
//! * [`server`] serves it: one request handler per VPC, on UDP and TCP port
//!   53 at base + 2, 169.254.169.253 and fd00:ec2::253 inside the VPC's
//!   router namespace, answering only queries from inside that VPC; TCP
//!   through hickory-dns's server, UDP through `udp` (a thread per socket
//!   that receives, answers and sends with no task hand-off, remembering
//!   encoded answers per World in `cache`).
//!
//! The data plane puts the addresses on the router's `lo` and writes the
//! instances' `resolv.conf`; this crate only listens and answers.

mod cache;
pub mod error;
pub mod server;
mod udp;
pub mod zone;

#[cfg(test)]
#[path = "../../vpc-dataplane/src/testkit.rs"]
mod testkit;

pub use error::DnsError;
pub use server::{DnsConfig, DnsService, QueryHook};
