//! The whole desired state, as cheap-to-clone persistent maps, plus the list
//! of records an operation changed (what the store must write).

use crate::dns_types::*;
use crate::fault::Fault;
use crate::types::*;
use imbl::OrdMap;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

/// The kind of a stored record; its name is the store's `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Vpc,
    Subnet,
    RouteTable,
    InternetGateway,
    SecurityGroup,
    NetworkAcl,
    Peering,
    RegionInit,
    Instance,
    NetworkInterface,
    NatGateway,
    Address,
    NetworkInsightsPath,
    NetworkInsightsAnalysis,
    Volume,
    Detachment,
    PrefixList,
    VpcEndpoint,
    EgressOnlyInternetGateway,
    FlowLog,
    DhcpOptions,
    HostedZone,
    ZoneChange,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Vpc,
        Kind::Subnet,
        Kind::RouteTable,
        Kind::InternetGateway,
        Kind::SecurityGroup,
        Kind::NetworkAcl,
        Kind::Peering,
        Kind::RegionInit,
        Kind::Instance,
        Kind::NetworkInterface,
        Kind::NatGateway,
        Kind::Address,
        Kind::NetworkInsightsPath,
        Kind::NetworkInsightsAnalysis,
        Kind::Volume,
        Kind::Detachment,
        Kind::PrefixList,
        Kind::VpcEndpoint,
        Kind::EgressOnlyInternetGateway,
        Kind::FlowLog,
        Kind::DhcpOptions,
        Kind::HostedZone,
        Kind::ZoneChange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route-table",
            Kind::InternetGateway => "internet-gateway",
            Kind::SecurityGroup => "security-group",
            Kind::NetworkAcl => "network-acl",
            Kind::Peering => "vpc-peering-connection",
            Kind::RegionInit => "region-init",
            Kind::Instance => "instance",
            Kind::NetworkInterface => "network-interface",
            Kind::NatGateway => "natgateway",
            Kind::Address => "elastic-ip",
            Kind::NetworkInsightsPath => "network-insights-path",
            Kind::NetworkInsightsAnalysis => "network-insights-analysis",
            Kind::Volume => "volume",
            Kind::Detachment => "eni-detachment",
            Kind::PrefixList => "prefix-list",
            Kind::VpcEndpoint => "vpc-endpoint",
            Kind::EgressOnlyInternetGateway => "egress-only-internet-gateway",
            Kind::FlowLog => "vpc-flow-log",
            Kind::DhcpOptions => "dhcp-options",
            Kind::HostedZone => "hosted-zone",
            Kind::ZoneChange => "route53-change",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == s)
    }
}

/// A keyed collection of one record type.
///
/// Records sit behind an `Arc`: a persistent map copies a whole node (dozens
/// of entries) on the first write after a clone, and copying pointers there
/// instead of records keeps a write's cost independent of the records' size.
#[derive(Debug, Clone)]
pub struct Table<T: Clone> {
    map: OrdMap<String, Arc<T>>,
    /// How many records each (owner, region) holds, for quotas without a scan.
    per_scope: imbl::HashMap<(String, String), usize>,
    /// The records with a timed transition ([`Record::deadline`]), by when
    /// it is due, so the timers find what is due without a scan.
    due: imbl::OrdSet<(crate::Timestamp, String)>,
}

impl<T: Clone> Default for Table<T> {
    fn default() -> Self {
        Table {
            map: OrdMap::new(),
            per_scope: imbl::HashMap::new(),
            due: imbl::OrdSet::new(),
        }
    }
}

fn scope_key<T: Record>(r: &T) -> Option<(String, String)> {
    r.scope()
        .map(|(owner, region)| (owner.to_string(), region.to_string()))
}

