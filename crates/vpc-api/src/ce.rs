//! Cost Explorer (`ce`, AWS JSON 1.1): `GetCostAndUsage` over the caller's
//! own metered usage, priced by `vpc_model::ops::cost` (`docs/metering.md`).
//!
//! Only the wire format lives here: the request is parsed into a
//! [`CostQuery`], and the answer is written as botocore's
//! `GetCostAndUsageResponse` shape.

use serde_json::{json, Map, Value};
use vpc_model::ops::cost::{self, Amount, CostQuery, Expression, Granularity, Period};
use vpc_model::usage::Date;
use vpc_model::Fault;

/// The `X-Amz-Target` prefix of Cost Explorer.
pub const TARGET_PREFIX: &str = "AWSInsightsIndexService.";

fn validation(msg: impl Into<String>) -> Fault {
    Fault::new("ValidationException", msg)
}

fn string<'a>(v: &'a Value, field: &str) -> Result<Option<&'a str>, Fault> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(validation(format!("{field} must be a string"))),
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, Fault> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| validation(format!("{field} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(validation(format!("{field} must be a list"))),
    }
}

fn date(v: &Value, field: &str) -> Result<Date, Fault> {
    let s =
        string(v, field)?.ok_or_else(|| validation(format!("TimePeriod.{field} is required")))?;
    Date::parse(s).ok_or_else(|| {
        validation(format!(
            "{field} date {s} is not valid: expected the format YYYY-MM-DD"
        ))
    })
}

fn expression(v: &Value) -> Result<Expression, Fault> {
    let Value::Object(o) = v else {
        return Err(validation("Filter expression must be an object"));
    };
    let roots: Vec<&String> = o.keys().filter(|k| !o[*k].is_null()).collect();
    if roots.len() != 1 {
        return Err(validation(
            "Expression has more than one roots. Only one root operator is allowed for each expression: And, Or, Not, Dimensions, Tags, CostCategories",
        ));
    }
    let list = |k: &str| -> Result<Vec<Expression>, Fault> {
        o[k].as_array()
            .ok_or_else(|| validation(format!("{k} must be a list of expressions")))?
            .iter()
            .map(expression)
            .collect()
    };
    match roots[0].as_str() {
        "And" => Ok(Expression::And(list("And")?)),
        "Or" => Ok(Expression::Or(list("Or")?)),
        "Not" => Ok(Expression::Not(Box::new(expression(&o["Not"])?))),
        "Dimensions" => {
            let d = &o["Dimensions"];
            Ok(Expression::Dimension {
                key: string(d, "Key")?
                    .ok_or_else(|| validation("Dimensions.Key is required"))?
                    .to_string(),
                values: strings(d, "Values")?,
                match_options: strings(d, "MatchOptions")?,
            })
        }
        "Tags" | "CostCategories" => Err(validation(format!(
            "{} filters match nothing vpcd meters: its usage carries no cost allocation tags or categories",
            roots[0]
        ))),
        other => Err(validation(format!("Unknown expression operator {other}"))),
    }
}

/// Parses a `GetCostAndUsage` request body.
pub fn parse_query(body: &[u8]) -> Result<CostQuery, Fault> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Fault::new("SerializationException", format!("Malformed JSON: {e}")))?;
    if !v.is_object() {
        return Err(Fault::new(
            "SerializationException",
            "The request body must be a JSON object",
        ));
    }
    let period = v
        .get("TimePeriod")
        .filter(|p| p.is_object())
        .ok_or_else(|| validation("TimePeriod is required"))?;
    let granularity = match string(&v, "Granularity")? {
        Some("DAILY") => Granularity::Daily,
        Some("MONTHLY") => Granularity::Monthly,
        Some("HOURLY") => {
            return Err(validation(
                "Hourly granularity is not enabled: vpcd answers DAILY and MONTHLY",
            ))
        }
        Some(other) => {
            return Err(validation(format!(
                "Granularity {other} is not valid. Valid values are DAILY, MONTHLY, HOURLY"
            )))
        }
        None => return Err(validation("Granularity is required")),
    };
    let mut group_by = Vec::new();
    if let Some(g) = v.get("GroupBy").filter(|g| !g.is_null()) {
        let items = g
            .as_array()
            .ok_or_else(|| validation("GroupBy must be a list"))?;
        for item in items {
            match (string(item, "Type")?, string(item, "Key")?) {
                (Some("DIMENSION"), Some(k)) => group_by.push(k.to_string()),
                (Some("TAG" | "COST_CATEGORY"), Some(_)) => {
                    return Err(validation(
                        "vpcd groups by DIMENSION only: its usage carries no cost allocation tags or categories",
                    ))
                }
                (Some(t), _) => {
                    return Err(validation(format!(
                        "Group Definition type {t} is invalid. Valid values are DIMENSION, TAG, COST_CATEGORY"
                    )))
                }
                _ => return Err(validation("Group Definition needs a Type and a Key")),
            }
        }
    }
    let filter = match v.get("Filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(expression(f)?),
    };
    let q = CostQuery {
        start: date(period, "Start")?,
        end: date(period, "End")?,
        granularity,
        metrics: strings(&v, "Metrics")?,
        group_by,
        filter,
    };
    cost::validate(&q)?;
    Ok(q)
}

