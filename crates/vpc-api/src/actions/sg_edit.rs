//! Editing security-group rules in place: ModifySecurityGroupRules and
//! UpdateSecurityGroupRuleDescriptionsIngress/Egress.

use super::sg::{permissions, target};
use super::{Handler, Req};
use vpc_model::ops::sg_edit::{self, RuleEdit};
use vpc_model::{Ctx, Fault, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("ModifySecurityGroupRules", Handler::Write(modify_rules)),
    (
        "UpdateSecurityGroupRuleDescriptionsIngress",
        Handler::Write(update_ingress),
    ),
    (
        "UpdateSecurityGroupRuleDescriptionsEgress",
        Handler::Write(update_egress),
    ),
];

fn modify_rules(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let group = r.p.req("GroupId")?.to_string();
    let mut edits = Vec::new();
    for e in r.p.indexed("SecurityGroupRule")? {
        e.allow_only(&["SecurityGroupRuleId", "SecurityGroupRule."])?;
        let body = e.sub("SecurityGroupRule");
        body.allow_only(&[
            "IpProtocol",
            "FromPort",
            "ToPort",
            "CidrIpv4",
            "CidrIpv6",
            "PrefixListId",
            "ReferencedGroupId",
            "Description",
        ])?;
        edits.push(RuleEdit {
            rule_id: e.req_member("SecurityGroupRuleId")?.to_string(),
            protocol: body.string("IpProtocol"),
            from_port: body.int("FromPort")?,
            to_port: body.int("ToPort")?,
            cidr_ipv4: body.string("CidrIpv4"),
            cidr_ipv6: body.string("CidrIpv6"),
            prefix_list_id: body.string("PrefixListId"),
            referenced_group_id: body.string("ReferencedGroupId"),
            description: body.string("Description"),
        });
    }
    sg_edit::modify_rules(w, ctx, &group, &edits)?;
    r.ok()
}

fn update(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>, egress: bool) -> Result<String, Fault> {
    let group = target(w, ctx, r.p, !egress)?;
    let perms = permissions(r.p)?;
    let mut by_id = Vec::new();
    for d in r.p.indexed("SecurityGroupRuleDescription")? {
        d.allow_only(&["SecurityGroupRuleId", "Description"])?;
        by_id.push((
            d.req_member("SecurityGroupRuleId")?.to_string(),
            d.string("Description"),
        ));
    }
    match (perms.is_empty(), by_id.is_empty()) {
        (false, false) => {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "The parameter SecurityGroupRuleDescriptions cannot be used with the parameter IpPermissions",
            ))
        }
        (true, true) => return Err(Fault::missing("IpPermissions")),
        (true, false) => sg_edit::update_descriptions_by_id(w, ctx, &group, egress, &by_id)?,
        (false, true) => sg_edit::update_descriptions(w, ctx, &group, egress, &perms)?,
    }
    r.ok()
}

fn update_ingress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    update(w, ctx, r, false)
}

fn update_egress(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    update(w, ctx, r, true)
}
