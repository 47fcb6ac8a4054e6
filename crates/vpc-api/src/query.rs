//! Describe-call machinery shared by every resource: filters and pagination.

use crate::params::{Filter, Params};
use base64::Engine as _;
use vpc_model::{Fault, Tag};

/// EC2 filter values accept `*` (any run) and `?` (any one character).
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == s;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        // A `*` in the pattern is a wildcard even when the text has a `*` there.
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The values a resource has for one filter name; `None` means the filter is unknown.
pub type Fields<'a, T> = dyn Fn(&T, &str) -> Option<Vec<String>> + 'a;

/// Tag filters every taggable resource supports: `tag:Key`, `tag-key`, `tag-value`.
pub fn tag_field(tags: &[Tag], name: &str) -> Option<Vec<String>> {
    if let Some(k) = name.strip_prefix("tag:") {
        return Some(
            tags.iter()
                .filter(|t| t.key == k)
                .map(|t| t.value.clone())
                .collect(),
        );
    }
    match name {
        "tag-key" => Some(tags.iter().map(|t| t.key.clone()).collect()),
        "tag-value" => Some(tags.iter().map(|t| t.value.clone()).collect()),
        _ => None,
    }
}

/// Fails with `InvalidParameterValue` on a filter name the resource does not know.
pub fn check_filters(filters: &[Filter], known: &[&str]) -> Result<(), Fault> {
    for f in filters {
        let ok = known.contains(&f.name.as_str())
            || f.name.starts_with("tag:")
            || f.name == "tag-key"
            || f.name == "tag-value";
        if !ok {
            return Err(Fault::new(
                "InvalidParameterValue",
                format!("The filter '{}' is invalid", f.name),
            ));
        }
    }
    Ok(())
}

/// Whether one item passes every filter (filters ANDed, values ORed).
pub fn matches<T>(it: &T, filters: &[Filter], fields: &Fields<'_, T>) -> bool {
    filters.iter().all(|f| {
        let vals = fields(it, &f.name).unwrap_or_default();
        f.values
            .iter()
            .any(|pat| vals.iter().any(|v| wildcard_match(pat, v)))
    })
}

/// Checks the filter names, then keeps the matching items, lazily.
pub fn apply_lazy<'a, T: 'a>(
    items: impl IntoIterator<Item = T> + 'a,
    filters: &'a [Filter],
    fields: &'a Fields<'a, T>,
    known: &[&str],
) -> Result<impl Iterator<Item = T> + 'a, Fault> {
    check_filters(filters, known)?;
    Ok(items
        .into_iter()
        .filter(move |it| matches(it, filters, fields)))
}

/// Checks the filter names, then keeps the matching items.
pub fn apply<T>(
    items: Vec<T>,
    filters: &[Filter],
    fields: &Fields<'_, T>,
    known: &[&str],
) -> Result<Vec<T>, Fault> {
    check_filters(filters, known)?;
    Ok(items
        .into_iter()
        .filter(|it| matches(it, filters, fields))
        .collect())
}

/// `MaxResults` / `NextToken` paging over items already sorted by a stable key.
///
/// The items are consumed lazily: with `MaxResults`, only as many as the page
/// needs (plus one, to know whether there is more) are looked at.
pub fn paginate<T>(
    items: impl IntoIterator<Item = T>,
    p: &Params,
    key: impl Fn(&T) -> String,
    min: i64,
    max: i64,
) -> Result<(Vec<T>, Option<String>), Fault> {
    let max_results = p.int("MaxResults")?;
    if let Some(m) = max_results {
        if m < min || m > max {
            return Err(Fault::invalid_param(format!(
                "Value ( {m} ) for parameter maxResults is invalid. Parameter must be between {min} and {max}."
            )));
        }
    }
    let start_after = match p.get("NextToken") {
        Some(t) if !t.is_empty() => Some(decode_token(t)?),
        _ => None,
    };
    let rest = items.into_iter().filter(|it| {
        start_after
            .as_ref()
            .is_none_or(|k| key(it).as_str() > k.as_str())
    });
    let Some(m) = max_results else {
        return Ok((rest.collect(), None));
    };
    let m = usize::try_from(m).unwrap_or(usize::MAX);
    let mut items: Vec<T> = rest.take(m.saturating_add(1)).collect();
    if items.len() <= m {
        return Ok((items, None));
    }
    items.truncate(m);
    let token = items.last().map(|l| encode_token(&key(l)));
    Ok((items, token))
}

fn encode_token(k: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{k}"))
}

fn decode_token(t: &str) -> Result<String, Fault> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1:").map(str::to_string))
        .ok_or_else(|| Fault::new("InvalidNextToken", format!("The token '{t}' is invalid")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("a*", "abc"));
        assert!(wildcard_match("*c", "abc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "abbc"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("abc", "abcd"));
    }

    #[test]
    fn a_star_matches_text_that_holds_a_star() {
        // Found by the query_parser fuzz target: the literal branch used to
        // consume the pattern's `*` against a `*` in the text.
        assert!(wildcard_match("*", "*a"));
        assert!(wildcard_match("a*", "a*b"));
        assert!(wildcard_match("*b", "*ab"));
        assert!(wildcard_match("*", "**"));
    }

    #[test]
    fn pages() {
        let p = Params::from_pairs([("MaxResults".to_string(), "5".to_string())]);
        let items: Vec<u32> = (0..12).collect();
        let (page, tok) = paginate(items.clone(), &p, |x| format!("{x:04}"), 5, 1000).unwrap();
        assert_eq!(page, vec![0, 1, 2, 3, 4]);
        let p2 = Params::from_pairs([
            ("MaxResults".to_string(), "5".to_string()),
            ("NextToken".to_string(), tok.unwrap()),
        ]);
        let (page, _) = paginate(items, &p2, |x| format!("{x:04}"), 5, 1000).unwrap();
        assert_eq!(page, vec![5, 6, 7, 8, 9]);
        let bad = Params::from_pairs([("NextToken".to_string(), "zzz".to_string())]);
        assert!(paginate(vec![1], &bad, |x| x.to_string(), 5, 1000).is_err());
    }
}
