//! The Route 53 REST-XML API (2013-04-01) on the same endpoint: requests
//! signed for service `route53` are routed here by path and method.
//!
//! Hosted zones, record sets, VPC associations and their cross-account
//! authorizations, changes and zone tags. Parsing and rendering only: every
//! rule is in `vpc_model::ops::route53`.

use crate::server::{xml_response, App};
use crate::xml::{self, Xml};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use std::collections::HashMap;
use vpc_model::ops::route53::{self as r53, CreateZone, RecordChange};
use vpc_model::{AliasTarget, Ctx, Fault, HostedZone, RecordSet, Tag, World, ZoneChange, ZoneVpc};

const NS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const PREFIX: &str = "/2013-04-01";

/// The HTTP status Route 53 uses for an error code.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "NoSuchHostedZone"
        | "NoSuchChange"
        | "VPCAssociationNotFound"
        | "VPCAssociationAuthorizationNotFound"
        | "UnknownOperationException" => StatusCode::NOT_FOUND,
        "HostedZoneAlreadyExists" => StatusCode::CONFLICT,
        "NotAuthorizedException" => StatusCode::UNAUTHORIZED,
        "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error(f: &Fault, request_id: &str) -> Response {
    let mut out = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>"
    );
    xml::escape_into(&mut out, &f.code);
    out.push_str("</Code><Message>");
    xml::escape_into(&mut out, &f.message);
    out.push_str("</Message></Error><RequestId>");
    xml::escape_into(&mut out, request_id);
    out.push_str("</RequestId></ErrorResponse>");
    xml_response(status_for(&f.code), out, request_id)
}

fn invalid_input(message: impl Into<String>) -> Fault {
    Fault::new("InvalidInput", message)
}

/// A response document `<{op}Response xmlns=…>…</{op}Response>`.
struct Doc {
    op: &'static str,
    x: Xml,
    status: StatusCode,
    location: Option<String>,
}

impl Doc {
    fn new(op: &'static str) -> Doc {
        let mut x = Xml::default();
        x.out.push_str(&format!(
            "<?xml version=\"1.0\"?>\n<{op}Response xmlns=\"{NS}\">"
        ));
        Doc {
            op,
            x,
            status: StatusCode::OK,
            location: None,
        }
    }

    fn finish(mut self, request_id: &str) -> Response {
        self.x.out.push_str(&format!("</{}Response>", self.op));
        let mut r = xml_response(self.status, self.x.out, request_id);
        if let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            r.headers_mut().insert(header::LOCATION, l);
        }
        r
    }
}

// ---- request bodies ------------------------------------------------------------

/// A parsed request body.
struct Body<'a> {
    doc: roxmltree::Document<'a>,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or("").to_string())
}

