//! EC2 Query parameters: `Action=…&Filter.1.Name=…&Filter.1.Value.1=…` into typed pieces.

use std::collections::BTreeMap;
use vpc_model::{Fault, Tag, Tags};

/// The request's parameters, from the query string and the form body.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
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
        }
    }

    /// `prefix.1`, `prefix.2`, … as sub-parameter sets, in numeric order.
    pub fn indexed(&self, prefix: &str) -> Vec<Params> {
        let all = self.sub(prefix);
        let mut idx: BTreeMap<u64, Params> = BTreeMap::new();
        for (k, v) in &all.map {
            let (n, rest) = match k.split_once('.') {
                Some((n, rest)) => (n, Some(rest)),
                None => (k.as_str(), None),
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let e = idx.entry(n).or_default();
            match rest {
                Some(r) => {
                    e.map.insert(r.to_string(), v.clone());
                }
                None => {
                    e.map.insert(String::new(), v.clone());
                }
            }
        }
        idx.into_values().collect()
    }

    /// `prefix.1`, `prefix.2`, … as plain values, in numeric order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix)
            .into_iter()
            .filter_map(|p| p.map.get("").cloned())
            .collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Fault> {
        let mut out = Vec::new();
        for f in self.indexed("Filter") {
            let name = f.get("Name").ok_or_else(|| Fault::missing("Filter.Name"))?;
            out.push(Filter {
                name: name.to_string(),
                values: f.list("Value"),
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
        for spec in self.indexed("TagSpecification") {
            let rt = spec
                .get("ResourceType")
                .ok_or_else(|| Fault::missing("TagSpecification.ResourceType"))?;
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

/// `prefix.N.Key` / `prefix.N.Value` pairs.
pub fn parse_tags(p: &Params, prefix: &str) -> Result<Tags, Fault> {
    let mut out: Vec<Tag> = Vec::new();
    for t in p.indexed(prefix) {
        let key = t.get("Key").ok_or_else(|| Fault::missing("Tag.Key"))?;
        let value = t.get("Value").unwrap_or("");
        if let Some(e) = out.iter_mut().find(|e| e.key == key) {
            e.value = value.to_string();
        } else {
            out.push(Tag {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
    }
    Ok(out)
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
        assert_eq!(x.list("VpcId"), vec!["vpc-a", "vpc-b", "vpc-c"]);
        let f = x.filters().unwrap();
        assert_eq!(f[0].values, vec!["x", "y"]);
        assert_eq!(f[1].name, "state");
        assert!(f[1].values.is_empty());
        assert_eq!(x.tag_specs("vpc").unwrap()[0].value, "a");
        assert!(x.tag_specs("subnet").is_err());
    }
}