impl<T: Record> Table<T> {
    fn count(&mut self, scope: Option<(String, String)>, delta: isize) {
        if let Some(key) = scope {
            let n = self.per_scope.entry(key).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
    }

    fn insert(&mut self, r: T) {
        let id = r.id().to_string();
        let (old, old_due) = match self.map.get(&id) {
            Some(old) => (scope_key(&**old), old.deadline()),
            None => (None, None),
        };
        self.count(old, -1);
        self.count(scope_key(&r), 1);
        self.reschedule(&id, old_due, r.deadline());
        self.map.insert(id, Arc::new(r));
    }

    fn remove(&mut self, id: &str) -> Option<T> {
        let r = self.map.remove(id)?;
        self.count(scope_key(&*r), -1);
        self.reschedule(id, r.deadline(), None);
        Some(Arc::unwrap_or_clone(r))
    }

    /// Moves a record's entry in `due` from `old` to `new`.
    fn reschedule(
        &mut self,
        id: &str,
        old: Option<crate::Timestamp>,
        new: Option<crate::Timestamp>,
    ) {
        if old == new {
            return;
        }
        if let Some(t) = old {
            self.due.remove(&(t, id.to_string()));
        }
        if let Some(t) = new {
            self.due.insert((t, id.to_string()));
        }
    }

    /// The IDs of the records whose transition is due by `now`, in ID order.
    pub fn due_by(&self, now: crate::Timestamp) -> Vec<String> {
        let mut ids: Vec<String> = self
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// When the earliest transition of any record is due.
    pub fn next_due(&self) -> Option<crate::Timestamp> {
        self.due.get_min().map(|(t, _)| *t)
    }

    /// How many records `owner` holds in `region` (records with an owner).
    pub fn count_in(&self, owner: &str, region: &str) -> usize {
        self.per_scope
            .get(&(owner.to_string(), region.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

impl<T: Clone> Table<T> {
    pub fn get(&self, id: &str) -> Option<&T> {
        self.map.get(id).map(|r| &**r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.map.values().map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<T: Clone + PartialEq> Table<T> {
    /// The records that differ between `older` and this table, in ID order,
    /// each as (the older version, this version): `(None, Some)` was added,
    /// `(Some, None)` removed, `(Some, Some)` changed. Subtrees the two tables
    /// share are skipped without being visited, so comparing a World with
    /// one it was cloned from costs about the size of the change.
    pub fn changes_since<'a>(
        &'a self,
        older: &'a Table<T>,
    ) -> impl Iterator<Item = (Option<&'a T>, Option<&'a T>)> + 'a {
        older.map.diff(&self.map).map(|item| match item {
            imbl::ordmap::DiffItem::Add(_, new) => (None, Some(&**new)),
            imbl::ordmap::DiffItem::Remove(_, old) => (Some(&**old), None),
            imbl::ordmap::DiffItem::Update {
                old: (_, old),
                new: (_, new),
            } => (Some(&**old), Some(&**new)),
        })
    }
}

/// A record type stored in the [`World`].
pub trait Record: 'static + Clone + Serialize + DeserializeOwned + std::fmt::Debug {
    const KIND: Kind;
    fn id(&self) -> &str;
    /// (owner, region) of a record that has them.
    fn scope(&self) -> Option<(&str, &str)> {
        None
    }
    fn table(w: &World) -> &Table<Self>;
    fn table_mut(w: &mut World) -> &mut Table<Self>;
    /// When this record next changes by itself (a timer), if ever: what
    /// `ops::tick` applies. The table keeps its records indexed by it.
    fn deadline(&self) -> Option<crate::Timestamp> {
        None
    }
}

/// Records with an owner and a region (everything but bookkeeping rows).
pub trait Owned: Record {
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
}

macro_rules! record {
    ($ty:ty, $kind:expr, $field:ident, meta) => {
        impl Record for $ty {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                self.meta.id.as_str()
            }
            fn scope(&self) -> Option<(&str, &str)> {
                Some((self.meta.owner.as_str(), self.meta.region.as_str()))
            }
            fn table(w: &World) -> &Table<Self> {
                &w.$field
            }
            fn table_mut(w: &mut World) -> &mut Table<Self> {
                &mut w.$field
            }
        }
        impl Owned for $ty {
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
        }
    };
    ($ty:ty, $kind:expr, $field:ident, meta, $d:ident => $deadline:expr) => {
        impl Record for $ty {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                self.meta.id.as_str()
            }
            fn scope(&self) -> Option<(&str, &str)> {
                Some((self.meta.owner.as_str(), self.meta.region.as_str()))
            }
            fn table(w: &World) -> &Table<Self> {
                &w.$field
            }
            fn table_mut(w: &mut World) -> &mut Table<Self> {
                &mut w.$field
            }
            fn deadline(&self) -> Option<crate::Timestamp> {
                let $d = self;
                $deadline
            }
        }
        impl Owned for $ty {
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
        }
    };
    ($ty:ty, $kind:expr, $field:ident, $r:ident => $id:expr) => {
        record!($ty, $kind, $field, $r => $id, _d => None);
    };
    ($ty:ty, $kind:expr, $field:ident, $r:ident => $id:expr, $d:ident => $deadline:expr) => {
        impl Record for $ty {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                let $r = self;
                $id
            }
            fn table(w: &World) -> &Table<Self> {
                &w.$field
            }
            fn table_mut(w: &mut World) -> &mut Table<Self> {
                &mut w.$field
            }
            fn deadline(&self) -> Option<crate::Timestamp> {
                let $d = self;
                $deadline
            }
        }
    };
}

record!(Vpc, Kind::Vpc, vpcs, meta);
record!(Subnet, Kind::Subnet, subnets, meta);
record!(RouteTable, Kind::RouteTable, route_tables, meta);
record!(InternetGateway, Kind::InternetGateway, igws, meta);
record!(SecurityGroup, Kind::SecurityGroup, sgs, meta);
record!(NetworkAcl, Kind::NetworkAcl, acls, meta);
record!(Peering, Kind::Peering, peerings, r => r.id.as_str(), p => crate::ops::peering::deadline(p));
record!(Instance, Kind::Instance, instances, meta, i => i.transition_due);
record!(NetworkInterface, Kind::NetworkInterface, enis, meta);
record!(NatGateway, Kind::NatGateway, nat_gateways, meta, g => crate::ops::nat::deadline(g));
record!(Address, Kind::Address, addresses, meta);
record!(
    NetworkInsightsPath,
    Kind::NetworkInsightsPath,
    insights_paths,
    meta
);
record!(
    NetworkInsightsAnalysis,
    Kind::NetworkInsightsAnalysis,
    insights_analyses,
    meta
);
record!(Volume, Kind::Volume, volumes, meta);
record!(FlowLog, Kind::FlowLog, flow_logs, meta);
record!(Detachment, Kind::Detachment, detachments, r => r.id.as_str(), d => Some(d.until));
record!(RegionInit, Kind::RegionInit, inits, r => r.id.as_str());
record!(ManagedPrefixList, Kind::PrefixList, prefix_lists, meta);
record!(VpcEndpoint, Kind::VpcEndpoint, endpoints, meta);
record!(
    EgressOnlyInternetGateway,
    Kind::EgressOnlyInternetGateway,
    eigws,
    meta
);
record!(DhcpOptions, Kind::DhcpOptions, dhcp_options, meta);
record!(HostedZone, Kind::HostedZone, hosted_zones, meta);
record!(ZoneChange, Kind::ZoneChange, zone_changes, r => r.id.as_str());

/// The desired state of every account in every region.
///
/// Cloning is cheap (structural sharing), so a writer works on a copy and
/// publishes it only when the store has committed [`World::changes`].
#[derive(Debug, Clone, Default)]
pub struct World {
    pub vpcs: Table<Vpc>,
    pub subnets: Table<Subnet>,
    pub route_tables: Table<RouteTable>,
    pub igws: Table<InternetGateway>,
    pub sgs: Table<SecurityGroup>,
    pub acls: Table<NetworkAcl>,
    pub peerings: Table<Peering>,
    pub inits: Table<RegionInit>,
    pub instances: Table<Instance>,
    pub enis: Table<NetworkInterface>,
    pub nat_gateways: Table<NatGateway>,
    pub addresses: Table<Address>,
    pub insights_paths: Table<NetworkInsightsPath>,
    pub insights_analyses: Table<NetworkInsightsAnalysis>,
    pub volumes: Table<Volume>,
    pub detachments: Table<Detachment>,
    pub prefix_lists: Table<ManagedPrefixList>,
    pub endpoints: Table<VpcEndpoint>,
    pub eigws: Table<EgressOnlyInternetGateway>,
    pub flow_logs: Table<FlowLog>,
    pub dhcp_options: Table<DhcpOptions>,
    pub hosted_zones: Table<HostedZone>,
    pub zone_changes: Table<ZoneChange>,
    changes: Vec<(Kind, String)>,
}

impl World {
    pub fn get<R: Record>(&self, id: &str) -> Option<&R> {
        R::table(self).get(id)
    }

    pub fn iter<R: Record>(&self) -> impl Iterator<Item = &R> {
        R::table(self).iter()
    }

    /// Inserts or replaces a record and notes the change.
    pub fn put<R: Record>(&mut self, r: R) {
        self.changes.push((R::KIND, r.id().to_string()));
        R::table_mut(self).insert(r);
    }

    /// Removes a record and notes the change.
    pub fn remove<R: Record>(&mut self, id: &str) -> Option<R> {
        self.changes.push((R::KIND, id.to_string()));
        R::table_mut(self).remove(id)
    }

    /// Changes one record in place and notes the change. Returns false when absent.
    pub fn update<R: Record>(&mut self, id: &str, f: impl FnOnce(&mut R)) -> bool {
        let table = R::table_mut(self);
        let Some(r) = table.map.get_mut(id) else {
            return false;
        };
        let (before, due_before) = (scope_key(&**r), r.deadline());
        f(Arc::make_mut(r));
        let (after, due_after) = (scope_key(&**r), r.deadline());
        if before != after {
            table.count(before, -1);
            table.count(after, 1);
        }
        table.reschedule(id, due_before, due_after);
        self.changes.push((R::KIND, id.to_string()));
        true
    }

    /// Inserts a record without noting a change (used when loading from the store).
    pub fn load<R: Record>(&mut self, r: R) {
        R::table_mut(self).insert(r);
    }

    /// The (kind, id) pairs changed since the last [`World::take_changes`], deduplicated.
    pub fn take_changes(&mut self) -> Vec<(Kind, String)> {
        let mut c = std::mem::take(&mut self.changes);
        c.sort();
        c.dedup();
        c
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The record serialised for storage, or None when it is gone.
    pub fn encode(&self, kind: Kind, id: &str) -> Option<String> {
        fn enc<R: Record>(w: &World, id: &str) -> Option<String> {
            w.get::<R>(id)
                .map(|r| serde_json::to_string(r).expect("model types serialise"))
        }
        match kind {
            Kind::Vpc => enc::<Vpc>(self, id),
            Kind::Subnet => enc::<Subnet>(self, id),
            Kind::RouteTable => enc::<RouteTable>(self, id),
            Kind::InternetGateway => enc::<InternetGateway>(self, id),
            Kind::SecurityGroup => enc::<SecurityGroup>(self, id),
            Kind::NetworkAcl => enc::<NetworkAcl>(self, id),
            Kind::Peering => enc::<Peering>(self, id),
            Kind::RegionInit => enc::<RegionInit>(self, id),
            Kind::Instance => enc::<Instance>(self, id),
            Kind::NetworkInterface => enc::<NetworkInterface>(self, id),
            Kind::NatGateway => enc::<NatGateway>(self, id),
            Kind::Address => enc::<Address>(self, id),
            Kind::NetworkInsightsPath => enc::<NetworkInsightsPath>(self, id),
            Kind::NetworkInsightsAnalysis => enc::<NetworkInsightsAnalysis>(self, id),
            Kind::Volume => enc::<Volume>(self, id),
            Kind::FlowLog => enc::<FlowLog>(self, id),
            Kind::Detachment => enc::<Detachment>(self, id),
            Kind::PrefixList => enc::<ManagedPrefixList>(self, id),
            Kind::VpcEndpoint => enc::<VpcEndpoint>(self, id),
            Kind::EgressOnlyInternetGateway => enc::<EgressOnlyInternetGateway>(self, id),
            Kind::DhcpOptions => enc::<DhcpOptions>(self, id),
            Kind::HostedZone => enc::<HostedZone>(self, id),
            Kind::ZoneChange => enc::<ZoneChange>(self, id),
        }
    }

    /// Up to `limit` records of `kind` in ID order, starting after `after`
    /// (from the first when None), each as (ID, the body [`World::encode`]
    /// gives). The store writes a compacted copy of the World with this, a
    /// slice at a time, in its key order.
    pub fn encode_after(
        &self,
        kind: Kind,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, String)> {
        fn enc<R: Record>(w: &World, after: Option<&str>, limit: usize) -> Vec<(String, String)> {
            use std::ops::Bound;
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            R::table(w)
                .map
                .range::<_, str>((from, Bound::Unbounded))
                .take(limit)
                .map(|(id, r)| {
                    let body = serde_json::to_string(&**r).expect("model types serialise");
                    (id.clone(), body)
                })
                .collect()
        }
        match kind {
            Kind::Vpc => enc::<Vpc>(self, after, limit),
            Kind::Subnet => enc::<Subnet>(self, after, limit),
            Kind::RouteTable => enc::<RouteTable>(self, after, limit),
            Kind::InternetGateway => enc::<InternetGateway>(self, after, limit),
            Kind::SecurityGroup => enc::<SecurityGroup>(self, after, limit),
            Kind::NetworkAcl => enc::<NetworkAcl>(self, after, limit),
            Kind::Peering => enc::<Peering>(self, after, limit),
            Kind::RegionInit => enc::<RegionInit>(self, after, limit),
            Kind::Instance => enc::<Instance>(self, after, limit),
            Kind::NetworkInterface => enc::<NetworkInterface>(self, after, limit),
            Kind::NatGateway => enc::<NatGateway>(self, after, limit),
            Kind::Address => enc::<Address>(self, after, limit),
            Kind::NetworkInsightsPath => enc::<NetworkInsightsPath>(self, after, limit),
            Kind::NetworkInsightsAnalysis => enc::<NetworkInsightsAnalysis>(self, after, limit),
            Kind::Volume => enc::<Volume>(self, after, limit),
            Kind::FlowLog => enc::<FlowLog>(self, after, limit),
            Kind::Detachment => enc::<Detachment>(self, after, limit),
            Kind::PrefixList => enc::<ManagedPrefixList>(self, after, limit),
            Kind::VpcEndpoint => enc::<VpcEndpoint>(self, after, limit),
            Kind::EgressOnlyInternetGateway => enc::<EgressOnlyInternetGateway>(self, after, limit),
            Kind::DhcpOptions => enc::<DhcpOptions>(self, after, limit),
            Kind::HostedZone => enc::<HostedZone>(self, after, limit),
            Kind::ZoneChange => enc::<ZoneChange>(self, after, limit),
        }
    }

    /// Loads one stored record.
    pub fn decode(&mut self, kind: Kind, body: &str) -> Result<(), serde_json::Error> {
        fn dec<R: Record>(w: &mut World, body: &str) -> Result<(), serde_json::Error> {
            w.load::<R>(serde_json::from_str(body)?);
            Ok(())
        }
        match kind {
            Kind::Vpc => dec::<Vpc>(self, body),
            Kind::Subnet => dec::<Subnet>(self, body),
            Kind::RouteTable => dec::<RouteTable>(self, body),
            Kind::InternetGateway => dec::<InternetGateway>(self, body),
            Kind::SecurityGroup => dec::<SecurityGroup>(self, body),
            Kind::NetworkAcl => dec::<NetworkAcl>(self, body),
            Kind::Peering => dec::<Peering>(self, body),
            Kind::RegionInit => dec::<RegionInit>(self, body),
            Kind::Instance => dec::<Instance>(self, body),
            Kind::NetworkInterface => dec::<NetworkInterface>(self, body),
            Kind::NatGateway => dec::<NatGateway>(self, body),
            Kind::Address => dec::<Address>(self, body),
            Kind::NetworkInsightsPath => dec::<NetworkInsightsPath>(self, body),
            Kind::NetworkInsightsAnalysis => dec::<NetworkInsightsAnalysis>(self, body),
            Kind::Volume => dec::<Volume>(self, body),
            Kind::FlowLog => dec::<FlowLog>(self, body),
            Kind::Detachment => dec::<Detachment>(self, body),
            Kind::PrefixList => dec::<ManagedPrefixList>(self, body),
            Kind::VpcEndpoint => dec::<VpcEndpoint>(self, body),
            Kind::EgressOnlyInternetGateway => dec::<EgressOnlyInternetGateway>(self, body),
            Kind::DhcpOptions => dec::<DhcpOptions>(self, body),
            Kind::HostedZone => dec::<HostedZone>(self, body),
            Kind::ZoneChange => dec::<ZoneChange>(self, body),
        }
    }

    /// Removes one record without noting a change (used when following
    /// another server's commits). Returns whether it was there.
    pub fn forget(&mut self, kind: Kind, id: &str) -> bool {
        fn rm<R: Record>(w: &mut World, id: &str) -> bool {
            R::table_mut(w).remove(id).is_some()
        }
        match kind {
            Kind::Vpc => rm::<Vpc>(self, id),
            Kind::Subnet => rm::<Subnet>(self, id),
            Kind::RouteTable => rm::<RouteTable>(self, id),
            Kind::InternetGateway => rm::<InternetGateway>(self, id),
            Kind::SecurityGroup => rm::<SecurityGroup>(self, id),
            Kind::NetworkAcl => rm::<NetworkAcl>(self, id),
            Kind::Peering => rm::<Peering>(self, id),
            Kind::RegionInit => rm::<RegionInit>(self, id),
            Kind::Instance => rm::<Instance>(self, id),
            Kind::NetworkInterface => rm::<NetworkInterface>(self, id),
            Kind::NatGateway => rm::<NatGateway>(self, id),
            Kind::Address => rm::<Address>(self, id),
            Kind::NetworkInsightsPath => rm::<NetworkInsightsPath>(self, id),
            Kind::NetworkInsightsAnalysis => rm::<NetworkInsightsAnalysis>(self, id),
            Kind::Volume => rm::<Volume>(self, id),
            Kind::Detachment => rm::<Detachment>(self, id),
            Kind::DhcpOptions => rm::<DhcpOptions>(self, id),
            Kind::HostedZone => rm::<HostedZone>(self, id),
            Kind::ZoneChange => rm::<ZoneChange>(self, id),
            Kind::FlowLog => rm::<FlowLog>(self, id),
            Kind::PrefixList => rm::<ManagedPrefixList>(self, id),
            Kind::VpcEndpoint => rm::<VpcEndpoint>(self, id),
            Kind::EgressOnlyInternetGateway => rm::<EgressOnlyInternetGateway>(self, id),
        }
    }

    /// The record if the caller owns it in this region; otherwise `not_found`.
    ///
    /// Another account's resource and a missing one give the same error, so an
    /// error never reveals whether someone else's resource exists.
    pub fn owned<R: Owned>(
        &self,
        id: &str,
        account: &str,
        region: &str,
        not_found: impl FnOnce() -> Fault,
    ) -> Result<&R, Fault> {
        match self.get::<R>(id) {
            Some(r) if r.meta().owner == account && r.meta().region == region => Ok(r),
            _ => Err(not_found()),
        }
    }

    /// Every record of this type the account owns in the region.
    pub fn scoped<'a, R: Owned + 'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
    ) -> impl Iterator<Item = &'a R> + 'a {
        self.iter::<R>()
            .filter(move |r| r.meta().owner == account && r.meta().region == region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc(id: &str, owner: &str, region: &str) -> Vpc {
        let mut w = World::default();
        let mut ids = crate::ctx::SeqIds(0);
        let limits = crate::Limits::default();
        let mut ctx = crate::Ctx {
            account: owner.into(),
            region: region.into(),
            now: crate::Timestamp(0),
            ids: &mut ids,
            limits: &limits,
            zones: &[],
        };
        let mut v = crate::ops::defaults::new_vpc(
            &mut w,
            &mut ctx,
            "10.0.0.0/16".parse().unwrap(),
            None,
            false,
            "default",
            Vec::new(),
        );
        v.meta.id = id.into();
        v
    }

    /// The deadline index follows every way a record changes, so the
    /// timers' lookups agree with a scan of the table.
    #[test]
    fn the_deadline_index_follows_puts_updates_and_removals() {
        use crate::Timestamp;
        let detachment = |id: &str, until: i64| Detachment {
            id: id.into(),
            eni_id: "eni-1".into(),
            attachment: EniAttachment {
                id: id.into(),
                instance_id: "i-1".into(),
                device_index: 1,
                delete_on_termination: false,
                attached_at: Timestamp(0),
            },
            until: Timestamp(until),
        };
        let scan = |w: &World, now: i64| -> Vec<String> {
            w.iter::<Detachment>()
                .filter(|d| d.until <= Timestamp(now))
                .map(|d| d.id.clone())
                .collect()
        };
        let mut w = World::default();
        assert_eq!(w.detachments.next_due(), None);
        w.put(detachment("c", 30));
        w.put(detachment("a", 10));
        w.load(detachment("b", 20));
        w.put(detachment("c", 5)); // replaced: earlier now
        w.update::<Detachment>("a", |d| d.until = Timestamp(25));
        for now in [0, 5, 10, 20, 25, 40] {
            assert_eq!(
                w.detachments.due_by(Timestamp(now)),
                scan(&w, now),
                "at {now}"
            );
        }
        assert_eq!(w.detachments.next_due(), Some(Timestamp(5)));
        w.remove::<Detachment>("c");
        w.forget(Kind::Detachment, "b");
        assert_eq!(w.detachments.due_by(Timestamp(100)), ["a"]);
        assert_eq!(w.detachments.next_due(), Some(Timestamp(25)));
        // A clone keeps its own index.
        let before = w.clone();
        w.remove::<Detachment>("a");
        assert_eq!(w.detachments.next_due(), None);
        assert_eq!(before.detachments.next_due(), Some(Timestamp(25)));
        // Kinds without timers have nothing indexed.
        w.put(RegionInit {
            id: "r".into(),
            default_vpc: None,
            default_dhcp_options: None,
        });
        assert_eq!(w.inits.next_due(), None);
    }

    #[test]
    fn encode_after_walks_a_kind_in_id_order_a_slice_at_a_time() {
        let mut w = World::default();
        for id in ["b", "a", "d", "c"] {
            w.put(RegionInit {
                id: id.into(),
                default_vpc: None,
                default_dhcp_options: None,
            });
        }
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids(w.encode_after(Kind::RegionInit, None, 3)),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(w.encode_after(Kind::RegionInit, Some("b"), 3)),
            ["c", "d"]
        );
        assert!(w.encode_after(Kind::RegionInit, Some("d"), 3).is_empty());
        assert!(w.encode_after(Kind::Vpc, None, 3).is_empty());
        let (_, body) = &w.encode_after(Kind::RegionInit, Some("a"), 1)[0];
        assert_eq!(Some(body.clone()), w.encode(Kind::RegionInit, "b"));
    }

    #[test]
    fn per_scope_counts_follow_every_change() {
        let mut w = World::default();
        let scan = |w: &World, o: &str, r: &str| w.scoped::<Vpc>(o, r).count();
        w.put(vpc("vpc-1", "111111111111", "us-east-1"));
        w.put(vpc("vpc-2", "111111111111", "us-east-1"));
        w.load(vpc("vpc-3", "222222222222", "us-east-1"));
        w.put(vpc("vpc-2", "111111111111", "us-west-2")); // replaced, moved
        w.update::<Vpc>("vpc-1", |v| v.meta.owner = "222222222222".into());
        w.remove::<Vpc>("vpc-3");
        w.remove::<Vpc>("vpc-missing");
        for (o, r) in [
            ("111111111111", "us-east-1"),
            ("111111111111", "us-west-2"),
            ("222222222222", "us-east-1"),
            ("333333333333", "us-east-1"),
        ] {
            assert_eq!(w.vpcs.count_in(o, r), scan(&w, o, r), "{o} {r}");
        }
        assert_eq!(w.vpcs.count_in("222222222222", "us-east-1"), 1);
    }
}
