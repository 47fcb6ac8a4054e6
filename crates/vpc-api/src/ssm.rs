//! Systems Manager (`ssm`, AWS JSON 1.1) on the API endpoint: `GetParameter`
//! for the public AMI parameters (`vpc_model::ops::public_params`). Only
//! the wire format lives here.

use serde_json::{json, Value};
use vpc_model::ops::public_params;
use vpc_model::Fault;

/// The `X-Amz-Target` prefix of Systems Manager.
pub const TARGET_PREFIX: &str = "AmazonSSM.";

/// Answers one SSM operation for `region`; `now_secs` is the parameter's
/// last-modified time shown.
pub fn answer(
    target: Option<&str>,
    body: &[u8],
    region: &str,
    now_secs: f64,
) -> Result<String, Fault> {
    let op = target.and_then(|t| t.strip_prefix(TARGET_PREFIX));
    if op != Some("GetParameter") {
        return Err(Fault::new(
            "UnknownOperationException",
            format!(
                "vpcd's Systems Manager answers GetParameter only, not {}",
                target.unwrap_or("(no X-Amz-Target)")
            ),
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        Fault::new(
            "ValidationException",
            "The request body is not a JSON object",
        )
    })?;
    let name = v
        .get("Name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Fault::new(
                "ValidationException",
                "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null",
            )
        })?;
    let p = public_params::get(region, name)?;
    Ok(json!({
        "Parameter": {
            "Name": p.name,
            "Type": "String",
            "Value": p.value,
            "Version": 1,
            "LastModifiedDate": now_secs,
            "ARN": p.arn,
            "DataType": "aws:ec2:image",
        }
    })
    .to_string())
}
