//! The reachability evaluator: can a packet get from a source to a
//! destination, hop by hop, and if not, every reason why.
//!
//! Pure and I/O-free like the rest of the core. It decides with the same
//! model functions the data plane compiles into the kernel (route lookup and
//! state, peering states, security-group and ACL semantics), so its verdict
//! and the kernel's agree; `tests/e2e` and the differential test check that
//! with real packets.
//!
//! # How it decides
//!
//! [`analyze`] walks the packet through the namespaces of `docs/dataplane.md`
//! exactly as the kernel would: the source instance's own routing (connected
//! subnets, else the default route through `eth0`), then per VPC router the
//! table its ingress link selects (the subnet's route table for an interface
//! or NAT gateway link, table 250 for a peering link: the VPC's own running
//! interfaces only, table 251 for the internet gateway after DNAT), the
//! longest-prefix match with the `local` route expanded to running
//! interfaces, and the `forward` chain in its order: guards (no transit, no
//! edge-to-edge, no private source out of the internet gateway),
//! source/destination check, network ACLs (only when the packet crosses a
//! subnet boundary; stateless), then the security groups of the source
//! interface (egress) and of the destination interface (ingress) for the new
//! connection. The simulated internet routes public IPs and IPv6 blocks of
//! VPCs with an internet gateway; a NAT gateway masquerades to its private
//! address and the router maps that to its Elastic IP.
//!
//! The reply is then walked back through every router the request crossed,
//! in reverse: it must be routed back out of the link the request came in by
//! (the route back from a peer VPC, or to the internet gateway), and pass the
//! network ACLs in both subnets again; security groups are stateful
//! (conntrack `established`) and are not consulted. Its destination port is
//! the client's ephemeral port: [`Options::source_port`] when given; otherwise
//! a network ACL must admit **every** port of Linux's default range
//! [`EPHEMERAL_PORTS`] (32768–60999), since the client's kernel may pick any
//! of them.
//!
//! Every blocker is reported: after one, the walk carries on as if the packet
//! had got through where that makes sense (a refused security group or ACL,
//! or a missing or blackholed route whose intended next hop is known: the
//! peering to the destination's VPC, the internet gateway), so a missing
//! route, a missing security-group rule and an ACL that refuses the return
//! traffic all show at once. It stops where nothing sensible follows (a
//! transitive or edge-to-edge path, disconnected VPCs).
//!
//! [`Index`] holds what a query needs to look things up without scanning the
//! [`World`] (interfaces by address, associations, peerings and gateways by
//! VPC, public-IP mappings); build it once per published world and use
//! [`analyze_with`]. [`matrix_with`] fills an all-pairs matrix over classes of
//! equivalent instances.

mod analysis;
mod diagnosis;
mod endpoints;
mod filter;
mod forward;
mod index;
mod matrix;
mod record;
mod reply;
#[cfg(test)]
mod tests;
mod text;
mod walk;

pub use analysis::*;
pub use index::Index;
pub use matrix::{matrix, matrix_with, Matrix};
pub use record::{analyze_path, freeze, query_of};
pub use text::rule_text;

use vpc_model::fault::Fault;
use vpc_model::world::World;
use walk::run;

/// Analyses one query over the world, as a local administrator sees it
/// (every account; the API layer checks that the caller owns the source).
///
/// Builds an [`Index`] first; callers answering many queries over one world
/// should build it once and use [`analyze_with`].
pub fn analyze(w: &World, q: &Query) -> Result<Analysis, Fault> {
    analyze_with(&Index::new(w), w, q)
}

/// [`analyze`] with a prebuilt index of `w`.
pub fn analyze_with(index: &Index, w: &World, q: &Query) -> Result<Analysis, Fault> {
    run(index, w, q, Options::default(), true)
}

/// [`analyze_with`] with [`Options`] (e.g. the probe's actual client port).
pub fn analyze_opts(index: &Index, w: &World, q: &Query, o: Options) -> Result<Analysis, Fault> {
    run(index, w, q, o, true)
}

/// Only the verdict of [`analyze_with`]: stops at the first blocker and
/// builds no path or explanation, for bulk use.
pub fn reachable_with(index: &Index, w: &World, q: &Query) -> Result<bool, Fault> {
    run(index, w, q, Options::default(), false).map(|a| a.reachable)
}
