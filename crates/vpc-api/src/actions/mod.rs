//! One module per resource family: parse the parameters, call the model, render XML.
//!
//! Each family exposes `lookup(action) -> Option<Handler>`; [`lookup`] asks them in turn.

pub mod acl;
pub mod insights;
pub mod instance;
pub mod peering;
pub mod route;
pub mod sg;
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
}

impl Req<'_> {
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

/// The handler of an EC2 action, if vpcd implements it.
pub fn lookup(action: &str) -> Option<Handler> {
    vpc::lookup(action)
        .or_else(|| route::lookup(action))
        .or_else(|| sg::lookup(action))
        .or_else(|| acl::lookup(action))
        .or_else(|| peering::lookup(action))
        .or_else(|| instance::lookup(action))
        .or_else(|| insights::lookup(action))
}
