//! SigV4 verification for the EC2 Query API: header and query-string forms.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use time::{macros::format_description, OffsetDateTime, PrimitiveDateTime};

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused. The API layer maps each to an AWS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Authorization header and no X-Amz-Signature.
    #[error("missing authentication")]
    Missing,
    /// The signature parts are present but malformed.
    #[error("incomplete signature: {0}")]
    Incomplete(String),
    /// Nobody has this access key id.
    #[error("unknown access key {0}")]
    UnknownKey(String),
    /// The timestamp is outside the 15-minute window.
    #[error("request expired")]
    Expired,
    /// The computed signature differs.
    #[error("signature mismatch")]
    Mismatch,
    /// The credential scope names another service.
    #[error("wrong service {0}")]
    WrongService(String),
    /// The request carries a session token; vpcd issues none, so none is valid.
    #[error("unknown security token")]
    UnknownToken,
}

/// The verified identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded query pairs, in the order they came.
    pub query: &'a [(String, String)],
    /// Lower-cased header names and their values.
    pub headers: &'a BTreeMap<String, Vec<String>>,
    pub body: &'a [u8],
}

struct Parsed {
    akid: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    expires: Option<i64>,
    query_form: bool,
}

fn header<'a>(r: &'a SignedRequest<'_>, name: &str) -> Option<&'a str> {
    r.headers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

fn parse_credential(cred: &str) -> Result<(String, String, String, String), AuthError> {
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts[0].is_empty() {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped to a valid region. Authorization credential '{cred}' is malformed."
        )));
    }
    Ok((
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    ))
}

fn parse(r: &SignedRequest<'_>) -> Result<Parsed, AuthError> {
    if let Some(auth) = header(r, "authorization") {
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
            AuthError::Incomplete(
                "Unsupported authorization type; only AWS4-HMAC-SHA256 is accepted".into(),
            )
        })?;
        let mut cred = None;
        let mut signed = None;
        let mut sig = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                cred = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                sig = Some(v);
            }
        }
        let (Some(cred), Some(signed), Some(sig)) = (cred, signed, sig) else {
            return Err(AuthError::Incomplete(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.".into(),
            ));
        };
        let (akid, date, region, service) = parse_credential(cred)?;
        let amz_date = header(r, "x-amz-date").map(str::to_string).ok_or_else(|| {
            AuthError::Incomplete(
                "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
            )
        })?;
        return Ok(Parsed {
            akid,
            date,
            region,
            service,
            signed_headers: signed.split(';').map(str::to_string).collect(),
            signature: sig.to_string(),
            amz_date,
            expires: None,
            query_form: false,
        });
    }
    let q = |k: &str| {
        r.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let Some(sig) = q("X-Amz-Signature") else {
        return Err(AuthError::Missing);
    };
    if q("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(AuthError::Incomplete(
            "X-Amz-Algorithm must be AWS4-HMAC-SHA256".into(),
        ));
    }
    let cred = q("X-Amz-Credential")
        .ok_or_else(|| AuthError::Incomplete("X-Amz-Credential is missing".into()))?;
    let (akid, date, region, service) = parse_credential(cred)?;
    let signed = q("X-Amz-SignedHeaders")
        .ok_or_else(|| AuthError::Incomplete("X-Amz-SignedHeaders is missing".into()))?;
    let amz_date = q("X-Amz-Date")
        .ok_or_else(|| AuthError::Incomplete("X-Amz-Date is missing".into()))?
        .to_string();
    let expires = match q("X-Amz-Expires") {
        Some(e) => {
            let secs = e
                .parse::<i64>()
                .map_err(|_| AuthError::Incomplete("X-Amz-Expires must be a number".into()))?;
            if !(1..=604_800).contains(&secs) {
                return Err(AuthError::Incomplete(
                    "X-Amz-Expires must be between 1 and 604800 seconds".into(),
                ));
            }
            Some(secs)
        }
        None => None,
    };
    Ok(Parsed {
        akid,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_string).collect(),
        signature: sig.to_string(),
        amz_date,
        expires,
        query_form: true,
    })
}

/// The access key id and service a request claims, read from its head alone:
/// no body and no signature check. Lets the server refuse a request before
/// reading its body.
pub fn claimed_credential(r: &SignedRequest<'_>) -> Result<(String, String), AuthError> {
    parse(r).map(|p| (p.akid, p.service))
}

/// RFC 3986 encoding as SigV4 wants it: only unreserved characters stay.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &[(String, String)], skip_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !(skip_signature && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(values: &[String]) -> String {
    values
        .iter()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The signing key for a secret, date (YYYYMMDD), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let f = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, f).ok().map(|d| d.assume_utc())
}

