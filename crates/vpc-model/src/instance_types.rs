//! The instance-type catalogue: what `DescribeInstanceTypes` answers, and the
//! per-type network limits RunInstances, AttachNetworkInterface and
//! AssignPrivateIpAddresses enforce.
//!
//! The catalogue is data: one [`Family`] row per family (the values its sizes
//! share) and one [`InstanceType`] row per size. Network limits are AWS's
//! published figures ("Maximum IP addresses per network interface", EC2 User
//! Guide); vCPUs, memory, network performance and clock speeds are AWS's
//! `DescribeInstanceTypes` output for these types.

/// What every size of one family shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    pub name: &'static str,
    /// `xen` or `nitro`.
    pub hypervisor: &'static str,
    /// `Intel`, `AMD` or `AWS`.
    pub manufacturer: &'static str,
    pub clock_ghz: f64,
    pub threads_per_core: u32,
    pub architectures: &'static [&'static str],
    pub burstable: bool,
    /// The CPU credit option a launch gets without `CreditSpecification`
    /// (burstable families only): `standard` for T2, `unlimited` for T3, T3a, T4g.
    pub default_credits: Option<&'static str>,
    /// `required`, `supported` or `unsupported`.
    pub ena: &'static str,
    /// `default` (always EBS-optimized), `supported` or `unsupported`.
    pub ebs_optimized: &'static str,
    pub nvme: &'static str,
    pub boot_modes: &'static [&'static str],
    pub placement_strategies: &'static [&'static str],
    pub current_generation: bool,
}

/// One instance type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    pub family: &'static Family,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub network_performance: &'static str,
    /// Network interfaces one instance may have attached.
    pub max_interfaces: usize,
    /// Private IPv4 addresses per interface, the primary included.
    pub ipv4_per_interface: usize,
    pub ipv6_per_interface: usize,
    /// Overrides the family's architectures (T2's small sizes also run i386).
    pub architectures: Option<&'static [&'static str]>,
    pub free_tier: bool,
}

impl InstanceType {
    /// Whether the type can run in an IPv6-only subnet: AWS supports
    /// IPv6-only interfaces on Nitro-based types only.
    pub fn supports_ipv6_only(&self) -> bool {
        self.family.hypervisor == "nitro"
    }

    pub fn cores(&self) -> u32 {
        (self.vcpus / self.family.threads_per_core).max(1)
    }

    pub fn architectures(&self) -> &'static [&'static str] {
        self.architectures.unwrap_or(self.family.architectures)
    }

    pub fn burstable(&self) -> bool {
        self.family.burstable
    }

    /// The architecture an instance of this type reports (its first one, x86_64 before i386).
    pub fn architecture(&self) -> &'static str {
        let a = self.architectures();
        if a.contains(&"x86_64") {
            "x86_64"
        } else {
            a.first().copied().unwrap_or("x86_64")
        }
    }

    /// The boot mode an instance of this type starts in.
    pub fn boot_mode(&self) -> &'static str {
        self.family
            .boot_modes
            .first()
            .copied()
            .unwrap_or("legacy-bios")
    }
}

const X86: &[&str] = &["x86_64"];
const X86_I386: &[&str] = &["i386", "x86_64"];
const ARM: &[&str] = &["arm64"];
const BIOS: &[&str] = &["legacy-bios"];
const BIOS_UEFI: &[&str] = &["legacy-bios", "uefi"];
const UEFI: &[&str] = &["uefi"];
const T_PLACEMENT: &[&str] = &["partition", "spread"];
const MCR_PLACEMENT: &[&str] = &["cluster", "partition", "spread"];

const fn nitro(
    name: &'static str,
    manufacturer: &'static str,
    clock_ghz: f64,
    threads_per_core: u32,
    burstable: bool,
) -> Family {
    Family {
        name,
        hypervisor: "nitro",
        manufacturer,
        clock_ghz,
        threads_per_core,
        architectures: X86,
        burstable,
        default_credits: if burstable { Some("unlimited") } else { None },
        ena: "required",
        ebs_optimized: "default",
        nvme: "required",
        boot_modes: BIOS_UEFI,
        placement_strategies: if burstable {
            T_PLACEMENT
        } else {
            MCR_PLACEMENT
        },
        current_generation: true,
    }
}

