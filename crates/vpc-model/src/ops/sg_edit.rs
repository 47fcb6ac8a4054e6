//! Editing security-group rules in place: ModifySecurityGroupRules (a
//! rule's body replaced, its `sgr-` ID kept) and
//! UpdateSecurityGroupRuleDescriptionsIngress/Egress (descriptions only).

use super::sg::{
    expand, get, matches, reference, reference_for_revoke, rule_label, rules_of, same_peer,
    PairSpec, Permission, Source,
};
use crate::fault::{Fault, Result};
use crate::ids;
use crate::types::*;
use crate::world::World;
use crate::Ctx;

/// One `SecurityGroupRule.N` of ModifySecurityGroupRules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleEdit {
    pub rule_id: String,
    pub protocol: Option<String>,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
    pub cidr_ipv4: Option<String>,
    pub cidr_ipv6: Option<String>,
    pub prefix_list_id: Option<String>,
    pub referenced_group_id: Option<String>,
    pub description: Option<String>,
}

fn rule_id_not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidSecurityGroupRuleId.NotFound",
        format!("The security group rule ID '{id}' does not exist"),
    )
}

/// The permission one edit describes: exactly one source or destination.
fn permission(e: &RuleEdit) -> Result<Permission> {
    let source = |v: &Option<String>| {
        v.iter()
            .map(|value| Source {
                value: value.clone(),
                description: e.description.clone(),
            })
            .collect::<Vec<_>>()
    };
    let p = Permission {
        protocol: e.protocol.clone(),
        from_port: e.from_port,
        to_port: e.to_port,
        ipv4: source(&e.cidr_ipv4),
        ipv6: source(&e.cidr_ipv6),
        prefix_lists: source(&e.prefix_list_id),
        groups: e
            .referenced_group_id
            .iter()
            .map(|g| PairSpec {
                group_id: Some(g.clone()),
                description: e.description.clone(),
                ..PairSpec::default()
            })
            .collect(),
    };
    let n = p.ipv4.len() + p.ipv6.len() + p.prefix_lists.len() + p.groups.len();
    if n > 1 {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "Only one of CidrIpv4, CidrIpv6, PrefixListId and ReferencedGroupId may be specified.",
        ));
    }
    Ok(p)
}

/// ModifySecurityGroupRules: each rule's protocol, ports, peer and
/// description are replaced; its ID, direction and tags stay.
pub fn modify_rules(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    edits: &[RuleEdit],
) -> Result<()> {
    let mut g = get(w, ctx, group_id)?.clone();
    if edits.is_empty() {
        return Err(Fault::missing("SecurityGroupRule"));
    }
    for e in edits {
        ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", &e.rule_id)?;
        let egress = if g.ingress.iter().any(|r| r.id == e.rule_id) {
            false
        } else if g.egress.iter().any(|r| r.id == e.rule_id) {
            true
        } else {
            return Err(rule_id_not_found(&e.rule_id));
        };
        let perm = permission(e)?;
        let cands = {
            let own = g.clone();
            expand(&[perm], |pair| reference(w, ctx, &own, pair).map(Some))?
        };
        let Some(Some((protocol, from_port, to_port, peer, description))) =
            cands.into_iter().next()
        else {
            return Err(Fault::missing("SecurityGroupRule"));
        };
        if let SgPeer::PrefixList(list) = &peer {
            super::prefix_list::visible(w, ctx, list)?;
        }
        let others = rules_of(&g, egress).iter().filter(|r| r.id != e.rule_id);
        let cand = (
            protocol.clone(),
            from_port,
            to_port,
            peer.clone(),
            description.clone(),
        );
        if others.clone().any(|r| matches(r, &cand)) {
            return Err(Fault::new(
                "InvalidPermission.Duplicate",
                format!(
                    "the specified rule \"{}\" already exists",
                    rule_label(&protocol, from_port, to_port, &peer)
                ),
            ));
        }
        let rules = if egress {
            &mut g.egress
        } else {
            &mut g.ingress
        };
        if let Some(r) = rules.iter_mut().find(|r| r.id == e.rule_id) {
            r.protocol = protocol;
            r.from_port = from_port;
            r.to_port = to_port;
            r.peer = peer;
            r.description = description;
        }
    }
    // A rule turned into one naming a prefix list counts its MaxEntries.
    let limit = ctx.limits.rules_per_security_group;
    if super::sg::over_rule_quota(w, &g, limit)
        && !super::sg::over_rule_quota(w, get(w, ctx, group_id)?, limit)
    {
        return Err(Fault::new(
            "RulesPerSecurityGroupLimitExceeded",
            "The maximum number of rules per security group has been reached.",
        ));
    }
    w.put(g);
    Ok(())
}

/// UpdateSecurityGroupRuleDescriptions* by permissions: each source names a
/// rule (matched on everything but the description) whose description
/// becomes the one given, or none when omitted.
pub fn update_descriptions(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    egress: bool,
    perms: &[Permission],
) -> Result<()> {
    let mut g = get(w, ctx, group_id)?.clone();
    let cands = {
        let own = g.clone();
        expand(perms, |pair| {
            Ok(
                reference_for_revoke(w, ctx, &own, pair)?.map(|id| SgPeer::Group {
                    group_id: id,
                    user_id: String::new(),
                    vpc_id: None,
                    peering_id: None,
                }),
            )
        })?
    };
    let rules = if egress {
        &mut g.egress
    } else {
        &mut g.ingress
    };
    for c in &cands {
        let Some(c) = c else {
            return Err(no_such_rule());
        };
        let r = rules
            .iter_mut()
            .find(|r| {
                r.protocol == c.0
                    && r.from_port == c.1
                    && r.to_port == c.2
                    && same_peer(&r.peer, &c.3)
            })
            .ok_or_else(no_such_rule)?;
        r.description = c.4.clone().filter(|d| !d.is_empty());
    }
    w.put(g);
    Ok(())
}

/// UpdateSecurityGroupRuleDescriptions* by rule ID.
pub fn update_descriptions_by_id(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    group_id: &str,
    egress: bool,
    descriptions: &[(String, Option<String>)],
) -> Result<()> {
    let mut g = get(w, ctx, group_id)?.clone();
    let rules = if egress {
        &mut g.egress
    } else {
        &mut g.ingress
    };
    for (id, d) in descriptions {
        ids::check("sgr", "InvalidSecurityGroupRuleId.Malformed", id)?;
        if let Some(d) = d {
            if d.chars().count() > 255 {
                return Err(Fault::invalid_param(format!(
                    "Value ({d}) for parameter description is invalid. Length exceeds maximum of 255 characters."
                )));
            }
        }
        let r = rules
            .iter_mut()
            .find(|r| &r.id == id)
            .ok_or_else(|| rule_id_not_found(id))?;
        r.description = d.clone().filter(|d| !d.is_empty());
    }
    w.put(g);
    Ok(())
}

fn no_such_rule() -> Fault {
    Fault::new(
        "InvalidPermission.NotFound",
        "The specified rule does not exist in this security group",
    )
}
