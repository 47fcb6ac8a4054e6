//! Resolving a query's ends: the source interface and address, and what
//! the destination is (an interface, a NAT gateway, the internet).

use crate::analysis::*;
use crate::walk::*;
use std::net::IpAddr;
use vpc_model::fault::Fault;
use vpc_model::ops;
use vpc_model::types::*;

impl<'a> Walk<'a> {
    // ---- endpoints -------------------------------------------------------------

    pub(crate) fn resolve(&mut self, q: &Query) -> Result<Resolved<'a>, Fault> {
        let w = self.w;
        match (&q.source, &q.destination) {
            (Endpoint::Address(a), Endpoint::Address(b)) if a.is_ipv6() != b.is_ipv6() => {
                return Err(Fault::invalid_param(
                    "The source and destination addresses are of different IP families.",
                ))
            }
            (_, Endpoint::Address(a)) | (Endpoint::Address(a), _) => self.v6 = a.is_ipv6(),
            _ => {}
        }
        let v6 = self.v6;
        self.protocol_number = self.proto.number(v6);
        let fam = if v6 { "IPv6" } else { "IPv4" };
        let no_addr = |id: &str| Fault::invalid_param(format!("{id} has no {fam} address."));

        // The source: an instance interface, or the internet's test host.
        let (source, fixed): (Option<(&'a Instance, &'a NetworkInterface)>, bool) = match &q.source
        {
            Endpoint::Instance(id) => {
                let inst = w
                    .get::<Instance>(id)
                    .ok_or_else(|| ops::instance::INSTANCE.not_found(id))?;
                let eni = self
                    .enis_of_instance(id)
                    .find(|e| device(e) == 0)
                    .or_else(|| self.enis_of_instance(id).next())
                    .ok_or_else(|| {
                        Fault::invalid_param(format!("{id} has no network interface."))
                    })?;
                (Some((inst, eni)), false)
            }
            Endpoint::NetworkInterface(id) => {
                let eni = w
                    .get::<NetworkInterface>(id)
                    .ok_or_else(|| ops::eni::ENI.not_found(id))?;
                let inst = self.instance_of(eni).ok_or_else(|| {
                    Fault::invalid_param(format!("{id} is not attached to an instance."))
                })?;
                (Some((inst, eni)), true)
            }
            Endpoint::Address(a) if is_internet_host(*a) => (None, false),
            Endpoint::Address(a) => {
                let mut owners = self
                    .enis_at(*a)
                    .filter_map(|e| Some((self.instance_of(e)?, e)));
                let one = owners.next().ok_or_else(|| {
                    Fault::invalid_param(format!(
                        "No instance interface has the address {a}; a source address must be an instance's or the internet test host's ({INTERNET_HOST_V4}, {INTERNET_HOST_V6})."
                    ))
                })?;
                if owners.next().is_some() {
                    return Err(Fault::invalid_param(format!(
                        "The address {a} belongs to several interfaces; name the instance or interface."
                    )));
                }
                (Some(one), true)
            }
        };
        let src_vpc = source.map(|(_, e)| e.vpc_id.as_str());