impl<'a> Body<'a> {
    fn parse(s: &'a str, root: &str) -> Result<Body<'a>, Fault> {
        let doc = roxmltree::Document::parse(s)
            .map_err(|e| invalid_input(format!("Invalid XML: {e}")))?;
        if doc.root_element().tag_name().name() != root {
            return Err(invalid_input(format!(
                "Invalid XML: the root element must be {root}"
            )));
        }
        Ok(Body { doc })
    }

    fn root(&self) -> roxmltree::Node<'_, 'a> {
        self.doc.root_element()
    }
}

fn parse_vpc(n: Option<roxmltree::Node<'_, '_>>, default_region: &str) -> Result<ZoneVpc, Fault> {
    let n = n.ok_or_else(|| invalid_input("Invalid request: the VPC element is required"))?;
    let vpc_id =
        text(n, "VPCId").ok_or_else(|| invalid_input("Invalid request: VPCId is required"))?;
    Ok(ZoneVpc {
        region: text(n, "VPCRegion").unwrap_or_else(|| default_region.to_string()),
        vpc_id,
    })
}

fn parse_record(n: roxmltree::Node<'_, '_>) -> Result<RecordSet, Fault> {
    let name = text(n, "Name").ok_or_else(|| invalid_input("Invalid request: Name is required"))?;
    let rtype =
        text(n, "Type").ok_or_else(|| invalid_input("Invalid request: Type is required"))?;
    if child(n, "SetIdentifier").is_some()
        || child(n, "Weight").is_some()
        || child(n, "Failover").is_some()
    {
        return Err(invalid_input(
            "Routing policies (SetIdentifier, Weight, Region, Failover, GeoLocation, MultiValueAnswer) are not supported by vpcd",
        ));
    }
    let ttl = match text(n, "TTL") {
        Some(t) => Some(t.trim().parse::<u32>().ok().filter(|t| *t <= 2_147_483_647).ok_or_else(
            || invalid_input(format!("1 validation error detected: Value '{t}' at 'changeBatch.changes.member.resourceRecordSet.tTL' failed to satisfy constraint: Member must have value less than or equal to 2147483647")),
        )?),
        None => None,
    };
    let values = child(n, "ResourceRecords")
        .map(|rr| {
            children(rr, "ResourceRecord")
                .map(|r| text(r, "Value").unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let alias = match child(n, "AliasTarget") {
        Some(a) => Some(AliasTarget {
            hosted_zone_id: text(a, "HostedZoneId").unwrap_or_default(),
            dns_name: text(a, "DNSName")
                .and_then(|d| r53::normalize_name(&d))
                .ok_or_else(|| {
                    invalid_input("Invalid request: AliasTarget DNSName is not valid")
                })?,
            evaluate_target_health: text(a, "EvaluateTargetHealth").as_deref() == Some("true"),
        }),
        None => None,
    };
    Ok(RecordSet {
        name,
        rtype,
        ttl,
        values,
        alias,
    })
}

// ---- rendering -------------------------------------------------------------------

fn zone_path(id: &str) -> String {
    format!("/hostedzone/{id}")
}

fn render_zone(x: &mut Xml, z: &HostedZone) {
    x.open("HostedZone")
        .leaf("Id", &zone_path(&z.meta.id))
        .leaf("Name", &z.name)
        .leaf("CallerReference", &z.caller_reference)
        .open("Config");
    x.opt("Comment", z.comment.as_deref());
    x.bool("PrivateZone", z.private)
        .close("Config")
        .num("ResourceRecordSetCount", z.records.len())
        .close("HostedZone");
}

fn render_change(x: &mut Xml, c: &ZoneChange) {
    x.open("ChangeInfo")
        .leaf("Id", &format!("/change/{}", c.id))
        .leaf("Status", "INSYNC")
        .leaf("SubmittedAt", &xml::timestamp(c.submitted.0));
    x.opt("Comment", c.comment.as_deref());
    x.close("ChangeInfo");
}

fn render_delegation_set(x: &mut Xml) {
    x.open("DelegationSet").open("NameServers");
    for ns in r53::NAME_SERVERS {
        x.leaf("NameServer", ns.trim_end_matches('.'));
    }
    x.close("NameServers").close("DelegationSet");
}

fn render_vpc(x: &mut Xml, v: &ZoneVpc) {
    x.open("VPC")
        .leaf("VPCRegion", &v.region)
        .leaf("VPCId", &v.vpc_id)
        .close("VPC");
}

fn render_record(x: &mut Xml, r: &RecordSet) {
    x.open("ResourceRecordSet")
        .leaf("Name", &r.name)
        .leaf("Type", &r.rtype);
    if let Some(t) = r.ttl {
        x.num("TTL", t);
    }
    if !r.values.is_empty() {
        x.open("ResourceRecords");
        for v in &r.values {
            x.open("ResourceRecord")
                .leaf("Value", v)
                .close("ResourceRecord");
        }
        x.close("ResourceRecords");
    }
    if let Some(a) = &r.alias {
        x.open("AliasTarget")
            .leaf("HostedZoneId", &a.hosted_zone_id)
            .leaf("DNSName", &a.dns_name)
            .bool("EvaluateTargetHealth", a.evaluate_target_health)
            .close("AliasTarget");
    }
    x.close("ResourceRecordSet");
}

// ---- routing ------------------------------------------------------------------------

/// The last path segment of an ID as clients send it (`/hostedzone/Z…` or `Z…`).
fn bare(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

fn max_items(q: &HashMap<String, String>, name: &str) -> Result<usize, Fault> {
    match q.get(name) {
        None => Ok(100),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=300).contains(n))
            .map(|n| n.min(100))
            .ok_or_else(|| invalid_input(format!("Invalid value for {name}: {v}"))),
    }
}

/// Handles one authenticated Route 53 request; None when it must write and
/// may not block.
#[allow(clippy::too_many_arguments)]
pub fn handle(
    app: &App,
    method: &Method,
    uri: &Uri,
    body: &[u8],
    account: &str,
    region: &str,
    request_id: &str,
    may_block: bool,
) -> Option<Response> {
    if *method != Method::GET && !may_block {
        return None;
    }
    if !app.serves_region(region) {
        return Some(error(
            &Fault::new(
                "InvalidInput",
                format!("Credential should be scoped to a valid region, not '{region}'."),
            ),
            request_id,
        ));
    }
    let q: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let path = uri.path().strip_prefix(PREFIX).unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = std::str::from_utf8(body).unwrap_or("");
    let result = route(app, method, &segs, &q, body, account, region, request_id);
    Some(match result {
        Ok(doc) => doc.finish(request_id),
        Err(f) => error(&f, request_id),
    })
}

#[allow(clippy::too_many_arguments)]
fn route(
    app: &App,
    method: &Method,
    segs: &[&str],
    q: &HashMap<String, String>,
    body: &str,
    account: &str,
    region: &str,
    request_id: &str,
) -> Result<Doc, Fault> {
    let write = |f: &dyn Fn(&mut World, &mut Ctx<'_>) -> Result<Doc, Fault>| {
        app.write(account, region, |w, ctx| f(w, ctx), false)
    };
    let read = |f: &dyn Fn(&World, &Ctx<'_>) -> Result<Doc, Fault>| app.read(account, region, f);
    let _ = request_id;
    match (method.as_str(), segs) {
        ("POST", ["hostedzone"]) => {
            let b = Body::parse(body, "CreateHostedZoneRequest")?;
            let root = b.root();
            let config = child(root, "HostedZoneConfig");
            let req = CreateZone {
                name: text(root, "Name")
                    .ok_or_else(|| invalid_input("Invalid request: Name is required"))?,
                caller_reference: text(root, "CallerReference").unwrap_or_default(),
                comment: config.and_then(|c| text(c, "Comment")),
                private_zone: config
                    .and_then(|c| text(c, "PrivateZone"))
                    .map(|p| p == "true"),
                vpc: match child(root, "VPC") {
                    Some(v) => Some(parse_vpc(Some(v), region)?),
                    None => None,
                },
            };
            write(&|w, ctx| {
                let (z, c) = r53::create_zone(w, ctx, req.clone())?;
                let mut d = Doc::new("CreateHostedZone");
                render_zone(&mut d.x, &z);
                render_change(&mut d.x, &c);
                match z.vpcs.first() {
                    Some(v) => render_vpc(&mut d.x, v),
                    None => render_delegation_set(&mut d.x),
                }
                d.status = StatusCode::CREATED;
                d.location = Some(format!(
                    "https://route53.amazonaws.com/2013-04-01{}",
                    zone_path(&z.meta.id)
                ));
                Ok(d)
            })
        }
        ("GET", ["hostedzone"]) => read(&|w, ctx| {
            let max = max_items(q, "maxitems")?;
            let private_only = match q.get("hostedzonetype").map(String::as_str) {
                None => false,
                Some("PrivateHostedZone") => true,
                Some(other) => {
                    return Err(invalid_input(format!(
                        "Invalid value for hostedzonetype: {other}"
                    )))
                }
            };
            let marker = q.get("marker").map(|m| bare(m));
            let zones: Vec<&HostedZone> = r53::zones_of(w, &ctx.account)
                .filter(|z| !private_only || z.private)
                .filter(|z| marker.as_deref().is_none_or(|m| z.meta.id.as_str() >= m))
                .collect();
            let mut d = Doc::new("ListHostedZones");
            d.x.open("HostedZones");
            for z in zones.iter().take(max) {
                render_zone(&mut d.x, z);
            }
            d.x.close("HostedZones");
            if let Some(m) = &marker {
                d.x.leaf("Marker", m);
            }
            d.x.bool("IsTruncated", zones.len() > max);
            if let Some(next) = zones.get(max) {
                d.x.leaf("NextMarker", &next.meta.id);
            }
            d.x.num("MaxItems", max);
            Ok(d)
        }),
        ("GET", ["hostedzonesbyvpc"]) => read(&|w, ctx| {
            let vpc = ZoneVpc {
                vpc_id: q
                    .get("vpcid")
                    .cloned()
                    .ok_or_else(|| invalid_input("Invalid request: vpcid is required"))?,
                region: q
                    .get("vpcregion")
                    .cloned()
                    .ok_or_else(|| invalid_input("Invalid request: vpcregion is required"))?,
            };
            let owned = w
                .get::<vpc_model::Vpc>(&vpc.vpc_id)
                .is_some_and(|v| v.meta.owner == ctx.account && v.meta.region == vpc.region);
            if !owned {
                return Err(Fault::new(
                    "InvalidVPCId",
                    format!(
                        "The VPC ID '{}' is not valid in region {}.",
                        vpc.vpc_id, vpc.region
                    ),
                ));
            }
            let max = max_items(q, "maxitems")?;
            let mut d = Doc::new("ListHostedZonesByVPC");
            d.x.open("HostedZoneSummaries");
            for z in r53::zones_of_vpc(w, &vpc) {
                d.x.open("HostedZoneSummary")
                    .leaf("HostedZoneId", &z.meta.id)
                    .leaf("Name", &z.name)
                    .open("Owner")
                    .leaf("OwningAccount", &z.meta.owner)
                    .close("Owner")
                    .close("HostedZoneSummary");
            }
            d.x.close("HostedZoneSummaries").num("MaxItems", max);
            Ok(d)
        }),
        ("GET", ["hostedzone", id]) => read(&|w, ctx| {
            let z = r53::get(w, ctx, &bare(id))?;
            let mut d = Doc::new("GetHostedZone");
            render_zone(&mut d.x, z);
            if z.private {
                d.x.open("VPCs");
                for v in &z.vpcs {
                    render_vpc(&mut d.x, v);
                }
                d.x.close("VPCs");
            } else {
                render_delegation_set(&mut d.x);
            }
            Ok(d)
        }),
        ("POST", ["hostedzone", id]) => {
            let b = Body::parse(body, "UpdateHostedZoneCommentRequest")?;
            let comment = text(b.root(), "Comment");
            write(&|w, ctx| {
                let z = r53::update_comment(w, ctx, &bare(id), comment.clone())?;
                let mut d = Doc::new("UpdateHostedZoneComment");
                render_zone(&mut d.x, &z);
                Ok(d)
            })
        }
        ("DELETE", ["hostedzone", id]) => write(&|w, ctx| {
            let c = r53::delete_zone(w, ctx, &bare(id))?;
            let mut d = Doc::new("DeleteHostedZone");
            render_change(&mut d.x, &c);
            Ok(d)
        }),
        ("POST", ["hostedzone", id, "rrset", ..]) => {
            let b = Body::parse(body, "ChangeResourceRecordSetsRequest")?;
            let batch = child(b.root(), "ChangeBatch")
                .ok_or_else(|| invalid_input("Invalid request: ChangeBatch is required"))?;
            let comment = text(batch, "Comment");
            let mut changes = Vec::new();
            if let Some(cs) = child(batch, "Changes") {
                for c in children(cs, "Change") {
                    changes.push(RecordChange {
                        action: text(c, "Action").unwrap_or_default(),
                        record: parse_record(child(c, "ResourceRecordSet").ok_or_else(|| {
                            invalid_input("Invalid request: ResourceRecordSet is required")
                        })?)?,
                    });
                }
            }
            write(&|w, ctx| {
                let c = r53::change_records(w, ctx, &bare(id), changes.clone(), comment.clone())?;
                let mut d = Doc::new("ChangeResourceRecordSets");
                render_change(&mut d.x, &c);
                Ok(d)
            })
        }
        ("GET", ["hostedzone", id, "rrset"]) => read(&|w, ctx| {
            let z = r53::get(w, ctx, &bare(id))?;
            let max = max_items(q, "maxitems")?;
            let start_name = match q.get("name") {
                Some(n) => Some(
                    r53::normalize_name(n)
                        .ok_or_else(|| Fault::new("InvalidInput", format!("Invalid name: {n}")))?,
                ),
                None => None,
            };
            let start_type = q.get("type").cloned();
            if start_type.is_some() && start_name.is_none() {
                return Err(invalid_input(
                    "The input is not valid: type is specified without name",
                ));
            }
            let from = start_name.map(|n| {
                r53::record_order(&RecordSet {
                    name: n,
                    rtype: start_type.clone().unwrap_or_default(),
                    ttl: None,
                    values: vec![],
                    alias: None,
                })
            });
            let sets: Vec<&RecordSet> = z
                .records
                .iter()
                .filter(|r| from.as_ref().is_none_or(|f| r53::record_order(r) >= *f))
                .collect();
            let mut d = Doc::new("ListResourceRecordSets");
            d.x.open("ResourceRecordSets");
            for r in sets.iter().take(max) {
                render_record(&mut d.x, r);
            }
            d.x.close("ResourceRecordSets");
            d.x.bool("IsTruncated", sets.len() > max);
            if let Some(next) = sets.get(max) {
                d.x.leaf("NextRecordName", &next.name)
                    .leaf("NextRecordType", &next.rtype);
            }
            d.x.num("MaxItems", max);
            Ok(d)
        }),
        ("POST", ["hostedzone", id, op @ ("associatevpc" | "disassociatevpc")]) => {
            let root_name = if *op == "associatevpc" {
                "AssociateVPCWithHostedZoneRequest"
            } else {
                "DisassociateVPCFromHostedZoneRequest"
            };
            let b = Body::parse(body, root_name)?;
            let vpc = parse_vpc(child(b.root(), "VPC"), region)?;
            let comment = text(b.root(), "Comment");
            let associate = *op == "associatevpc";
            write(&|w, ctx| {
                let c = if associate {
                    r53::associate_vpc(w, ctx, &bare(id), vpc.clone(), comment.clone())?
                } else {
                    r53::disassociate_vpc(w, ctx, &bare(id), vpc.clone(), comment.clone())?
                };
                let mut d = Doc::new(if associate {
                    "AssociateVPCWithHostedZone"
                } else {
                    "DisassociateVPCFromHostedZone"
                });
                render_change(&mut d.x, &c);
                Ok(d)
            })
        }
        (
            "POST",
            ["hostedzone", id, op @ ("authorizevpcassociation" | "deauthorizevpcassociation")],
        ) => {
            let create = *op == "authorizevpcassociation";
            let b = Body::parse(
                body,
                if create {
                    "CreateVPCAssociationAuthorizationRequest"
                } else {
                    "DeleteVPCAssociationAuthorizationRequest"
                },
            )?;
            let vpc = parse_vpc(child(b.root(), "VPC"), region)?;
            write(&|w, ctx| {
                let zid = bare(id);
                if create {
                    r53::create_authorization(w, ctx, &zid, vpc.clone())?;
                    let mut d = Doc::new("CreateVPCAssociationAuthorization");
                    d.x.leaf("HostedZoneId", &zid);
                    render_vpc(&mut d.x, &vpc);
                    Ok(d)
                } else {
                    r53::delete_authorization(w, ctx, &zid, vpc.clone())?;
                    Ok(Doc::new("DeleteVPCAssociationAuthorization"))
                }
            })
        }
        ("GET", ["hostedzone", id, "authorizevpcassociation"]) => read(&|w, ctx| {
            let z = r53::get(w, ctx, &bare(id))?;
            let mut d = Doc::new("ListVPCAssociationAuthorizations");
            d.x.leaf("HostedZoneId", &z.meta.id).open("VPCs");
            for v in &z.authorizations {
                render_vpc(&mut d.x, v);
            }
            d.x.close("VPCs");
            Ok(d)
        }),
        ("GET", ["change", id]) => read(&|w, ctx| {
            let c = r53::get_change(w, ctx, &bare(id))?;
            let mut d = Doc::new("GetChange");
            render_change(&mut d.x, c);
            Ok(d)
        }),
        ("GET", ["tags", "hostedzone", id]) => read(&|w, ctx| {
            let z = r53::get(w, ctx, &bare(id))?;
            let mut d = Doc::new("ListTagsForResource");
            d.x.open("ResourceTagSet")
                .leaf("ResourceType", "hostedzone")
                .leaf("ResourceId", &z.meta.id)
                .open("Tags");
            for t in &z.meta.tags {
                d.x.open("Tag")
                    .leaf("Key", &t.key)
                    .leaf("Value", &t.value)
                    .close("Tag");
            }
            d.x.close("Tags").close("ResourceTagSet");
            Ok(d)
        }),
        ("POST", ["tags", "hostedzone", id]) => {
            let b = Body::parse(body, "ChangeTagsForResourceRequest")?;
            let add: Vec<Tag> = child(b.root(), "AddTags")
                .map(|a| {
                    children(a, "Tag")
                        .map(|t| Tag {
                            key: text(t, "Key").unwrap_or_default(),
                            value: text(t, "Value").unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let remove: Vec<String> = child(b.root(), "RemoveTagKeys")
                .map(|r| {
                    children(r, "Key")
                        .map(|k| k.text().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            write(&|w, ctx| {
                r53::change_tags(w, ctx, &bare(id), add.clone(), remove.clone())?;
                Ok(Doc::new("ChangeTagsForResource"))
            })
        }
        _ => Err(Fault::new(
            "UnknownOperationException",
            format!(
                "vpcd does not serve {} {}{}",
                method,
                PREFIX,
                "/".to_string() + &segs.join("/")
            ),
        )),
    }
}
