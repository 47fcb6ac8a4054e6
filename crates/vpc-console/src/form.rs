//! How a console form becomes one EC2 action's parameters.
//!
//! Forms name EC2 parameters directly (`VpcId`, `CidrBlock`, …), so the action
//! handler parses and checks them exactly as for an API request. A few
//! console fields are shorthands that expand into EC2 parameters:
//!
//! * `Target` (route editor): `GatewayId=igw-…`, `VpcPeeringConnectionId=pcx-…`, …
//! * `Peer` (security-group rule editor): a CIDR, `sg-…` or `ACCOUNT/sg-…`.
//! * `SgPorts` / `AclPorts`: `22`, `1024-65535` or `-1`.
//! * `Name` with `NameType`: a `Name` tag at creation (`TagSpecification`).
//!
//! and some steer the console only: `csrf`, `next` (where to go after
//! success; `{id}` is the new resource's ID, read from the answer's `IdTag`
//! element), `back` (where to go after a failure), `Done` (the message).
//! Empty fields are left out, as an API client leaves out unset parameters.

use crate::session::Flash;
use vpc_model::Fault;

/// Route-target parameters a `Target` may name.
const TARGETS: &[&str] = &[
    "GatewayId",
    "NatGatewayId",
    "VpcPeeringConnectionId",
    "NetworkInterfaceId",
    "InstanceId",
    "EgressOnlyInternetGatewayId",
];

/// One parsed action form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionForm {
    pub params: Vec<(String, String)>,
    pub next: String,
    pub back: String,
    pub id_tag: Option<String>,
    pub done: Option<String>,
}

/// A path inside the console to redirect to; anything else is the console's home.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/console/".to_string(),
    }
}

/// `22` → (22, 22); `1024-65535` → (1024, 65535); `-1` → (-1, -1).
fn port_range(v: &str) -> Result<(String, String), String> {
    let v = v.trim();
    if v == "-1" {
        return Ok(("-1".into(), "-1".into()));
    }
    let (a, b) = v.split_once('-').unwrap_or((v, v));
    let (a, b) = (a.trim(), b.trim());
    if a.parse::<i32>().is_err() || b.parse::<i32>().is_err() {
        return Err(format!(
            "The port range '{v}' is not a port (22), a range (1024-65535) or -1."
        ));
    }
    Ok((a.to_string(), b.to_string()))
}

impl ActionForm {
    pub fn parse(form: &[(String, String)]) -> Result<ActionForm, String> {
        let mut out = ActionForm {
            params: Vec::new(),
            next: "/console/".into(),
            back: "/console/".into(),
            id_tag: None,
            done: None,
        };
        let mut name: Option<&str> = None;
        let mut name_type: Option<&str> = None;
        let mut next = None;
        let mut back = None;
        let mut push = |k: &str, v: &str| out.params.push((k.to_string(), v.to_string()));
        for (k, v) in form {
            let v = v.trim();
            match k.as_str() {
                "csrf" => {}
                "next" => next = Some(v),
                "back" => back = Some(v),
                "IdTag" => out.id_tag = Some(v.to_string()),
                "Done" => out.done = Some(v.to_string()),
                "Name" => name = Some(v),
                "NameType" => name_type = Some(v),
                _ if v.is_empty() => {}
                "Target" => {
                    let (param, id) = v
                        .split_once('=')
                        .filter(|(p, _)| TARGETS.contains(p))
                        .ok_or_else(|| format!("'{v}' is not a route target."))?;
                    push(param, id);
                }
                "Peer" => {
                    let p = "IpPermissions.1.";
                    if let Some((user, group)) =
                        v.split_once('/').filter(|(_, g)| g.starts_with("sg-"))
                    {
                        push(&format!("{p}Groups.1.UserId"), user);
                        push(&format!("{p}Groups.1.GroupId"), group);
                    } else if v.starts_with("sg-") {
                        push(&format!("{p}Groups.1.GroupId"), v);
                    } else if v.contains(':') {
                        push(&format!("{p}Ipv6Ranges.1.CidrIpv6"), v);
                    } else {
                        push(&format!("{p}IpRanges.1.CidrIp"), v);
                    }
                }
                "SgPorts" => {
                    let (a, b) = port_range(v)?;
                    push("IpPermissions.1.FromPort", &a);
                    push("IpPermissions.1.ToPort", &b);
                }
                "AclPorts" => {
                    let (a, b) = port_range(v)?;
                    push("PortRange.From", &a);
                    push("PortRange.To", &b);
                }
                _ => push(k, v),
            }
        }
        if let (Some(n), Some(t)) = (name.filter(|n| !n.is_empty()), name_type) {
            push("TagSpecification.1.ResourceType", t);
            push("TagSpecification.1.Tag.1.Key", "Name");
            push("TagSpecification.1.Tag.1.Value", n);
        }
        if !out.params.iter().any(|(k, _)| k == "Action") {
            return Err("The form names no action.".into());
        }
        out.next = safe_next(next);
        out.back = safe_next(back.or(next));
        Ok(out)
    }

