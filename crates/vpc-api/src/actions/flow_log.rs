//! VPC flow logs: CreateFlowLogs, DescribeFlowLogs, DeleteFlowLogs.
//!
//! The records live in [`vpc_model::ops::flow_log`]; the data plane's
//! collector writes the files (`docs/metering.md`). `LogDestinationType`
//! takes AWS's `s3` and vpcd's `local-file`.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::{timestamp, Xml};
use vpc_model::ops::flow_log::{self as model, CreateFlowLogs};
use vpc_model::{Ctx, Fault, FlowLog, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateFlowLogs", Handler::Write(create_flow_logs)),
    ("DescribeFlowLogs", Handler::Read(describe_flow_logs)),
    ("DeleteFlowLogs", Handler::Write(delete_flow_logs)),
];

fn unsuccessful(x: &mut Xml, items: &[(String, Fault)]) {
    x.set("unsuccessful", items, |x, (id, e)| {
        x.open("error")
            .leaf("code", &e.code)
            .leaf("message", &e.message)
            .close("error")
            .leaf("resourceId", id);
    });
}

fn create_flow_logs(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let req = CreateFlowLogs {
        resource_ids: p.list("ResourceId")?,
        resource_type: p.string("ResourceType"),
        traffic_type: p.string("TrafficType"),
        destination_type: p.string("LogDestinationType"),
        destination: p.string("LogDestination"),
        log_group_name: p.string("LogGroupName"),
        deliver_logs_permission_arn: p.string("DeliverLogsPermissionArn"),
        log_format: p.string("LogFormat"),
        max_aggregation_interval: p.int("MaxAggregationInterval")?,
        tags: p.tag_specs("vpc-flow-log")?,
        client_token: p.string("ClientToken"),
    };
    let token = req.client_token.clone();
    let out = model::create(w, ctx, req)?;
    let mut x = r.xml();
    x.opt("clientToken", token.as_deref());
    x.set("flowLogIdSet", &out.flow_logs, |x, f| {
        crate::xml::escape_into(&mut x.out, &f.meta.id);
    });
    unsuccessful(&mut x, &out.unsuccessful);
    r.done(x)
}

const FILTERS: &[&str] = &[
    "deliver-log-status",
    "log-destination-type",
    "flow-log-id",
    "log-group-name",
    "resource-id",
    "traffic-type",
];

fn field(f: &&FlowLog, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "deliver-log-status" => one("SUCCESS"),
        "log-destination-type" => one(&f.destination_type),
        "flow-log-id" => one(&f.meta.id),
        "log-group-name" => Some(Vec::new()),
        "resource-id" => one(&f.resource_id),
        "traffic-type" => one(&f.traffic_type),
        _ => tag_field(&f.meta.tags, name),
    }
}

fn render(x: &mut Xml, f: &FlowLog) {
    x.leaf("creationTime", &timestamp(f.meta.created.0))
        .leaf("deliverLogsStatus", "SUCCESS")
        .leaf("flowLogId", &f.meta.id)
        .leaf("flowLogStatus", "ACTIVE")
        .leaf("resourceId", &f.resource_id)
        .leaf("trafficType", &f.traffic_type)
        .leaf("logDestinationType", &f.destination_type)
        .leaf("logDestination", &f.destination)
        .leaf("logFormat", &f.log_format)
        .num("maxAggregationInterval", f.max_aggregation_interval);
    if f.destination_type == "s3" {
        x.open("destinationOptions")
            .leaf("fileFormat", "plain-text")
            .bool("hiveCompatiblePartitions", false)
            .bool("perHourPartition", false)
            .close("destinationOptions");
    }
    x.tags(&f.meta.tags);
}

fn describe_flow_logs(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("FlowLogId")?;
    let items: Vec<&FlowLog> = w
        .scoped::<FlowLog>(&ctx.account, &ctx.region)
        .filter(|f| ids.is_empty() || ids.contains(&f.meta.id))
        .collect();
    let items = query::apply(items, &r.p.filters()?, &field, FILTERS)?;
    let key = |f: &&FlowLog| f.meta.id.clone();
    let (page, next) = query::paginate(items, r.p, key, 1, 1000)?;
    let mut x = r.xml();
    x.set("flowLogSet", page, render);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn delete_flow_logs(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("FlowLogId")?;
    let failed = model::delete(w, ctx, &ids)?;
    let mut x = r.xml();
    unsuccessful(&mut x, &failed);
    r.done(x)
}
