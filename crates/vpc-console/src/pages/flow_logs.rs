//! Flow logs: the signed-in account's flow logs in the region and their
//! recent records, filtered by interface and action. The records are read
//! back from the files the data plane's collector wrote under
//! `<data-dir>/flow-logs/` (`docs/metering.md`, "Files"): a flow log's own
//! S3-layout objects (its ID is in every key), or the lines of a local file
//! that belong to an interface the flow log covers (a local file may be
//! shared by several flow logs, of several accounts).

use crate::session::Viewer;
use crate::view::link;
use crate::{Console, PageReq};
use axum::response::Response;
use maud::{html, Markup};
use std::io::Read;
use std::path::{Path, PathBuf};
use vpc_model::ops::flow_log as model;
use vpc_model::{FlowLog, NetworkInterface, World};

/// How many records a flow log shows at most (the newest).
const RECENT: usize = 100;
/// How many of a flow log's newest S3 objects are read.
const RECENT_OBJECTS: usize = 24;

/// A flow log's records as written: the header's field names and the lines
/// split into fields, oldest first.
#[derive(Debug, Default)]
pub struct Records {
    pub fields: Vec<String>,
    pub lines: Vec<Vec<String>>,
}

impl Records {
    fn column(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == name)
    }
}

fn add_text(out: &mut Records, text: &str) {
    let mut it = text.lines();
    let Some(header) = it.next() else { return };
    let fields: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    if out.fields.is_empty() {
        out.fields = fields.clone();
    }
    // A local file keeps the header of the format it was first written in.
    if fields != out.fields {
        return;
    }
    for l in it.filter(|l| !l.trim().is_empty()) {
        out.lines
            .push(l.split_whitespace().map(str::to_string).collect());
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The records `fl` wrote under `flow_dir` (the data directory's
/// `flow-logs`) that belong to it: for `s3`, its newest objects (the keys
/// name the account, region and flow log ID); for a local file, the lines
/// whose `interface-id` is an interface of `w` that `fl` covers (none when
/// the format has no `interface-id`).
pub fn read_records(flow_dir: &Path, w: &World, fl: &FlowLog) -> std::io::Result<Records> {
    let mut out = Records::default();
    if fl.destination_type == "s3" {
        let (bucket, folder) =
            model::parse_s3_arn(&fl.destination).map_err(|e| std::io::Error::other(e.message))?;
        let (acct, region) = (&fl.meta.owner, &fl.meta.region);
        let mut dir = flow_dir.join("s3").join(bucket);
        if !folder.is_empty() {
            dir = dir.join(folder);
        }
        let dir = dir
            .join("AWSLogs")
            .join(acct)
            .join("vpcflowlogs")
            .join(region);
        let mut files = Vec::new();
        files_under(&dir, &mut files);
        let marker = format!("_{}_", fl.meta.id);
        let mut files: Vec<PathBuf> = files
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(&marker) && n.ends_with(".log.gz"))
            })
            .collect();
        // Date directories and the slot in the name sort by time.
        files.sort();
        let skip = files.len().saturating_sub(RECENT_OBJECTS);
        for p in &files[skip..] {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(p)?).read_to_string(&mut text)?;
            add_text(&mut out, &text);
        }
    } else {
        model::check_local_file(&fl.destination).map_err(|e| std::io::Error::other(e.message))?;
        let text = match std::fs::read_to_string(flow_dir.join("files").join(&fl.destination)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        add_text(&mut out, &text);
        let col = out.column("interface-id");
        out.lines.retain(|l| {
            col.and_then(|c| l.get(c))
                .and_then(|id| w.get::<NetworkInterface>(id))
                .is_some_and(|eni| model::covers(fl, eni))
        });
    }
    Ok(out)
}

