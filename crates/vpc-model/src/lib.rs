//! The pure semantics core of vpcd.
//!
//! This crate knows the resource model (VPCs, subnets, route tables, gateways,
//! security groups, network ACLs, peering connections, tags), the rules AWS
//! applies to them (validation, quotas, the peering state machine and its
//! timers), and derived views (route state, peering visibility). It performs
//! no I/O: time and randomness come in through [`Ctx`], and persistence is
//! someone else's job (the store records the change list a [`World`] keeps).
//!
//! Every failure is a [`Fault`]: an AWS error code plus its message.

pub mod cidr;
pub mod ctx;
pub mod dns_types;
pub mod fault;
pub mod ids;
pub mod instance_types;
pub mod ops;
pub mod placement;
pub mod region;
pub mod rule_match;
pub mod types;
pub mod usage;
pub mod world;

pub use ctx::{Ctx, IdSource, Limits, Timestamp};
pub use dns_types::*;
pub use fault::Fault;
pub use types::*;
pub use world::{Kind, Record, Table, World};
