//! Security groups: create, delete, rules, references across peerings, stale rules.