        // The destination.
        let (target, dst) = match &q.destination {
            Endpoint::Instance(id) => {
                w.get::<Instance>(id)
                    .ok_or_else(|| ops::instance::INSTANCE.not_found(id))?;
                let cands: Vec<&'a NetworkInterface> = self
                    .enis_of_instance(id)
                    .filter(|e| eni_addr(e, v6).is_some())
                    .collect();
                let pick = match src_vpc {
                    Some(sv) => cands
                        .iter()
                        .find(|e| e.vpc_id == sv)
                        .or_else(|| {
                            cands
                                .iter()
                                .find(|e| self.peering_between(sv, &e.vpc_id).is_some())
                        })
                        .or_else(|| cands.first()),
                    None => cands.first(),
                };
                let e = *pick.ok_or_else(|| no_addr(id))?;
                let private = eni_addr(e, v6).ok_or_else(|| no_addr(id))?;
                // From the internet, an instance is reached at its public IPv4.
                let public = match (source, private) {
                    (None, IpAddr::V4(p)) => ops::eni::public_ip_of(w, e)
                        .map(IpAddr::V4)
                        .filter(|_| e.primary_ip() == Some(p)),
                    _ => None,
                };
                let kind = TargetKind::Eni(e);
                (
                    Target {
                        kind,
                        public: source.is_none(),
                        by_address: false,
                    },
                    public.unwrap_or(private),
                )
            }
            Endpoint::NetworkInterface(id) => {
                let e = w
                    .get::<NetworkInterface>(id)
                    .ok_or_else(|| ops::eni::ENI.not_found(id))?;
                let private = eni_addr(e, v6).ok_or_else(|| no_addr(id))?;
                let public = match (source, private) {
                    (None, IpAddr::V4(_)) => ops::eni::public_ip_of(w, e).map(IpAddr::V4),
                    _ => None,
                };
                let kind = match self.nat_of(e) {
                    Some(n) => TargetKind::Nat(n),
                    None => TargetKind::Eni(e),
                };
                (
                    Target {
                        kind,
                        public: source.is_none(),
                        by_address: false,
                    },
                    public.unwrap_or(private),
                )
            }
            Endpoint::Address(a) => (self.resolve_address(*a, src_vpc), *a),
        };

        // The source address and the interface it leaves by.
        let (source, src) = match source {
            None => (
                Source::Internet,
                if v6 {
                    IpAddr::V6(INTERNET_HOST_V6)
                } else {
                    IpAddr::V4(INTERNET_HOST_V4)
                },
            ),
            Some((inst, eni)) => {
                let egress = self.inst_egress(inst, dst);
                let owner = if fixed { eni } else { egress.unwrap_or(eni) };
                let src = match (&q.source, v6) {
                    (Endpoint::Address(a), _) => *a,
                    _ => eni_addr(owner, v6).ok_or_else(|| no_addr(&owner.meta.id))?,
                };
                (
                    Source::Eni {
                        inst,
                        eni: owner,
                        egress,
                    },
                    src,
                )
            }
        };
        Ok(Resolved {
            source,
            target,
            src,
            dst,
        })
    }

    /// What a bare destination address is: the internet host, a public IP's
    /// owner, or a private address's owner, preferring the source's VPC, then
    /// VPCs peered with it (as the source's routes would resolve it).
    pub(crate) fn resolve_address(&self, a: IpAddr, src_vpc: Option<&str>) -> Target<'a> {
        let w = self.w;
        let t = |kind, public| Target {
            kind,
            public,
            by_address: true,
        };
        if is_internet_host(a) {
            return t(TargetKind::Internet, true);
        }
        if let IpAddr::V4(p) = a {
            if let Some((e, _)) = self.index.public_owner.get(&p) {
                if let Some(e) = w.get::<NetworkInterface>(e.as_str()) {
                    let kind = match self.nat_of(e) {
                        Some(n) => TargetKind::Nat(n),
                        None => TargetKind::Eni(e),
                    };
                    return t(kind, true);
                }
            }
        }
        let kind_of = |e: &'a NetworkInterface| match self.nat_of(e) {
            Some(n) => TargetKind::Nat(n),
            None => TargetKind::Eni(e),
        };
        let owners: Vec<&'a NetworkInterface> = self.enis_at(a).collect();
        if let Some(sv) = src_vpc {
            if let Some(e) = owners.iter().find(|e| e.vpc_id == sv) {
                return t(kind_of(e), false);
            }
            if let Some(e) = owners
                .iter()
                .find(|e| self.peering_between(sv, &e.vpc_id).is_some())
            {
                return t(kind_of(e), false);
            }
        }
        match owners.as_slice() {
            [e] => t(kind_of(e), false),
            _ => t(TargetKind::Unknown, false),
        }
    }

    pub(crate) fn target_vpc(&self, t: &Target<'a>) -> Option<&'a str> {
        match t.kind {
            TargetKind::Eni(e) => Some(&e.vpc_id),
            TargetKind::Nat(n) => Some(&n.vpc_id),
            _ => None,
        }
    }
}