    fn action(&self) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == "Action")
            .map_or("", |(_, v)| v.as_str())
    }

    /// The message to show and where to go, from the action's outcome.
    pub fn outcome(&self, outcome: Result<String, Fault>) -> (Flash, String) {
        match outcome {
            Ok(xml) => {
                let id = self
                    .id_tag
                    .as_deref()
                    .and_then(|t| element_text(&xml, t))
                    .unwrap_or_default();
                let mut text = self
                    .done
                    .clone()
                    .unwrap_or_else(|| format!("{} succeeded.", self.action()));
                if !id.is_empty() {
                    text = format!("{text} {id}");
                }
                let link = (self.action() == "AcceptVpcPeeringConnection").then(|| {
                    // The accepter's VPC: its route tables are the ones to edit.
                    let vpc = xml
                        .find("<accepterVpcInfo>")
                        .and_then(|i| element_text(&xml[i..], "vpcId"))
                        .filter(|v| {
                            v.starts_with("vpc-")
                                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    (
                        match vpc {
                            Some(v) => format!("/console/route-tables?vpc={v}"),
                            None => "/console/route-tables".to_string(),
                        },
                        "Modify my route tables now".to_string(),
                    )
                });
                let to = safe_next(Some(
                    &self.next.replace("%7Bid%7D", &id).replace("{id}", &id),
                ));
                (
                    Flash {
                        ok: true,
                        text,
                        link,
                    },
                    to,
                )
            }
            Err(f) => (
                Flash {
                    ok: false,
                    text: format!("{}: {}", f.code, f.message),
                    link: None,
                },
                self.back.clone(),
            ),
        }
    }
}

/// The text of the first `<tag>` element of an answer (IDs only: no entities expected).
pub fn element_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find('<')? + start;
    Some(xml[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn shorthands_expand_into_ec2_parameters() {
        let f = ActionForm::parse(&pairs(&[
            ("csrf", "t"),
            ("Action", "AuthorizeSecurityGroupIngress"),
            ("GroupId", "sg-1"),
            ("IpPermissions.1.IpProtocol", "tcp"),
            ("SgPorts", "1024-65535"),
            ("Peer", "222222222222/sg-2"),
            ("next", "/console/security-groups/sg-1"),
        ]))
        .unwrap();
        assert_eq!(
            f.params,
            pairs(&[
                ("Action", "AuthorizeSecurityGroupIngress"),
                ("GroupId", "sg-1"),
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", "1024"),
                ("IpPermissions.1.ToPort", "65535"),
                ("IpPermissions.1.Groups.1.UserId", "222222222222"),
                ("IpPermissions.1.Groups.1.GroupId", "sg-2"),
            ])
        );
        let f = ActionForm::parse(&pairs(&[
            ("Action", "CreateRoute"),
            ("Target", "VpcPeeringConnectionId=pcx-1"),
            ("DestinationCidrBlock", "10.1.0.0/16"),
            ("NatGatewayId", ""),
            ("Name", ""),
            ("NameType", "vpc"),
        ]))
        .unwrap();
        assert_eq!(
            f.params,
            pairs(&[
                ("Action", "CreateRoute"),
                ("VpcPeeringConnectionId", "pcx-1"),
                ("DestinationCidrBlock", "10.1.0.0/16"),
            ])
        );
    }

    #[test]
    fn a_name_becomes_a_tag_specification() {
        let f = ActionForm::parse(&pairs(&[
            ("Action", "CreateVpc"),
            ("Name", "<b>x</b>"),
            ("NameType", "vpc"),
        ]))
        .unwrap();
        assert!(f
            .params
            .contains(&("TagSpecification.1.Tag.1.Value".into(), "<b>x</b>".into())));
    }

    #[test]
    fn bad_shorthands_and_foreign_redirects_are_refused() {
        assert!(
            ActionForm::parse(&pairs(&[("Action", "CreateRoute"), ("Target", "Evil=x")])).is_err()
        );
        assert!(ActionForm::parse(&pairs(&[("Action", "X"), ("SgPorts", "a-b")])).is_err());
        assert!(ActionForm::parse(&pairs(&[("VpcId", "vpc-1")])).is_err());
        assert_eq!(safe_next(Some("https://evil.example/")), "/console/");
        assert_eq!(safe_next(Some("/console//evil.example")), "/console/");
        assert_eq!(
            safe_next(Some("/console/vpcs/vpc-1")),
            "/console/vpcs/vpc-1"
        );
    }

    #[test]
    fn accepting_offers_the_accepters_route_tables() {
        let f = ActionForm::parse(&pairs(&[
            ("Action", "AcceptVpcPeeringConnection"),
            ("VpcPeeringConnectionId", "pcx-1"),
            ("next", "/console/peering/pcx-1"),
        ]))
        .unwrap();
        let xml = "<r><vpcPeeringConnection><requesterVpcInfo><vpcId>vpc-aaa</vpcId></requesterVpcInfo><accepterVpcInfo><ownerId>2</ownerId><vpcId>vpc-bbb</vpcId></accepterVpcInfo></vpcPeeringConnection></r>";
        let (flash, to) = f.outcome(Ok(xml.to_string()));
        assert!(flash.ok);
        assert_eq!(to, "/console/peering/pcx-1");
        assert_eq!(
            flash.link,
            Some((
                "/console/route-tables?vpc=vpc-bbb".into(),
                "Modify my route tables now".into()
            ))
        );
        let (flash, to) = f.outcome(Err(Fault::new("X", "no")));
        assert!(!flash.ok && flash.text == "X: no" && to == "/console/peering/pcx-1");
    }

    #[test]
    fn the_new_id_is_read_from_the_answer() {
        let xml = "<CreateVpcResponse><vpc><vpcId>vpc-0abc</vpcId></vpc></CreateVpcResponse>";
        assert_eq!(element_text(xml, "vpcId").as_deref(), Some("vpc-0abc"));
        assert_eq!(element_text(xml, "subnetId"), None);
    }
}