pub static T2: Family = Family {
    name: "t2",
    hypervisor: "xen",
    manufacturer: "Intel",
    clock_ghz: 2.5,
    threads_per_core: 1,
    architectures: X86,
    burstable: true,
    default_credits: Some("standard"),
    ena: "unsupported",
    ebs_optimized: "unsupported",
    nvme: "unsupported",
    boot_modes: BIOS,
    placement_strategies: T_PLACEMENT,
    current_generation: true,
};
pub static T3: Family = nitro("t3", "Intel", 2.5, 2, true);
pub static T3A: Family = nitro("t3a", "AMD", 2.2, 2, true);
pub static T4G: Family = Family {
    architectures: ARM,
    boot_modes: UEFI,
    threads_per_core: 1,
    ..nitro("t4g", "AWS", 2.5, 1, true)
};
pub static M5: Family = nitro("m5", "Intel", 3.1, 2, false);
pub static M6I: Family = nitro("m6i", "Intel", 3.5, 2, false);
pub static C5: Family = nitro("c5", "Intel", 3.4, 2, false);
pub static C6I: Family = nitro("c6i", "Intel", 3.5, 2, false);
pub static R5: Family = nitro("r5", "Intel", 3.1, 2, false);

/// `(name, family, vCPUs, MiB, network performance, (ENIs, IPv4/ENI, IPv6/ENI))`
const fn t(
    name: &'static str,
    family: &'static Family,
    vcpus: u32,
    memory_mib: u64,
    network_performance: &'static str,
    (max_interfaces, ipv4, ipv6): (usize, usize, usize),
) -> InstanceType {
    InstanceType {
        name,
        family,
        vcpus,
        memory_mib,
        network_performance,
        max_interfaces,
        ipv4_per_interface: ipv4,
        ipv6_per_interface: ipv6,
        architectures: None,
        free_tier: false,
    }
}

const fn free(mut x: InstanceType) -> InstanceType {
    x.free_tier = true;
    x
}

const fn i386(mut x: InstanceType) -> InstanceType {
    x.architectures = Some(X86_I386);
    x
}

const LM: &str = "Low to Moderate";
const UP5: &str = "Up to 5 Gigabit";
const UP10: &str = "Up to 10 Gigabit";
const UP12: &str = "Up to 12.5 Gigabit";

