//! Regions and availability zones served by one vpcd.

/// The commercial regions vpcd serves by default, each with zones a, b and c.
pub const DEFAULT_REGIONS: &[(&str, &str)] = &[
    ("us-east-1", "use1"),
    ("us-east-2", "use2"),
    ("us-west-1", "usw1"),
    ("us-west-2", "usw2"),
    ("ca-central-1", "cac1"),
    ("eu-west-1", "euw1"),
    ("eu-west-2", "euw2"),
    ("eu-west-3", "euw3"),
    ("eu-central-1", "euc1"),
    ("eu-north-1", "eun1"),
    ("ap-south-1", "aps1"),
    ("ap-northeast-1", "apne1"),
    ("ap-northeast-2", "apne2"),
    ("ap-southeast-1", "apse1"),
    ("ap-southeast-2", "apse2"),
    ("sa-east-1", "sae1"),
];

pub const ZONE_LETTERS: &[char] = &['a', 'b', 'c'];

/// One configured region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// Short code used in zone IDs, e.g. `use1` → `use1-az1`.
    pub code: String,
}

impl Region {
    /// Zone names and IDs: (`us-east-1a`, `use1-az1`), …
    pub fn zones(&self) -> Vec<(String, String)> {
        ZONE_LETTERS
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    format!("{}{l}", self.name),
                    format!("{}-az{}", self.code, i + 1),
                )
            })
            .collect()
    }

    pub fn endpoint(&self) -> String {
        format!("ec2.{}.amazonaws.com", self.name)
    }
}

/// The set of regions one server answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    pub list: Vec<Region>,
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            list: DEFAULT_REGIONS
                .iter()
                .map(|(n, c)| Region {
                    name: (*n).to_string(),
                    code: (*c).to_string(),
                })
                .collect(),
        }
    }
}

impl Regions {
    pub fn get(&self, name: &str) -> Option<&Region> {
        self.list.iter().find(|r| r.name == name)
    }

    /// Builds a region list from names; unknown names get a code derived from the name.
    pub fn from_names(names: &[String]) -> Regions {
        Regions {
            list: names
                .iter()
                .map(|n| {
                    let code = DEFAULT_REGIONS
                        .iter()
                        .find(|(r, _)| r == n)
                        .map(|(_, c)| (*c).to_string())
                        .unwrap_or_else(|| n.replace('-', ""));
                    Region {
                        name: n.clone(),
                        code,
                    }
                })
                .collect(),
        }
    }

    /// The zone with this name in this region, as (name, id).
    pub fn zone(&self, region: &str, zone: &str) -> Option<(String, String)> {
        self.get(region)?
            .zones()
            .into_iter()
            .find(|(n, id)| n == zone || id == zone)
    }
}
