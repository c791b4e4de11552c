//! Where exporters may connect: the operator's destination policy (`--exporter-allow`,
//! `--exporter-deny`).
//!
//! A TraceSession is written by a tenant, but its exporters connect from the operator's pod: an
//! unrestricted endpoint would let a tenant make the operator talk to anything the pod can reach
//! (cloud metadata at 169.254.169.254 above all). Pure: parsing entries and deciding for one host
//! name and one address; the connector (`transport.rs`) asks for every address a name resolves
//! to, so a name that resolves (or is re-pointed) to a denied address is refused.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why an `--exporter-allow` or `--exporter-deny` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("{entry:?}: the prefix length must be a number from 0 to {max}")]
    Prefix { entry: String, max: u8 },
    #[error("{entry:?}: address bits are set past the prefix (the network is {network})")]
    HostBits { entry: String, network: String },
    #[error("{entry:?}: not an IP address in CIDR notation")]
    Address { entry: String },
    #[error(
        "{entry:?}: not a host name or `*.suffix` pattern (letters, digits, '-', '_' and dots; '*' only as the whole first label)"
    )]
    Host { entry: String },
}

/// An IP network: `10.0.0.0/8`, `fd00:ec2::254/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Zero prefix: `checked_shr` by the full width is None, and every address matches.
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u32::from(n) ^ u32::from(a))
                    .checked_shr(32 - u32::from(self.prefix))
                    .unwrap_or(0)
                    == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                (u128::from(n) ^ u128::from(a))
                    .checked_shr(128 - u32::from(self.prefix))
                    .unwrap_or(0)
                    == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:169.254.169.254`) reach the IPv4 address: they are
/// matched as that address, so a v4 entry covers them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A host name, exact or `*.suffix` (any name ending in `.suffix`, not `suffix` itself);
/// lower case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The suffix with its leading dot: `.corp.example`.
    Suffix(String),
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = normalise_host(host);
        match self {
            HostPattern::Exact(name) => host == *name,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Host names compare case-insensitively and without the root's trailing dot (`a.b.` is `a.b`).
fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// One `--exporter-allow` or `--exporter-deny` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Network(Cidr),
    Host(HostPattern),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Network(c) => c.fmt(f),
            Entry::Host(h) => h.fmt(f),
        }
    }
}

impl FromStr for Entry {
    type Err = EntryError;

    /// `10.0.0.0/8` or a bare address (a network of one), else a host pattern.
    fn from_str(raw: &str) -> Result<Entry, EntryError> {
        let entry = raw.trim();
        if let Some((addr, prefix)) = entry.split_once('/') {
            let network: IpAddr = addr.parse().map_err(|_| EntryError::Address {
                entry: entry.into(),
            })?;
            let max = if network.is_ipv4() { 32 } else { 128 };
            let prefix: u8 =
                prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or(EntryError::Prefix {
                        entry: entry.into(),
                        max,
                    })?;
            let masked = mask(network, prefix);
            if masked != network {
                return Err(EntryError::HostBits {
                    entry: entry.into(),
                    network: format!("{masked}/{prefix}"),
                });
            }
            return Ok(Entry::Network(Cidr { network, prefix }));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Entry::Network(Cidr {
                network: ip,
                prefix,
            }));
        }
        let host = normalise_host(entry);
        let bad = || EntryError::Host {
            entry: entry.into(),
        };
        let (pattern, name) = match host.strip_prefix("*.") {
            Some(suffix) => (HostPattern::Suffix(format!(".{suffix}")), suffix),
            None => (HostPattern::Exact(host.clone()), host.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(Entry::Host(pattern))
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl Entry {
    /// Whether the entry covers this destination: a network its address, a pattern its name
    /// (never a literal IP written as the host).
    fn matches(&self, host: &str, ip: Option<IpAddr>) -> bool {
        match self {
            Entry::Network(c) => ip.is_some_and(|ip| c.contains(ip)),
            Entry::Host(p) => !is_ip_literal(host) && p.matches(host),
        }
    }
}

fn is_ip_literal(host: &str) -> bool {
    literal_ip(host).is_some()
}

/// The address a URL host stands for when it is an IP literal (`[::1]` with or without brackets).
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The built-in deny entries: link-local networks (cloud metadata services answer at
/// 169.254.169.254 on every major cloud, AWS also at fd00:ec2::254) and the metadata host names.
pub const DEFAULT_DENY: [&str; 5] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "metadata.google.internal",
    "metadata.goog",
];

/// Why a destination is refused: what goes to the operator's log (the tenant's status only ever
/// says "destination not permitted").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination not permitted: {destination} {why}")]
pub struct NotPermitted {
    /// `host` or `host (address)`.
    pub destination: String,
    pub why: String,
}

/// The operator's destination policy. Deny wins over allow; with any allow entry, a destination
/// must match one (by its name or its address); with none, everything not denied is permitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationPolicy {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
}

impl Default for DestinationPolicy {
    /// The built-in denials only: loopback and private ranges stay reachable (in-cluster
    /// collectors live there).
    fn default() -> Self {
        DestinationPolicy::new(Vec::new(), Vec::new(), true)
    }
}

impl DestinationPolicy {
    /// `builtin_deny` adds [`DEFAULT_DENY`] to `deny`.
    pub fn new(allow: Vec<Entry>, mut deny: Vec<Entry>, builtin_deny: bool) -> Self {
        if builtin_deny {
            deny.extend(
                DEFAULT_DENY
                    .iter()
                    .map(|e| e.parse().expect("the built-in entries parse")),
            );
        }
        DestinationPolicy { allow, deny }
    }

    /// Decides for a host (as written in the URL) that resolved to `ip`.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), NotPermitted> {
        self.decide(host, Some(ip))
    }

    /// What can be decided before resolving: a literal IP fully; a name only when a name entry
    /// denies it, or when an allow list exists and no entry of it could match once resolved.
    pub fn precheck(&self, host: &str) -> Result<(), NotPermitted> {
        if let Some(ip) = literal_ip(host) {
            return self.check(host, ip);
        }
        if let Some(deny) = self.deny.iter().find(|e| e.matches(host, None)) {
            return Err(self.refusal(host, None, format!("is denied by {deny}")));
        }
        let may_match_by_address = self.allow.iter().any(|e| matches!(e, Entry::Network(_)));
        if !self.allow.is_empty()
            && !may_match_by_address
            && !self.allow.iter().any(|e| e.matches(host, None))
        {
            return Err(self.refusal(host, None, "matches no allow entry".into()));
        }
        Ok(())
    }

    fn decide(&self, host: &str, ip: Option<IpAddr>) -> Result<(), NotPermitted> {
        if let Some(deny) = self.deny.iter().find(|e| e.matches(host, ip)) {
            return Err(self.refusal(host, ip, format!("is denied by {deny}")));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|e| e.matches(host, ip)) {
            return Err(self.refusal(host, ip, "matches no allow entry".into()));
        }
        Ok(())
    }

    fn refusal(&self, host: &str, ip: Option<IpAddr>, why: String) -> NotPermitted {
        let destination = match ip {
            Some(ip) if !is_ip_literal(host) => format!("{host} ({ip})"),
            _ => host.to_string(),
        };
        NotPermitted { destination, why }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[&str]) -> Vec<Entry> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn entries_parse_and_bad_ones_say_why() {
        assert_eq!(
            "10.0.0.0/8".parse::<Entry>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "192.0.2.7".parse::<Entry>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "*.Corp.Example.".parse::<Entry>().unwrap(),
            Entry::Host(HostPattern::Suffix(".corp.example".into()))
        );
        assert_eq!(
            "collector.observability".parse::<Entry>().unwrap(),
            Entry::Host(HostPattern::Exact("collector.observability".into()))
        );
        assert!(matches!(
            "10.1.0.0/8".parse::<Entry>(),
            Err(EntryError::HostBits { network, .. }) if network == "10.0.0.0/8"
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Entry>(),
            Err(EntryError::Prefix { max: 32, .. })
        ));
        assert!(matches!(
            "::/129".parse::<Entry>(),
            Err(EntryError::Prefix { max: 128, .. })
        ));
        assert!(matches!(
            "nope/8".parse::<Entry>(),
            Err(EntryError::Address { .. })
        ));
        for bad in ["", "a.*.b", "*", "*.", "a..b", "exa mple.com"] {
            assert!(
                matches!(bad.parse::<Entry>(), Err(EntryError::Host { .. })),
                "{bad:?} should not parse"
            );
        }
        assert!("http://x".parse::<Entry>().is_err());
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let Entry::Network(net) = "169.254.0.0/16".parse().unwrap() else {
            panic!()
        };
        assert!(net.contains(ip("169.254.169.254")));
        assert!(!net.contains(ip("169.255.0.1")));
        assert!(
            net.contains(ip("::ffff:169.254.169.254")),
            "an IPv4-mapped address is the IPv4 address"
        );
        let Entry::Network(all) = "0.0.0.0/0".parse().unwrap() else {
            panic!()
        };
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")), "families do not mix");
        let Entry::Network(v6) = "fe80::/10".parse().unwrap() else {
            panic!()
        };
        assert!(v6.contains(ip("fe80::1")) && v6.contains(ip("febf::1")));
        assert!(!v6.contains(ip("fec0::1")));
    }

    #[test]
    fn host_patterns_match_names_not_their_suffix_alone() {
        let p: Entry = "*.corp.example".parse().unwrap();
        assert!(p.matches("otel.corp.example", None));
        assert!(p.matches("A.B.CORP.example.", None));
        assert!(!p.matches("corp.example", None));
        assert!(!p.matches("evilcorp.example", None));
        let exact: Entry = "collector".parse().unwrap();
        assert!(exact.matches("Collector", None) && !exact.matches("collector2", None));
    }

    #[test]
    fn by_default_metadata_and_link_local_are_denied_and_the_cluster_is_not() {
        let p = DestinationPolicy::default();
        for (host, addr) in [
            ("169.254.169.254", "169.254.169.254"),
            ("[fd00:ec2::254]", "fd00:ec2::254"),
            ("imds.example", "169.254.169.254"),
            ("imds.example", "fe80::1"),
            ("metadata.google.internal", "10.0.0.1"),
            ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
        ] {
            assert!(p.check(host, ip(addr)).is_err(), "{host} {addr}");
        }
        for (host, addr) in [
            ("127.0.0.1", "127.0.0.1"),
            ("otel-collector.observability", "10.96.0.12"),
            ("collector", "192.168.1.5"),
            ("[::1]", "::1"),
            ("otlp.example.com", "203.0.113.9"),
        ] {
            assert!(p.check(host, ip(addr)).is_ok(), "{host} {addr}");
        }
        assert!(p.precheck("metadata.google.internal").is_err());
        assert!(p.precheck("169.254.169.254").is_err());
        assert!(p.precheck("imds.example").is_ok(), "a name waits for DNS");
        let none = DestinationPolicy::new(vec![], vec![], false);
        assert!(none.check("x", ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn deny_wins_over_allow_and_an_allow_list_is_exclusive() {
        let p = DestinationPolicy::new(
            entries(&["10.0.0.0/8", "*.corp.example"]),
            entries(&["10.0.5.0/24", "secret.corp.example"]),
            true,
        );
        assert!(p.check("collector", ip("10.1.2.3")).is_ok());
        assert!(p.check("otel.corp.example", ip("203.0.113.1")).is_ok());
        let denied = p.check("collector", ip("10.0.5.9")).unwrap_err();
        assert_eq!(denied.destination, "collector (10.0.5.9)");
        assert!(denied.why.contains("10.0.5.0/24"), "{denied}");
        assert!(p.check("secret.corp.example", ip("10.1.1.1")).is_err());
        // A name the allow list covers still may not resolve to a denied address.
        assert!(p.check("otel.corp.example", ip("169.254.169.254")).is_err());
        let outside = p.check("example.com", ip("203.0.113.1")).unwrap_err();
        assert_eq!(outside.why, "matches no allow entry");
        assert!(p.precheck("203.0.113.1").is_err());
        assert!(p.precheck("secret.corp.example").is_err());
        assert!(p.precheck("example.com").is_ok(), "may resolve into 10/8");
        let names_only = DestinationPolicy::new(entries(&["*.corp.example"]), vec![], true);
        assert!(names_only.precheck("example.com").is_err());
        assert!(names_only.precheck("a.corp.example").is_ok());
        assert!(
            names_only.check("10.0.0.1", ip("10.0.0.1")).is_err(),
            "a pattern never matches an IP literal"
        );
    }
}
