//! Network ACLs: create, delete, entries, associations.