/// Every instance type vpcd knows, sorted by name.
pub static CATALOGUE: &[InstanceType] = &[
    t("c5.2xlarge", &C5, 8, 16384, UP10, (4, 15, 15)),
    t("c5.4xlarge", &C5, 16, 32768, UP10, (8, 30, 30)),
    t("c5.large", &C5, 2, 4096, UP10, (3, 10, 10)),
    t("c5.xlarge", &C5, 4, 8192, UP10, (4, 15, 15)),
    t("c6i.2xlarge", &C6I, 8, 16384, UP12, (4, 15, 15)),
    t("c6i.4xlarge", &C6I, 16, 32768, UP12, (8, 30, 30)),
    t("c6i.large", &C6I, 2, 4096, UP12, (3, 10, 10)),
    t("c6i.xlarge", &C6I, 4, 8192, UP12, (4, 15, 15)),
    t("m5.2xlarge", &M5, 8, 32768, UP10, (4, 15, 15)),
    t("m5.4xlarge", &M5, 16, 65536, UP10, (8, 30, 30)),
    t("m5.large", &M5, 2, 8192, UP10, (3, 10, 10)),
    t("m5.xlarge", &M5, 4, 16384, UP10, (4, 15, 15)),
    t("m6i.2xlarge", &M6I, 8, 32768, UP12, (4, 15, 15)),
    t("m6i.4xlarge", &M6I, 16, 65536, UP12, (8, 30, 30)),
    t("m6i.large", &M6I, 2, 8192, UP12, (3, 10, 10)),
    t("m6i.xlarge", &M6I, 4, 16384, UP12, (4, 15, 15)),
    t("r5.2xlarge", &R5, 8, 65536, UP10, (4, 15, 15)),
    t("r5.4xlarge", &R5, 16, 131072, UP10, (8, 30, 30)),
    t("r5.large", &R5, 2, 16384, UP10, (3, 10, 10)),
    t("r5.xlarge", &R5, 4, 32768, UP10, (4, 15, 15)),
    t("t2.2xlarge", &T2, 8, 32768, "Moderate", (3, 15, 15)),
    t("t2.large", &T2, 2, 8192, LM, (3, 12, 12)),
    i386(t("t2.medium", &T2, 2, 4096, LM, (3, 6, 6))),
    free(i386(t("t2.micro", &T2, 1, 1024, LM, (2, 2, 2)))),
    i386(t("t2.nano", &T2, 1, 512, LM, (2, 2, 2))),
    i386(t("t2.small", &T2, 1, 2048, LM, (3, 4, 4))),
    t("t2.xlarge", &T2, 4, 16384, "Moderate", (3, 15, 15)),
    t("t3.2xlarge", &T3, 8, 32768, UP5, (4, 15, 15)),
    t("t3.large", &T3, 2, 8192, UP5, (3, 12, 12)),
    t("t3.medium", &T3, 2, 4096, UP5, (3, 6, 6)),
    free(t("t3.micro", &T3, 2, 1024, UP5, (2, 2, 2))),
    t("t3.nano", &T3, 2, 512, UP5, (2, 2, 2)),
    free(t("t3.small", &T3, 2, 2048, UP5, (3, 4, 4))),
    t("t3.xlarge", &T3, 4, 16384, UP5, (4, 15, 15)),
    t("t3a.2xlarge", &T3A, 8, 32768, UP5, (4, 15, 15)),
    t("t3a.large", &T3A, 2, 8192, UP5, (3, 12, 12)),
    t("t3a.medium", &T3A, 2, 4096, UP5, (3, 6, 6)),
    t("t3a.micro", &T3A, 2, 1024, UP5, (2, 2, 2)),
    t("t3a.nano", &T3A, 2, 512, UP5, (2, 2, 2)),
    t("t3a.small", &T3A, 2, 2048, UP5, (2, 4, 4)),
    t("t3a.xlarge", &T3A, 4, 16384, UP5, (4, 15, 15)),
    t("t4g.2xlarge", &T4G, 8, 32768, UP5, (4, 15, 15)),
    t("t4g.large", &T4G, 2, 8192, UP5, (3, 12, 12)),
    t("t4g.medium", &T4G, 2, 4096, UP5, (3, 6, 6)),
    free(t("t4g.micro", &T4G, 2, 1024, UP5, (2, 2, 2))),
    t("t4g.nano", &T4G, 2, 512, UP5, (2, 2, 2)),
    t("t4g.small", &T4G, 2, 2048, UP5, (3, 4, 4)),
    t("t4g.xlarge", &T4G, 4, 16384, UP5, (4, 15, 15)),
];

/// The type RunInstances launches without `InstanceType`. AWS uses the
/// previous-generation `m1.small`, which vpcd does not list; `t3.micro` is
/// the nearest current type.
pub const DEFAULT_TYPE: &str = "t3.micro";

/// An instance type by name.
pub fn get(name: &str) -> Option<&'static InstanceType> {
    CATALOGUE
        .binary_search_by(|t| t.name.cmp(name))
        .ok()
        .map(|i| &CATALOGUE[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_unique_and_sane() {
        for w in CATALOGUE.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for t in CATALOGUE {
            assert!(
                t.name.starts_with(&format!("{}.", t.family.name)),
                "{}",
                t.name
            );
            assert!(t.max_interfaces >= 2 && t.ipv4_per_interface >= 2);
            assert_eq!(t.cores() * t.family.threads_per_core, t.vcpus.max(1));
            assert_eq!(t.burstable(), t.family.default_credits.is_some());
            assert_eq!(get(t.name), Some(t));
        }
        let m = get("t3.micro").unwrap();
        assert_eq!((m.max_interfaces, m.ipv4_per_interface), (2, 2));
        assert_eq!(
            get("t2.micro").unwrap().family.default_credits,
            Some("standard")
        );
        assert_eq!(get("t4g.micro").unwrap().architecture(), "arm64");
        assert_eq!(get("m5.4xlarge").unwrap().max_interfaces, 8);
        assert!(get(DEFAULT_TYPE).is_some());
        assert!(get("m1.small").is_none());
        assert!(get("t3.mega").is_none());
    }
}