fn section(fl: &FlowLog, rec: &Records, interface: &str, action: &str) -> Markup {
    let (ic, ac) = (rec.column("interface-id"), rec.column("action"));
    let keep = |l: &&Vec<String>| {
        let field = |c: Option<usize>| c.and_then(|c| l.get(c)).map_or("", String::as_str);
        (interface.is_empty() || field(ic) == interface)
            && (action.is_empty() || field(ac) == action)
    };
    let shown: Vec<&Vec<String>> = rec.lines.iter().filter(keep).collect();
    let skip = shown.len().saturating_sub(RECENT);
    html! {
        section.flow-log id={ "records-" (fl.meta.id) } {
            h2 { "Records of " (fl.meta.id) }
            @if shown.is_empty() {
                p.muted { "No records match (the collector writes each aggregation window when it closes)." }
            } @else {
                p.muted { (shown.len()) " matching; the newest " (shown.len() - skip) " shown." }
                table.flow-records {
                    thead { tr { @for f in &rec.fields { th { (f) } } } }
                    tbody { @for l in &shown[skip..] {
                        tr { @for x in l.iter() { td { (x) } } }
                    } }
                }
            }
        }
    }
}

pub fn page(c: &Console, v: &Viewer, r: &PageReq) -> Response {
    let (interface, action, only) = (r.q("interface"), r.q("action"), r.q("flow-log"));
    let action = if matches!(action, "ACCEPT" | "REJECT") {
        action
    } else {
        ""
    };
    let flow_dir = c.app.config.data_dir.join("flow-logs");
    let body = c
        .read(v, |w, ctx| {
            let mine: Vec<&FlowLog> = w.scoped::<FlowLog>(&ctx.account, &ctx.region).collect();
            if !only.is_empty() && !mine.iter().any(|f| f.meta.id == only) {
                return Err(vpc_model::Fault::new(
                    "InvalidFlowLogId.NotFound",
                    format!("The flow log ID '{only}' does not exist"),
                ));
            }
            let sections: Vec<Markup> = mine
                .iter()
                .filter(|f| only.is_empty() || f.meta.id == only)
                .map(|fl| match read_records(&flow_dir, w, fl) {
                    Ok(rec) => section(fl, &rec, interface, action),
                    Err(e) => {
                        tracing::warn!(error = %e, flow_log = %fl.meta.id, "console: cannot read flow-log records");
                        html! { p.error { "The records of " (fl.meta.id) " could not be read." } }
                    }
                })
                .collect();
            Ok(html! {
                p.muted { "Records come from the data plane (as root): conntrack for accepted flows, logged drops for rejected ones. See docs/metering.md." }
                @if mine.is_empty() {
                    p id="no-flow-logs" { "No flow logs in this region." }
                } @else {
                    table id="flow-logs" {
                        thead { tr { th { "Flow log ID" } th { "Resource" } th { "Traffic type" } th { "Destination" } th { "Interval (s)" } th { "Format" } } }
                        tbody { @for fl in &mine {
                            tr {
                                td { a href={ "/console/flow-logs?flow-log=" (fl.meta.id) } { (fl.meta.id) } }
                                td { @match fl.resource_type.as_str() {
                                    "VPC" => (link("vpcs", &fl.resource_id)),
                                    "Subnet" => (link("subnets", &fl.resource_id)),
                                    _ => (fl.resource_id),
                                } }
                                td { (fl.traffic_type) }
                                td { (fl.destination_type) ": " (fl.destination) }
                                td { (fl.max_aggregation_interval) }
                                td { code { (fl.log_format) } }
                            }
                        } }
                    }
                    form.row method="get" action="/console/flow-logs" {
                        @if !only.is_empty() { input type="hidden" name="flow-log" value=(only); }
                        label { "Interface " input name="interface" value=(interface) placeholder="eni-…"; }
                        label { "Action " select name="action" {
                            option value="" selected[action.is_empty()] { "any" }
                            option value="ACCEPT" selected[action == "ACCEPT"] { "ACCEPT" }
                            option value="REJECT" selected[action == "REJECT"] { "REJECT" }
                        } }
                        button type="submit" { "Filter" }
                    }
                    @for s in &sections { (s) }
                }
            })
        })
        .and_then(|x| x);
    c.render(v, "flow-logs", "Flow logs", body)
}
