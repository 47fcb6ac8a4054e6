//! Account boundaries in Reachability Analyzer results: what one account may
//! see of an analysis that crosses into another account's VPC.
//!
//! AWS analyses across accounts only inside an AWS Organization whose
//! management account has enabled Reachability Analyzer's trusted access.
//! vpcd has no organizations, so no sharing rule lets one account see
//! another's configuration. A path may still cross a peering into another
//! account's VPC (its destination named by IP address), and the evaluator
//! walks the whole way; [`AccountView::redact`] is the one step that then
//! cuts the result down to what the analysis' owner could read with its own
//! `Describe*` calls:
//!
//! * its own resources, in full;
//! * the peering connections it is a party to, and the two VPCs each of them
//!   joins (`DescribeVpcPeeringConnections` shows both sides' VPC IDs to
//!   both sides), without the other side's tags;
//! * of everything else, only the kind of component: an [`AnalysisRef`]
//!   with no ID, no ARN and a `name` such as "the peer VPC's route table";
//!   the rule that admitted or refused the packet there (routes, group rules,
//!   ACL entries are that account's configuration) is dropped; and in the
//!   explanations' and diagnoses' sentences each such ID is replaced by the
//!   same description in brackets.
//!
//! It works on [`AnalysisResult`] as a whole (every [`AnalysisRef`], every
//! [`AnalysisRule`], every sentence), so an explanation or diagnosis added
//! to the evaluator later is covered without change here.

use super::insights::resource_type_of;
use crate::types::*;
use crate::world::World;
use std::collections::HashSet;

/// One account's view of the world, for redacting analysis results.
#[derive(Debug)]
pub struct AccountView<'w> {
    w: &'w World,
    account: &'w str,
    /// The peering connections the account is a party to.
    peerings: HashSet<&'w str>,
    /// The VPCs those peering connections join (the account's own and its peers').
    peering_vpcs: HashSet<&'w str>,
}

/// `<prefix>-` then 8 or 17 lowercase hex digits, for any lowercase prefix.
fn is_resource_id(s: &str) -> bool {
    let Some((prefix, hex)) = s.rsplit_once('-') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_lowercase())
        && (hex.len() == 8 || hex.len() == 17)
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How a sentence names a kind of component.
fn noun(kind: &str) -> &'static str {
    match kind {
        "instance" => "instance",
        "network-interface" => "network interface",
        "security-group" => "security group",
        "network-acl" => "network ACL",
        "route-table" => "route table",
        "vpc-peering-connection" => "VPC peering connection",
        "internet-gateway" => "internet gateway",
        "natgateway" => "NAT gateway",
        "subnet" => "subnet",
        "vpc" => "VPC",
        "elastic-ip" => "Elastic IP address",
        _ => "resource",
    }
}