fn metrics(m: &std::collections::BTreeMap<String, Amount>) -> Value {
    let mut o = Map::new();
    for (k, a) in m {
        o.insert(
            k.clone(),
            json!({"Amount": cost::format_amount(a.amount), "Unit": a.unit}),
        );
    }
    Value::Object(o)
}

/// Writes the `GetCostAndUsageResponse`.
pub fn render(q: &CostQuery, periods: &[Period]) -> String {
    let results: Vec<Value> = periods
        .iter()
        .map(|p| {
            json!({
                "TimePeriod": {"Start": p.start.to_string(), "End": p.end.to_string()},
                "Total": metrics(&p.total),
                "Groups": p.groups.iter().map(|(keys, m)| json!({"Keys": keys, "Metrics": metrics(m)})).collect::<Vec<_>>(),
                "Estimated": p.estimated,
            })
        })
        .collect();
    let mut out = json!({
        "ResultsByTime": results,
        "DimensionValueAttributes": [],
    });
    if !q.group_by.is_empty() {
        out["GroupDefinitions"] = q
            .group_by
            .iter()
            .map(|k| json!({"Type": "DIMENSION", "Key": k}))
            .collect();
    }
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_request_parses() {
        let q = parse_query(br#"{"TimePeriod":{"Start":"2026-12-01","End":"2026-12-05"},"Granularity":"DAILY","Metrics":["UnblendedCost","UsageQuantity"],"GroupBy":[{"Type":"DIMENSION","Key":"USAGE_TYPE"}],"Filter":{"Dimensions":{"Key":"SERVICE","Values":["EC2 - Other"]}}}"#).unwrap();
        assert_eq!(q.group_by, ["USAGE_TYPE"]);
        assert_eq!(q.granularity, Granularity::Daily);
        assert!(matches!(q.filter, Some(Expression::Dimension { .. })));
    }

    #[test]
    fn bad_requests_are_refused_with_aws_codes() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "SerializationException"),
            (br#"{"Granularity":"DAILY","Metrics":["UnblendedCost"]}"#, "ValidationException"),
            (br#"{"TimePeriod":{"Start":"2026-12-05","End":"2026-12-01"},"Granularity":"DAILY","Metrics":["UnblendedCost"]}"#, "ValidationException"),
            (br#"{"TimePeriod":{"Start":"2026-12-01","End":"2026-12-05"},"Granularity":"WEEKLY","Metrics":["UnblendedCost"]}"#, "ValidationException"),
            (br#"{"TimePeriod":{"Start":"2026-12-01","End":"2026-12-05"},"Granularity":"DAILY","Metrics":[]}"#, "ValidationException"),
            (br#"{"TimePeriod":{"Start":"2026-12-01","End":"2026-12-05"},"Granularity":"DAILY","Metrics":["UnblendedCost"],"Filter":{"Not":{"Dimensions":{"Key":"SERVICE","Values":["x"]}},"Dimensions":{"Key":"SERVICE","Values":["x"]}}}"#, "ValidationException"),
            (br#"{"TimePeriod":{"Start":"2026-02-30","End":"2026-03-05"},"Granularity":"DAILY","Metrics":["UnblendedCost"]}"#, "ValidationException"),
        ];
        for (body, code) in cases {
            let e = parse_query(body).unwrap_err();
            assert_eq!(&e.code, code, "{}", String::from_utf8_lossy(body));
        }
    }
}
