//! EC2 Query parameters: `Action=…&Filter.1.Name=…&Filter.1.Value.1=…` into typed pieces.

use std::collections::BTreeMap;
use vpc_model::{Fault, Tag, Tags};

/// The request's parameters, from the query string and the form body.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
    /// Where this set sits on the wire (`""` at the top, `Tag.3.` for one tag),
    /// so errors name the parameter the client actually sent.
    path: String,
}

/// The largest list index accepted (`Name.N`): AWS's lists are 1-based and
/// indexed by a 32-bit integer.
pub const MAX_LIST_INDEX: u32 = i32::MAX as u32;

/// A list index as the EC2 serializers write it: a positive decimal integer
/// without sign or leading zeros, at most [`MAX_LIST_INDEX`].
fn list_index(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| *n <= MAX_LIST_INDEX)
}

/// AWS's answer to a parameter name it cannot place.
fn unknown_param(name: &str) -> Fault {
    Fault::new(
        "UnknownParameter",
        format!("The parameter {name} is not recognized"),
    )
}

/// One `Filter.N`: a name and the values it accepts (ORed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

fn bad_value(name: &str, v: &str) -> Fault {
    Fault::invalid_param(format!("Value ({v}) for parameter {name} is invalid."))
}

impl Params {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
        Params {
            map: pairs.into_iter().collect(),
            path: String::new(),
        }
    }

    /// Every (name, value) pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    pub fn string(&self, k: &str) -> Option<String> {
        self.get(k).map(str::to_string)
    }

    /// A required parameter.
    pub fn req(&self, k: &str) -> Result<&str, Fault> {
        match self.get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Fault::missing(k)),
        }
    }

    pub fn has(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }

    pub fn bool(&self, k: &str) -> Result<Option<bool>, Fault> {
        match self.get(k) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(bad_value(k, v)),
        }
    }

    /// `k` or `k.Value` (the AttributeBooleanValue shape).
    pub fn attr_bool(&self, k: &str) -> Result<Option<bool>, Fault> {
        match self.bool(&format!("{k}.Value"))? {
            Some(v) => Ok(Some(v)),
            None => self.bool(k),
        }
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, Fault> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| bad_value(k, v)),
        }
    }

    /// The parameters under `prefix.`, with the prefix stripped.
    pub fn sub(&self, prefix: &str) -> Params {
        let p = format!("{prefix}.");
        Params {
            map: self
                .map
                .range(p.clone()..)
                .take_while(|(k, _)| k.starts_with(&p))
                .map(|(k, v)| (k[p.len()..].to_string(), v.clone()))
                .collect(),
            path: format!("{}{p}", self.path),
        }
    }

    /// `prefix.1`, `prefix.2`, … as sub-parameter sets, in numeric order.
    ///
    /// Strict: a key under `prefix.` whose index is not a positive integer up
    /// to [`MAX_LIST_INDEX`] (`Tag.-1.Key`, `Tag.Key`, `Tag.01.Key`,
    /// `Tag.18446744073709551616.Key`), or the bare name `prefix` itself, is
    /// an `UnknownParameter` error, never skipped: a list that cannot be read
    /// must not be taken for an empty one (which means "all" to some actions).
    pub fn indexed(&self, prefix: &str) -> Result<Vec<Params>, Fault> {
        if self.has(prefix) {
            return Err(unknown_param(&self.wire(prefix)));
        }
        let all = self.sub(prefix);
        let mut entries: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &all.map {
            let (n, rest) = k.split_once('.').unwrap_or((k.as_str(), ""));
            let index = list_index(n).ok_or_else(|| unknown_param(&all.wire(k)))?;
            entries
                .entry(index)
                .or_insert_with(|| Params {
                    map: BTreeMap::new(),
                    path: format!("{}{index}.", all.path),
                })
                .map
                .insert(rest.to_string(), v.clone());
        }
        Ok(entries.into_values().collect())
    }

    /// `prefix.1`, `prefix.2`, … as plain values, in numeric order. Strict as
    /// [`Params::indexed`]; an entry with members (`VpcId.1.Foo`) is an error.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, Fault> {
        self.indexed(prefix)?
            .into_iter()
            .map(|entry| {
                entry.allow_only(&[""])?;
                Ok(entry.map.get("").cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Errors unless every parameter here is one of `members`: a name matches
    /// itself, a name ending in `.` (a nested list or structure, `Value.`)
    /// matches what lies below it, and `""` is the set's own value. Catches
    /// misspelt members such as `Tag.1.key` and stray ones like `Tag.1.Key.1`.
    pub fn allow_only(&self, members: &[&str]) -> Result<(), Fault> {
        for k in self.map.keys() {
            let known = members.iter().any(|m| match m.strip_suffix('.') {
                Some(set) => k.strip_prefix(set).is_some_and(|r| r.starts_with('.')),
                None => k == m,
            });
            if !known {
                return Err(unknown_param(&self.wire(k)));
            }
        }
        Ok(())
    }

    /// The full wire name of member `k` of this set (`Tag.3.Key`).
    pub fn wire(&self, k: &str) -> String {
        let name = format!("{}{k}", self.path);
        match name.strip_suffix('.') {
            Some(set) if k.is_empty() => set.to_string(),
            _ => name,
        }
    }

    /// A required member, named by its full wire name when missing.
    pub fn req_member(&self, k: &str) -> Result<&str, Fault> {
        self.get(k).ok_or_else(|| Fault::missing(&self.wire(k)))
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Fault> {
        let mut out = Vec::new();
        for f in self.indexed("Filter")? {
            f.allow_only(&["Name", "Value."])?;
            out.push(Filter {
                name: f.req_member("Name")?.to_string(),
                values: f.list("Value")?,
            });
        }
        if out.len() > 50 || out.iter().any(|f| f.values.len() > 200) {
            return Err(Fault::new(
                "FilterLimitExceeded",
                "The maximum number of filter values specified on a single call is 200",
            ));
        }
        Ok(out)
    }

    /// Tags for `resource_type` from `TagSpecification.N`.
    pub fn tag_specs(&self, resource_type: &str) -> Result<Tags, Fault> {
        let mut tags = Vec::new();
        for spec in self.indexed("TagSpecification")? {
            spec.allow_only(&["ResourceType", "Tag."])?;
            let rt = spec.req_member("ResourceType")?;
            if rt != resource_type {
                return Err(Fault::invalid_param(format!(
                    "'{rt}' is not a valid taggable resource type for this operation."
                )));
            }
            tags.extend(parse_tags(&spec, "Tag")?);
        }
        Ok(tags)
    }

    /// The request's own `DryRun` flag.
    pub fn dry_run(&self) -> Result<bool, Fault> {
        Ok(self.bool("DryRun")?.unwrap_or(false))
    }
}

/// `prefix.N.Key` / `prefix.N.Value` pairs; a later duplicate key wins.
pub fn parse_tags(p: &Params, prefix: &str) -> Result<Tags, Fault> {
    let mut out: Vec<Tag> = Vec::new();
    for (key, value) in parse_tag_keys(p, prefix)? {
        let value = value.unwrap_or_default();
        if let Some(e) = out.iter_mut().find(|e| e.key == key) {
            e.value = value;
        } else {
            out.push(Tag { key, value });
        }
    }
    Ok(out)
}

/// `prefix.N.Key` with an optional `prefix.N.Value`, as sent (DeleteTags
/// tells "no value" from "empty value"). Every entry needs its `Key`.
pub fn parse_tag_keys(p: &Params, prefix: &str) -> Result<Vec<(String, Option<String>)>, Fault> {
    p.indexed(prefix)?
        .into_iter()
        .map(|t| {
            t.allow_only(&["Key", "Value"])?;
            Ok((t.req_member("Key")?.to_string(), t.string("Value")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn lists_filters_and_tags() {
        let x = p(&[
            ("VpcId.2", "vpc-b"),
            ("VpcId.10", "vpc-c"),
            ("VpcId.1", "vpc-a"),
            ("Filter.1.Name", "tag:Name"),
            ("Filter.1.Value.1", "x"),
            ("Filter.1.Value.2", "y"),
            ("Filter.2.Name", "state"),
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "a"),
        ]);
        assert_eq!(x.list("VpcId").unwrap(), vec!["vpc-a", "vpc-b", "vpc-c"]);
        let f = x.filters().unwrap();
        assert_eq!(f[0].values, vec!["x", "y"]);
        assert_eq!(f[1].name, "state");
        assert!(f[1].values.is_empty());
        assert_eq!(x.tag_specs("vpc").unwrap()[0].value, "a");
        assert!(x.tag_specs("subnet").is_err());
    }

    fn error_of<T: std::fmt::Debug>(r: Result<T, Fault>) -> (String, String) {
        let f = r.expect_err("an error");
        (f.code.to_string(), f.message)
    }

    #[test]
    fn a_list_that_cannot_be_read_is_an_error_never_empty() {
        for (bad, named) in [
            (
                "Tag.18446744073709551616.Key",
                "Tag.18446744073709551616.Key",
            ),
            ("Tag.4294967296.Key", "Tag.4294967296.Key"),
            ("Tag.2147483648.Key", "Tag.2147483648.Key"),
            ("Tag.-1.Key", "Tag.-1.Key"),
            ("Tag.0.Key", "Tag.0.Key"),
            ("Tag.01.Key", "Tag.01.Key"),
            ("Tag.+1.Key", "Tag.+1.Key"),
            ("Tag.Key", "Tag.Key"),
            ("Tag..Key", "Tag..Key"),
            ("Tag", "Tag"),
            ("Tag.1.key", "Tag.1.key"),
            ("Tag.1.Key.1", "Tag.1.Key.1"),
        ] {
            let x = p(&[(bad, "x")]);
            assert_eq!(
                error_of(parse_tag_keys(&x, "Tag")),
                (
                    "UnknownParameter".to_string(),
                    format!("The parameter {named} is not recognized")
                ),
                "{bad}"
            );
        }
        assert_eq!(
            error_of(parse_tag_keys(&p(&[("Tag.1.Value", "x")]), "Tag")),
            (
                "MissingParameter".to_string(),
                "The request must contain the parameter Tag.1.Key".to_string()
            )
        );
        assert_eq!(
            error_of(p(&[("VpcId.-1", "vpc-a")]).list("VpcId")).0,
            "UnknownParameter"
        );
        assert_eq!(
            error_of(p(&[("VpcId.1.Foo", "vpc-a")]).list("VpcId")).1,
            "The parameter VpcId.1.Foo is not recognized"
        );
        assert_eq!(
            error_of(p(&[("Filter.1.Value.1", "x")]).filters()).1,
            "The request must contain the parameter Filter.1.Name"
        );
        assert_eq!(
            error_of(p(&[("Filter.1.Name", "x"), ("Filter.1.Values.1", "y")]).filters()).1,
            "The parameter Filter.1.Values.1 is not recognized"
        );
        let spec = p(&[
            ("TagSpecification.1.ResourceType", "vpc"),
            ("TagSpecification.1.Tag.2.Value", "v"),
        ]);
        assert_eq!(
            error_of(spec.tag_specs("vpc")).1,
            "The request must contain the parameter TagSpecification.1.Tag.2.Key"
        );
    }

    #[test]
    fn the_largest_index_and_gaps_are_accepted() {
        let x = p(&[
            ("Tag.2147483647.Key", "b"),
            ("Tag.3.Key", "a"),
            ("Tag.3.Value", ""),
        ]);
        assert_eq!(
            parse_tag_keys(&x, "Tag").unwrap(),
            vec![
                ("a".to_string(), Some(String::new())),
                ("b".to_string(), None)
            ]
        );
        assert!(p(&[]).list("VpcId").unwrap().is_empty());
    }
}