impl<'w> AccountView<'w> {
    pub fn new(w: &'w World, account: &'w str) -> AccountView<'w> {
        let mut peerings = HashSet::new();
        let mut peering_vpcs = HashSet::new();
        for p in w
            .iter::<Peering>()
            .filter(|p| p.requester.owner == account || p.accepter.owner == account)
        {
            peerings.insert(p.id.as_str());
            peering_vpcs.insert(p.requester.vpc_id.as_str());
            peering_vpcs.insert(p.accepter.vpc_id.as_str());
        }
        AccountView {
            w,
            account,
            peerings,
            peering_vpcs,
        }
    }

    /// The owner of a resource the world holds, by ID.
    fn owner_of(&self, id: &str) -> Option<&'w str> {
        let w = self.w;
        let m: &Meta = match resource_type_of(id)? {
            "instance" => &w.get::<Instance>(id)?.meta,
            "network-interface" => &w.get::<NetworkInterface>(id)?.meta,
            "security-group" => &w.get::<SecurityGroup>(id)?.meta,
            "network-acl" => &w.get::<NetworkAcl>(id)?.meta,
            "route-table" => &w.get::<RouteTable>(id)?.meta,
            "internet-gateway" => &w.get::<InternetGateway>(id)?.meta,
            "natgateway" => &w.get::<NatGateway>(id)?.meta,
            "subnet" => &w.get::<Subnet>(id)?.meta,
            "vpc" => &w.get::<Vpc>(id)?.meta,
            "elastic-ip" => &w.get::<Address>(id)?.meta,
            "network-insights-path" => &w.get::<NetworkInsightsPath>(id)?.meta,
            "network-insights-analysis" => &w.get::<NetworkInsightsAnalysis>(id)?.meta,
            _ => return None,
        };
        Some(m.owner.as_str())
    }

    /// The VPC a resource lives in.
    fn vpc_of(&self, id: &str) -> Option<&'w str> {
        let w = self.w;
        Some(match resource_type_of(id)? {
            "instance" => w.get::<Instance>(id)?.vpc_id.as_str(),
            "network-interface" => w.get::<NetworkInterface>(id)?.vpc_id.as_str(),
            "security-group" => w.get::<SecurityGroup>(id)?.vpc_id.as_str(),
            "network-acl" => w.get::<NetworkAcl>(id)?.vpc_id.as_str(),
            "route-table" => w.get::<RouteTable>(id)?.vpc_id.as_str(),
            "internet-gateway" => w.get::<InternetGateway>(id)?.vpc_id.as_deref()?,
            "natgateway" => w.get::<NatGateway>(id)?.vpc_id.as_str(),
            "subnet" => w.get::<Subnet>(id)?.vpc_id.as_str(),
            _ => return None,
        })
    }

    /// Whether the account may see the resource with this ID. Anything that
    /// is not a resource ID (an address, `local`) is not withheld; an ID
    /// the world does not hold (any more) is, unless one of the account's
    /// own route tables names it (an egress-only gateway, say).
    pub fn sees(&self, id: &str) -> bool {
        if !is_resource_id(id) {
            return true;
        }
        match resource_type_of(id) {
            Some("vpc-peering-connection") => self.peerings.contains(id),
            Some("vpc") if self.peering_vpcs.contains(id) => true,
            Some(_) if self.owner_of(id).is_some() => self.owner_of(id) == Some(self.account),
            _ => self
                .w
                .iter::<RouteTable>()
                .filter(|rt| rt.meta.owner == self.account)
                .flat_map(|rt| &rt.routes)
                .any(|r| r.target.id() == Some(id)),
        }
    }

    /// What a withheld resource is, without naming it: "the peer VPC's
    /// route table" when it lies in a VPC at the other end of one of the
    /// account's peering connections, else "another account's route table".
    pub fn describe_withheld(&self, kind: &str, id: &str) -> String {
        let n = noun(resource_type_of(id).unwrap_or(kind));
        match self.vpc_of(id) {
            Some(v) if self.peering_vpcs.contains(v) => format!("the peer VPC's {n}"),
            _ => format!("another account's {n}"),
        }
    }

    /// A reference as the account may see it.
    pub fn redact_ref(&self, r: AnalysisRef) -> AnalysisRef {
        let Some(id) = r.id.as_deref() else {
            return r;
        };
        if !self.sees(id) {
            return AnalysisRef {
                name: Some(self.describe_withheld(&r.kind, id)),
                id: None,
                kind: r.kind,
                arn: None,
            };
        }
        if self.owner_of(id) == Some(self.account) {
            return r;
        }
        // Visible but not the account's own: a peering connection (named by
        // the account's own side's Name tag) or a peer's VPC (no tags).
        let name = match resource_type_of(id) {
            Some("vpc-peering-connection") => self.w.get::<Peering>(id).and_then(|p| {
                let side = if p.requester.owner == self.account {
                    &p.requester
                } else {
                    &p.accepter
                };
                side.tags
                    .iter()
                    .find(|t| t.key == "Name")
                    .map(|t| t.value.clone())
            }),
            _ => None,
        };
        AnalysisRef { name, ..r }
    }

    /// A rule as the account may see it: none when it is another account's
    /// route, group rule or ACL entry.
    pub fn redact_rule(&self, r: Option<AnalysisRule>) -> Option<AnalysisRule> {
        let owner_id = match r.as_ref()? {
            AnalysisRule::Route { route_table_id, .. } => route_table_id,
            AnalysisRule::SecurityGroupRule { group_id, .. } => group_id,
            AnalysisRule::AclEntry { acl_id, .. } => acl_id,
        };
        if self.sees(owner_id) {
            r
        } else {
            None
        }
    }

    /// A sentence with every withheld resource ID replaced by what it is, in
    /// brackets ("[the peer VPC's route table]").
    pub fn redact_text(&self, s: &str) -> String {
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-';
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while !rest.is_empty() {
            let start = rest.find(is_word).unwrap_or(rest.len());
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
            let word = &rest[..end];
            if self.sees(word) {
                out.push_str(word);
            } else {
                out.push('[');
                out.push_str(&self.describe_withheld("", word));
                out.push(']');
            }
            rest = &rest[end..];
        }
        out
    }

    fn redact_hop(&self, h: AnalysisHop) -> AnalysisHop {
        AnalysisHop {
            sequence: h.sequence,
            component: self.redact_ref(h.component),
            vpc: h.vpc.map(|r| self.redact_ref(r)),
            subnet: h.subnet.map(|r| self.redact_ref(r)),
            attached_to: h.attached_to.map(|r| self.redact_ref(r)),
            rule: self.redact_rule(h.rule),
        }
    }

    /// The analysis result as the account may see it (see the module docs).
    pub fn redact(&self, r: AnalysisResult) -> AnalysisResult {
        AnalysisResult {
            reachable: r.reachable,
            source_ip: r.source_ip,
            destination_ip: r.destination_ip,
            forward: r.forward.into_iter().map(|h| self.redact_hop(h)).collect(),
            ret: r.ret.into_iter().map(|h| self.redact_hop(h)).collect(),
            explanations: r
                .explanations
                .into_iter()
                .map(|e| AnalysisExplanation {
                    code: e.code,
                    component: self.redact_ref(e.component),
                    direction: e.direction,
                    rule: self.redact_rule(e.rule),
                    vpc: e.vpc.map(|v| self.redact_ref(v)),
                    subnet: e.subnet.map(|s| self.redact_ref(s)),
                    detail: self.redact_text(&e.detail),
                })
                .collect(),
            diagnoses: r
                .diagnoses
                .into_iter()
                .map(|d| AnalysisDiagnosis {
                    kind: d.kind,
                    message: self.redact_text(&d.message),
                    fix: self.redact_text(&d.fix),
                })
                .collect(),
        }
    }
}

// Tested with analyses the evaluator made: `crates/vpc-reach/tests/account_view.rs`.