/// Verifies a request. `secret_for` returns the secret of an access key id.
pub fn verify(
    r: &SignedRequest<'_>,
    now: OffsetDateTime,
    secret_for: impl FnOnce(&str) -> Option<String>,
) -> Result<Verified, AuthError> {
    let p = parse(r)?;
    let t = parse_amz_date(&p.amz_date)
        .ok_or_else(|| AuthError::Incomplete(format!("Invalid X-Amz-Date '{}'", p.amz_date)))?;
    if !p.amz_date.starts_with(&p.date) {
        return Err(AuthError::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            p.date,
            &p.amz_date[..8.min(p.amz_date.len())]
        )));
    }
    let skew = (now - t).whole_seconds();
    match p.expires {
        Some(e) => {
            if skew > e || skew < -15 * 60 {
                return Err(AuthError::Expired);
            }
        }
        None => {
            if skew.abs() > 15 * 60 {
                return Err(AuthError::Expired);
            }
        }
    }
    if !p.signed_headers.iter().any(|h| h == "host") {
        return Err(AuthError::Incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    // Temporary credentials sign an X-Amz-Security-Token; vpcd never issued
    // one, so any token is unknown (ignoring it would accept a revoked session).
    if header(r, "x-amz-security-token").is_some()
        || r.query.iter().any(|(k, _)| k == "X-Amz-Security-Token")
    {
        return Err(AuthError::UnknownToken);
    }
    let secret = secret_for(&p.akid).ok_or_else(|| AuthError::UnknownKey(p.akid.clone()))?;

    let mut canon_headers = String::new();
    for h in &p.signed_headers {
        let v = r
            .headers
            .get(h.as_str())
            .map(|v| canonical_header_value(v))
            .unwrap_or_default();
        canon_headers.push_str(h);
        canon_headers.push(':');
        canon_headers.push_str(&v);
        canon_headers.push('\n');
    }
    // The body is always hashed; a client-supplied hash must agree with it,
    // so a captured signature cannot be replayed with another body.
    let payload_hash = hex::encode(Sha256::digest(r.body));
    if let Some(h) = header(r, "x-amz-content-sha256") {
        if !h.eq_ignore_ascii_case(&payload_hash) {
            return Err(AuthError::Mismatch);
        }
    }
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method,
        if r.path.is_empty() { "/" } else { r.path },
        canonical_query(r.query, p.query_form),
        canon_headers,
        p.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!("{}/{}/{}/aws4_request", p.date, p.region, p.service);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        p.amz_date,
        scope,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&secret, &p.date, &p.region, &p.service);
    let expect = hex::encode(hmac(&key, sts.as_bytes()));
    if !constant_time_eq(expect.as_bytes(), p.signature.as_bytes()) {
        return Err(AuthError::Mismatch);
    }
    Ok(Verified {
        access_key_id: p.akid,
        region: p.region,
        service: p.service,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs a request the way botocore does (header form). Used by tests and the benchmark.
#[allow(clippy::too_many_arguments)]
pub fn sign_headers(
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    content_type: &str,
    akid: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let date = &amz_date[..8];
    let payload = hex::encode(Sha256::digest(body));
    let canonical = format!(
        "{method}\n{path}\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let sig = hex::encode(hmac(
        &signing_key(secret, date, region, service),
        sts.as_bytes(),
    ));
    format!("AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example from AWS's SigV4 documentation (IAM ListUsers, GET).
    #[test]
    fn aws_documented_example() {
        let mut headers = BTreeMap::new();
        headers.insert(
            "content-type".to_string(),
            vec!["application/x-www-form-urlencoded; charset=utf-8".to_string()],
        );
        headers.insert("host".to_string(), vec!["iam.amazonaws.com".to_string()]);
        headers.insert(
            "x-amz-date".to_string(),
            vec!["20150830T123600Z".to_string()],
        );
        headers.insert(
            "authorization".to_string(),
            vec!["AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7".to_string()],
        );
        let query = vec![
            ("Action".to_string(), "ListUsers".to_string()),
            ("Version".to_string(), "2010-05-08".to_string()),
        ];
        let r = SignedRequest {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            body: b"",
        };
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let v = verify(&r, now, |k| {
            (k == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string())
        })
        .unwrap();
        assert_eq!(v.region, "us-east-1");
        assert_eq!(v.service, "iam");
        // Same request, 16 minutes later: expired.
        let late = now + time::Duration::minutes(16);
        assert_eq!(
            verify(&r, late, |_| Some(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()
            )),
            Err(AuthError::Expired)
        );
        // Wrong secret: mismatch.
        assert_eq!(
            verify(&r, now, |_| Some("nope".into())),
            Err(AuthError::Mismatch)
        );
        // Unknown key.
        assert_eq!(
            verify(&r, now, |_| None),
            Err(AuthError::UnknownKey("AKIDEXAMPLE".into()))
        );
    }

    #[test]
    fn sign_then_verify() {
        let body = b"Action=DescribeVpcs&Version=2016-11-15";
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        let auth = sign_headers(
            "POST",
            "127.0.0.1:8080",
            "/",
            body,
            ct,
            "AK",
            "SK",
            "eu-west-1",
            "ec2",
            "20260101T000000Z",
        );
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), vec![ct.to_string()]);
        headers.insert("host".to_string(), vec!["127.0.0.1:8080".to_string()]);
        headers.insert(
            "x-amz-date".to_string(),
            vec!["20260101T000000Z".to_string()],
        );
        headers.insert("authorization".to_string(), vec![auth]);
        let r = SignedRequest {
            method: "POST",
            path: "/",
            query: &[],
            headers: &headers,
            body,
        };
        let now = parse_amz_date("20260101T000500Z").unwrap();
        let v = verify(&r, now, |_| Some("SK".into())).unwrap();
        assert_eq!(v.region, "eu-west-1");
        let r2 = SignedRequest {
            body: b"Action=DeleteVpc",
            ..r
        };
        assert_eq!(
            verify(&r2, now, |_| Some("SK".into())),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn a_claimed_payload_hash_must_match_the_body() {
        let body = b"Action=DescribeVpcs&Version=2016-11-15";
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        let auth = sign_headers(
            "POST",
            "h",
            "/",
            body,
            ct,
            "AK",
            "SK",
            "us-east-1",
            "ec2",
            "20260101T000000Z",
        );
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), vec![ct.to_string()]);
        headers.insert("host".to_string(), vec!["h".to_string()]);
        headers.insert(
            "x-amz-date".to_string(),
            vec!["20260101T000000Z".to_string()],
        );
        headers.insert("authorization".to_string(), vec![auth]);
        // A replay with another body but the original body's hash claimed in a header.
        headers.insert(
            "x-amz-content-sha256".to_string(),
            vec![hex::encode(Sha256::digest(body))],
        );
        let swapped = SignedRequest {
            method: "POST",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"Action=CreateTags",
        };
        let now = parse_amz_date("20260101T000100Z").unwrap();
        assert_eq!(
            verify(&swapped, now, |_| Some("SK".into())),
            Err(AuthError::Mismatch)
        );
        let honest = SignedRequest { body, ..swapped };
        assert!(verify(&honest, now, |_| Some("SK".into())).is_ok());
    }

    #[test]
    fn presigned_expiry_is_bounded() {
        let headers = BTreeMap::new();
        let q = |exp: &str| {
            vec![
                (
                    "X-Amz-Algorithm".to_string(),
                    "AWS4-HMAC-SHA256".to_string(),
                ),
                (
                    "X-Amz-Credential".to_string(),
                    "AK/20260101/us-east-1/ec2/aws4_request".to_string(),
                ),
                ("X-Amz-Date".to_string(), "20260101T000000Z".to_string()),
                ("X-Amz-Expires".to_string(), exp.to_string()),
                ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
                ("X-Amz-Signature".to_string(), "00".to_string()),
            ]
        };
        let now = parse_amz_date("20260101T000100Z").unwrap();
        for bad in ["0", "604801", "1000000000000"] {
            let query = q(bad);
            let r = SignedRequest {
                method: "GET",
                path: "/",
                query: &query,
                headers: &headers,
                body: b"",
            };
            assert!(
                matches!(
                    verify(&r, now, |_| Some("SK".into())),
                    Err(AuthError::Incomplete(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_and_incomplete() {
        let headers = BTreeMap::new();
        let r = SignedRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            verify(&r, OffsetDateTime::now_utc(), |_| None),
            Err(AuthError::Missing)
        );
        let mut h2 = BTreeMap::new();
        h2.insert(
            "authorization".to_string(),
            vec!["AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/ec2/aws4_request".to_string()],
        );
        let r = SignedRequest { headers: &h2, ..r };
        assert!(matches!(
            verify(&r, OffsetDateTime::now_utc(), |_| None),
            Err(AuthError::Incomplete(_))
        ));
    }
}
