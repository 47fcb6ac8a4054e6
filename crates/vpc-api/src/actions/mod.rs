//! One module per resource family: parse the parameters, call the model, render XML.
//!
//! Each family exposes `ACTIONS`, its action names with their handlers;
//! [`lookup`] and [`all_actions`] are both driven by those lists, so they cannot drift.

pub mod acl;
pub mod address;
pub mod compute;
pub mod defaults;
pub mod dhcp;
pub mod eigw;
pub mod endpoint;
pub mod flow_log;
pub mod insights;
pub mod instance;
pub mod peering;
pub mod prefix_list;
pub mod route;
pub mod sg;
pub mod sg_edit;
pub mod subnet_cidr_reservation;
pub mod vpc;

use crate::params::Params;
use crate::xml::Xml;
use vpc_model::region::Regions;
use vpc_model::{Ctx, Fault, World};

/// One request as a handler sees it.
#[derive(Debug)]
pub struct Req<'a> {
    pub p: &'a Params,
    pub action: &'a str,
    pub request_id: &'a str,
    pub regions: &'a Regions,
    /// The hosts agents registered and which are live, as this server's
    /// store follower keeps them (empty on one host). RunInstances places
    /// with it; an instance's host is shown as its `Placement.HostId`.
    pub hosts: &'a HostsCell,
}

/// The cluster's hosts as one server sees them now. A write reads it on
/// each run, so a run repeated after a conflict sees what the follower
/// brought meanwhile (a host removed, a lease lapsed).
pub type HostsCell = std::sync::RwLock<std::sync::Arc<vpc_model::placement::HostDirectory>>;

impl Req<'_> {
    /// The hosts as the follower has them at this moment.
    pub fn hosts_now(&self) -> std::sync::Arc<vpc_model::placement::HostDirectory> {
        self.hosts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A response body for this action, with `requestId` written.
    pub fn xml(&self) -> Xml {
        Xml::response(self.action, self.request_id)
    }

    pub fn done(&self, x: Xml) -> Result<String, Fault> {
        Ok(x.finish(self.action))
    }

    /// `<return>true</return>`
    pub fn ok(&self) -> Result<String, Fault> {
        let mut x = self.xml();
        x.bool("return", true);
        self.done(x)
    }
}

pub type ReadFn = fn(&World, &Ctx<'_>, &Req<'_>) -> Result<String, Fault>;
pub type WriteFn = fn(&mut World, &mut Ctx<'_>, &Req<'_>) -> Result<String, Fault>;

/// A read works on the published world; a write on a copy that the store commits.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    Read(ReadFn),
    Write(WriteFn),
}

/// The action lists of every family, in lookup order.
const FAMILIES: &[&[(&str, Handler)]] = &[
    vpc::ACTIONS,
    route::ACTIONS,
    sg::ACTIONS,
    acl::ACTIONS,
    peering::ACTIONS,
    instance::ACTIONS,
    address::ACTIONS,
    compute::ACTIONS,
    insights::ACTIONS,
    prefix_list::ACTIONS,
    endpoint::ACTIONS,
    eigw::ACTIONS,
    sg_edit::ACTIONS,
    defaults::ACTIONS,
    flow_log::ACTIONS,
    dhcp::ACTIONS,
    subnet_cidr_reservation::ACTIONS,
];

/// The handler of an EC2 action, if vpcd implements it.
pub fn lookup(action: &str) -> Option<Handler> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .find(|(name, _)| *name == action)
        .map(|(_, handler)| *handler)
}

/// The name of every EC2 action vpcd implements, in lookup order.
pub fn all_actions() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        FAMILIES
            .iter()
            .flat_map(|family| family.iter().map(|(name, _)| *name))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_listed_action_resolves_and_none_is_listed_twice() {
        let names = all_actions();
        let distinct: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(distinct.len(), names.len(), "an action is listed twice");
        for name in names {
            assert!(
                lookup(name).is_some(),
                "{name} is listed but does not resolve"
            );
        }
        // Well-known actions from every family are in the list.
        for name in [
            "CreateVpc",
            "CreateRoute",
            "AuthorizeSecurityGroupIngress",
            "CreateNetworkAclEntry",
            "AcceptVpcPeeringConnection",
            "RunInstances",
            "StartNetworkInsightsAnalysis",
        ] {
            assert!(distinct.contains(name), "{name} missing from all_actions");
        }
    }

    #[test]
    fn lookup_knows_no_action_outside_the_list() {
        assert!(lookup("NoSuchAction").is_none());
        assert!(lookup("").is_none());
        // Case matters, as in EC2.
        assert!(lookup("createvpc").is_none());
        // Whatever lookup resolves is a listed name: try every listed name's
        // neighbours (a character dropped, a suffix added) as well.
        let listed: BTreeSet<&str> = all_actions().iter().copied().collect();
        for name in all_actions() {
            for candidate in [&name[1..], &format!("{name}s"), &format!("{name}X")] {
                if lookup(candidate).is_some() {
                    assert!(
                        listed.contains(candidate),
                        "{candidate} resolves but is not listed"
                    );
                }
            }
        }
    }
}
