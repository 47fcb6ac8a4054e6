//! The actions, as pure functions over a [`World`](crate::World).
//!
//! Each function checks everything first and then mutates, but callers must
//! still treat a failed call's world as garbage: the API layer works on a
//! clone and publishes it only after the store commits the change list.

pub mod account_view;
pub mod acl;
pub mod cost;
pub mod defaults;
pub mod dhcp;
pub mod dns;
pub mod eigw;
pub mod eip;
pub mod endpoint;
pub mod eni;
#[cfg(test)]
mod fixture;
pub mod flow_log;
pub mod hostname;
pub mod igw;
pub mod image;
pub mod insights;
pub mod instance;
pub mod nat;
pub mod peering;
pub mod prefix_list;
pub mod public_params;
pub mod route;
pub mod route53;
pub mod sg;
pub mod sg_edit;
pub mod subnet;
pub mod subnet_cidr_reservation;
pub mod tags;
pub mod volume;
pub mod vpc;

use crate::fault::Fault;
use crate::ids;
use crate::types::{Meta, Tags};
use crate::Ctx;

/// How one resource type's IDs look and how AWS names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct IdKind {
    pub prefix: &'static str,
    pub malformed: &'static str,
    pub not_found: &'static str,
    /// The noun in `The <noun> ID '<id>' does not exist`.
    pub noun: &'static str,
}

impl IdKind {
    pub fn check(&self, id: &str) -> Result<(), Fault> {
        if self.prefix == "sg" && !ids::has_prefix("sg", id) {
            // AWS words this one differently from the other `Invalid id` errors.
            return Err(Fault::new(
                self.malformed,
                format!("The security group ID '{id}' is malformed"),
            ));
        }
        ids::check(self.prefix, self.malformed, id)
    }

    pub fn not_found(&self, id: &str) -> Fault {
        Fault::new(
            self.not_found,
            format!("The {} ID '{id}' does not exist", self.noun),
        )
    }

    /// Checks the shape, then returns a closure for the not-found error.
    pub fn nf<'a>(&self, id: &'a str) -> Result<impl FnOnce() -> Fault + 'a, Fault> {
        self.check(id)?;
        let k = *self;
        Ok(move || k.not_found(id))
    }
}

pub const VPC: IdKind = IdKind {
    prefix: "vpc",
    malformed: "InvalidVpcID.Malformed",
    not_found: "InvalidVpcID.NotFound",
    noun: "vpc",
};
pub const SUBNET: IdKind = IdKind {
    prefix: "subnet",
    malformed: "InvalidSubnetID.Malformed",
    not_found: "InvalidSubnetID.NotFound",
    noun: "subnet",
};
pub const ROUTE_TABLE: IdKind = IdKind {
    prefix: "rtb",
    malformed: "InvalidRouteTableId.Malformed",
    not_found: "InvalidRouteTableID.NotFound",
    noun: "routeTable",
};
pub const IGW: IdKind = IdKind {
    prefix: "igw",
    malformed: "InvalidInternetGatewayId.Malformed",
    not_found: "InvalidInternetGatewayID.NotFound",
    noun: "internetGateway",
};
pub const SG: IdKind = IdKind {
    prefix: "sg",
    malformed: "InvalidGroupId.Malformed",
    not_found: "InvalidGroup.NotFound",
    noun: "security group",
};
pub const ACL: IdKind = IdKind {
    prefix: "acl",
    malformed: "InvalidNetworkAclId.Malformed",
    not_found: "InvalidNetworkAclID.NotFound",
    noun: "networkAcl",
};
pub const PCX: IdKind = IdKind {
    prefix: "pcx",
    malformed: "InvalidVpcPeeringConnectionId.Malformed",
    not_found: "InvalidVpcPeeringConnectionID.NotFound",
    noun: "vpcPeeringConnection",
};

/// The security-group not-found message differs from the others.
pub fn sg_not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidGroup.NotFound",
        format!("The security group '{id}' does not exist"),
    )
}

/// A new resource's common fields.
pub fn new_meta(ctx: &mut Ctx<'_>, prefix: &str, tags: Tags) -> Meta {
    Meta {
        id: ctx.new_id(prefix),
        owner: ctx.account.clone(),
        region: ctx.region.clone(),
        tags,
        created: ctx.now,
    }
}

/// Fails with `code` when `count` has reached `limit`.
pub fn check_limit(
    count: usize,
    limit: usize,
    code: &'static str,
    what: &str,
) -> Result<(), Fault> {
    if count >= limit {
        Err(Fault::new(
            code,
            format!("The maximum number of {what} has been reached."),
        ))
    } else {
        Ok(())
    }
}

/// Applies every timed transition due at `now`: peerings, instances, NAT gateways.
pub fn tick(w: &mut crate::World, now: crate::Timestamp) -> bool {
    let a = peering::tick(w, now);
    let b = instance::tick(w, now);
    a || b
}

/// When the next timed transition of anything is due.
pub fn next_deadline(w: &crate::World) -> Option<crate::Timestamp> {
    peering::next_deadline(w)
        .into_iter()
        .chain(instance::next_deadline(w))
        .min()
}
