//! The one error type of the core: an AWS error code and its message.

use std::borrow::Cow;

/// An AWS-style failure: the exact EC2 error code and a human message.
///
/// The API layer turns it into the `<Response><Errors>…` envelope and picks
/// the HTTP status from the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Fault {
    pub code: Cow<'static, str>,
    pub message: String,
}

impl Fault {
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Fault {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Fault::new("InvalidParameterValue", message)
    }

    pub fn missing(name: &str) -> Self {
        Fault::new(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    pub fn dependency(message: impl Into<String>) -> Self {
        Fault::new("DependencyViolation", message)
    }
}

pub type Result<T, E = Fault> = std::result::Result<T, E>;
