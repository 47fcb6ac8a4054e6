//! The EC2 Query API layer of vpcd.
//!
//! This is the only crate that knows HTTP, XML and SigV4. It parses a request
//! into [`Params`], authenticates it, runs one model operation per action on a
//! copy of the [`World`](vpc_model::World), has the store commit the change
//! list, publishes the new world and renders the XML answer.

pub mod actions;
pub mod ce;
pub mod commit;
pub mod http;
pub mod metrics;
pub mod params;
pub mod query;
pub mod route53;
pub mod server;
pub mod sigv4;
pub mod ssm;
pub mod xml;

pub use http::HttpLimits;
pub use metrics::Metrics;
pub use params::Params;
pub use server::{App, Config};
