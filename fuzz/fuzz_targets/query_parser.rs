//! Raw bytes as a query string or form body: the parsing into `Params`, and
//! the list, filter, tag and paging parsers every action uses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpc_api::params::parse_tags;
use vpc_api::{query, Params};

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let pair_count = pairs.len();
    let params = Params::from_pairs(pairs);
    assert!(params.iter().count() <= pair_count);

    for prefix in ["VpcId", "ResourceId", "Filter", "Tag", "IpPermissions"] {
        let listed = params.list(prefix);
        let indexed = params.indexed(prefix);
        assert!(listed.len() <= indexed.len());
        assert!(indexed.len() <= params.sub(prefix).iter().count());
    }
    for permission in params.indexed("IpPermissions") {
        for group in permission.indexed("Groups") {
            let _ = group.get("GroupId");
        }
        let _ = permission.int("FromPort");
        let _ = permission.list("IpRanges");
    }
    if let Ok(filters) = params.filters() {
        assert!(filters.len() <= 50);
        let _ = query::check_filters(&filters, &["vpc-id", "state"]);
        for filter in &filters {
            for value in &filter.values {
                assert!(
                    query::wildcard_match(value, value),
                    "{value:?} must match itself"
                );
                assert!(query::wildcard_match("*", value));
            }
        }
    }
    if let Ok(tags) = parse_tags(&params, "Tag") {
        let keys: std::collections::BTreeSet<&str> = tags.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys.len(), tags.len(), "tag keys are unique");
    }
    let _ = params.tag_specs("vpc");
    let _ = params.dry_run();
    let _ = params.attr_bool("EnableDnsSupport");

    let items: Vec<u32> = (0..40).collect();
    if let Ok((page, token)) = query::paginate(items, &params, |n| format!("{n:04}"), 5, 1000) {
        if let Ok(Some(max)) = params.int("MaxResults") {
            assert!(page.len() as i64 <= max);
        } else {
            assert!(token.is_none());
        }
    }
});
