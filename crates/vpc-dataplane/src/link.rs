//! The peering link type: a veth today, an encrypted tunnel (userspace
//! WireGuard over TUN) later. The reconciler addresses and routes over the
//! link by name; how the two ends come into being is this trait's business.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::plan::PeeringLinkSpec;

/// Makes and removes the link between two routers of an active peering.
pub trait PeeringLinkType: std::fmt::Debug + Send + Sync {
    /// A short name for logs, e.g. `veth`.
    fn name(&self) -> &'static str;

    /// Creates both ends: `local_name` in `local_ns` and `remote_name` in
    /// `remote_ns`, both with `mtu`. The reconciler then adds the link-local
    /// addresses, brings the ends up and routes over them. Called only when
    /// the local end is missing.
    fn create(&self, run: &Runner, spec: &PeeringLinkSpec) -> Result<(), CommandError>;

    /// Removes an end that is no longer planned (and whatever belongs to it).
    /// An end that is already gone is not an error.
    fn delete(&self, run: &Runner, ns: &str, name: &str) -> Result<(), CommandError>;

    /// Called after every reconcile with every peering link the plan holds
    /// (the link's requester end), so a link type with running parts (the
    /// encrypted backbone's tunnels) can start, adopt or stop them. Failures
    /// are the link type's to log and retry.
    fn converge(&self, _run: &Runner, _wanted: &[&PeeringLinkSpec]) {}
}

/// A veth pair created directly across the two router namespaces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Veth;

impl PeeringLinkType for Veth {
    fn name(&self) -> &'static str {
        "veth"
    }

    fn create(&self, run: &Runner, spec: &PeeringLinkSpec) -> Result<(), CommandError> {
        run.create_veth(
            &spec.local_ns,
            &spec.local_name,
            &spec.remote_ns,
            &spec.remote_name,
            spec.mtu,
        )
    }

    fn delete(&self, run: &Runner, ns: &str, name: &str) -> Result<(), CommandError> {
        run.delete_link(ns, name).map(|_| ())
    }
}
