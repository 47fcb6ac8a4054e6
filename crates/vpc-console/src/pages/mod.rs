//! The console's pages, one module per family (as `vpc-api`'s actions are).

pub mod costs;
pub mod filtering;
pub mod flow_logs;
pub mod instances;
pub mod network;
pub mod peering;
pub mod reach;
pub mod routing;
