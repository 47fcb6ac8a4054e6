//! The reply: walked back through every router the request crossed.

use crate::analysis::*;
use crate::diagnosis::{sdc_blocker, Blocker};
use crate::walk::*;

impl<'a> Walk<'a> {
    // ---- the reply -------------------------------------------------------------

    /// Walks the reply back through every router the request crossed.
    pub(crate) fn reply(&mut self, r: &Resolved<'a>, fwd: &ForwardPath<'a>) -> Step<()> {
        let mut first_iif: Option<Port<'a>> = None;
        match fwd.arrive {
            Arrival::Local => return Ok(()),
            Arrival::Internet => self.internet_hop(true),
            Arrival::Nat(n) => self.eni_hops_nat(true, n),
            Arrival::Router | Arrival::Endpoint => {}
            Arrival::Eni(e) => {
                self.eni_hops(true, e, true);
                // The destination instance's own routing picks the reply's interface.
                let (Some(inst), Some(last)) = (self.instance_of(e), fwd.crossings.last()) else {
                    return Err(Stop);
                };
                let (rsrc, rdst) = (last.dst, last.src);
                match self.inst_egress(inst, rdst) {
                    Some(z) if z.meta.id == e.meta.id => {}
                    Some(z) if !z.source_dest_check || eni_has(z, rsrc) => {
                        first_iif = Some(Port::Eni(z))
                    }
                    Some(z) => {
                        self.block(|_| sdc_blocker(z, rsrc, true))?;
                    }
                    None => {
                        self.block(|_| {
                            Blocker::new("NO_ROUTE_TO_DESTINATION", component(&inst.meta.id, "instance"), format!("{} has no route back to {rdst}.", inst.meta.id)).diagnosis(
                                    DiagnosisKind::MissingReturnRoute,
                                    format!("{} has no route back to {rdst}", inst.meta.id),
                                    format!("give the primary interface of {} an address of {rdst}'s family", inst.meta.id),
                                )
                        })?;
                    }
                }
            }
        }
        let n = fwd.crossings.len();
        for (i, t) in fwd.crossings.iter().enumerate().rev() {
            let iif = match first_iif {
                Some(p) if i + 1 == n => p,
                _ => t.oif,
            };
            let mut want = t.iif;
            let (rsrc, rdst) = (t.dst, t.src);
            let in_subnet = self.subnet_of(iif);
            let (table, look) = self.route(t.vpc, iif, rdst);
            let ok = match look {
                RouteLookup::Hit(_, p) if p.same(&want) => true,
                // Another interface of the same instance takes it as well.
                RouteLookup::Hit(_, Port::Eni(y)) => match want {
                    Port::Eni(x)
                        if x.attachment.is_some()
                            && self.instance_of(x).map(|i| &i.meta.id)
                                == self.instance_of(y).map(|i| &i.meta.id) =>
                    {
                        want = Port::Eni(y);
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            let out_subnet = self.subnet_of(want);
            if !ok && table.is_some() {
                self.return_route_failed(t, table, in_subnet, look, want, rdst, &r.source)?;
            } else if !ok {
                // Tables 250/251 miss only when the source is not running, or
                // has no public address (both reported already).
                let vid = t.vpc.meta.id.clone();
                let was = self.blocked;
                self.blocked = true;
                if !was {
                    self.block(|_| {
                        Blocker::new(
                            "NO_ROUTE_TO_DESTINATION",
                            component(&vid, "vpc"),
                            format!("The reply to {rdst} has no route in {vid}."),
                        )
                    })?;
                } else if !self.explain {
                    return Err(Stop);
                }
            }
            let mut acl_out = None;
            let mut acl_in = None;
            if let Some(s1) = in_subnet {
                if out_subnet.map(|s| &s.meta.id) != Some(&s1.meta.id) {
                    acl_out = self.nacl(s1, true, rdst, true)?;
                }
            }
            if let Some(s2) = out_subnet {
                if in_subnet.map(|s| &s.meta.id) != Some(&s2.meta.id) {
                    acl_in = self.nacl(s2, false, rsrc, true)?;
                }
            }
            if self.explain {
                let vid = Some(t.vpc.meta.id.as_str());
                if let Port::Igw(_) | Port::Eigw(_) | Port::Vpce(_) = iif {
                    self.hop(true, iif.component(), None, vid, None);
                }
                if let (Some(s), Some(x)) = (in_subnet, acl_out) {
                    self.hop(true, x.0, Some(s), vid, Some(x.1));
                }
                if let Some(rt) = table {
                    // A route that sends the reply elsewhere admitted nothing.
                    let r = if ok || !matches!(look, RouteLookup::Hit(..)) {
                        hop_route(look)
                    } else {
                        None
                    };
                    let rule = r.map(|(r, state)| route_rule(rt, r, state));
                    self.hop(
                        true,
                        component(&rt.meta.id, "route-table"),
                        in_subnet,
                        vid,
                        rule,
                    );
                }
                match want {
                    Port::Pcx(_) | Port::Igw(_) | Port::Eigw(_) | Port::Vpce(_) => {
                        self.hop(true, want.component(), None, vid, None)
                    }
                    Port::Nat(n) => self.eni_hops_nat(true, n),
                    Port::Eni(_) => {}
                }
                if let (Some(s), Some(x)) = (out_subnet, acl_in) {
                    self.hop(true, x.0, Some(s), vid, Some(x.1));
                }
            }
        }
        match r.source {
            Source::Eni { eni, egress, .. } => {
                let e = egress.unwrap_or(eni);
                self.eni_hops(true, e, false);
            }
            Source::Internet => self.internet_hop(true),
        }
        Ok(())
    }
}
