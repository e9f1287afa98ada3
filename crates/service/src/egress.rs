//! Where webhooks may go: the address rules checked when an endpoint is
//! registered and again at every connection (the dispatcher's resolver in
//! `cardcore-webhooks` returns only addresses this module allows, so what
//! was checked is what is connected to: no second lookup for DNS rebinding
//! to slip into).
//!
//! A tenant names a URL; without these rules the server would POST, from
//! inside the issuer's network, to whatever that URL resolves to (the cloud
//! metadata service, a database port, an admin page) and show the tenant
//! each status and timing. So only public unicast addresses are reached,
//! over https; the operator may admit ranges (`--webhook-allow-networks`)
//! for receivers inside a VPC, where plain http is then allowed too.
//!
//! Host spellings (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) are
//! normalized by the URL parser (WHATWG host parsing) before any rule runs;
//! IPv4-mapped (`::ffff:127.0.0.1`) and NAT64 (`64:ff9b::a00:1`) IPv6
//! addresses are judged by the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use ipnet::IpNet;

/// Why an address is not a public unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and unique local `fc00::/7`.
    Private,
    /// `169.254/16` (the cloud metadata address among them) and `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, the carrier-grade NAT shared space.
    SharedAddressSpace,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment, reserved and
    /// deprecated ranges (IPv4-compatible IPv6, 6to4, Teredo, site-local...):
    /// nothing a receiver lives on.
    Reserved,
}

impl Blocked {
    /// What the address is, for a refusal message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address (0.0.0.0/8, ::)",
            Self::Loopback => "a loopback address (127.0.0.0/8, ::1)",
            Self::Private => "a private address (10/8, 172.16/12, 192.168/16, fc00::/7)",
            Self::LinkLocal => "a link-local address (169.254/16 including the metadata service, fe80::/10)",
            Self::SharedAddressSpace => "a carrier-grade NAT address (100.64/10)",
            Self::Multicast => "a multicast address (224/4, ff00::/8)",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved or documentation address",
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(a, b, c, d), len)
}

/// IPv4 ranges that are not public unicast, most specific reasons first.
const V4_BLOCKED: &[((Ipv4Addr, u8), Blocked)] = &[
    (v4(0, 0, 0, 0, 8), Blocked::Unspecified),
    (v4(127, 0, 0, 0, 8), Blocked::Loopback),
    (v4(10, 0, 0, 0, 8), Blocked::Private),
    (v4(172, 16, 0, 0, 12), Blocked::Private),
    (v4(192, 168, 0, 0, 16), Blocked::Private),
    (v4(169, 254, 0, 0, 16), Blocked::LinkLocal),
    (v4(100, 64, 0, 0, 10), Blocked::SharedAddressSpace),
    (v4(224, 0, 0, 0, 4), Blocked::Multicast),
    (v4(255, 255, 255, 255, 32), Blocked::Broadcast),
    (v4(240, 0, 0, 0, 4), Blocked::Reserved),
    (v4(192, 0, 0, 0, 24), Blocked::Reserved),
    (v4(192, 0, 2, 0, 24), Blocked::Reserved),
    (v4(192, 88, 99, 0, 24), Blocked::Reserved),
    (v4(198, 18, 0, 0, 15), Blocked::Reserved),
    (v4(198, 51, 100, 0, 24), Blocked::Reserved),
    (v4(203, 0, 113, 0, 24), Blocked::Reserved),
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    u128::from(ip) & mask == net & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    V4_BLOCKED.iter().find(|(net, _)| in_v4(ip, *net)).map(|(_, why)| *why)
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped
/// (`::ffff:0:0/96`) and the NAT64 well-known prefix (`64:ff9b::/96`), whose
/// packets reach that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(ip);
    in_v6(ip, 0x0064_ff9b_u128 << 96, 96).then(|| Ipv4Addr::from((bits & 0xffff_ffff) as u32))
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let is = |net: u128, len: u32| in_v6(ip, net, len);
    if is(0xff00_u128 << 112, 8) {
        return Some(Blocked::Multicast);
    }
    if is(0xfc00_u128 << 112, 7) {
        return Some(Blocked::Private);
    }
    if is(0xfe80_u128 << 112, 10) {
        return Some(Blocked::LinkLocal);
    }
    // Global unicast is 2000::/3; everything else (IPv4-compatible ::/96,
    // discard 100::/64, site-local fec0::/10, unassigned space) is not a
    // receiver. Inside it: protocol assignments and Teredo (2001::/23),
    // documentation (2001:db8::/32, 3fff::/20), 6to4 (2002::/16, which
    // tunnels to an IPv4 address of anyone's choosing).
    if !is(0x2000_u128 << 112, 3)
        || is(0x2001_u128 << 112, 23)
        || is(0x2001_0db8_u128 << 96, 32)
        || is(0x2002_u128 << 112, 16)
        || is(0x3fff_u128 << 112, 20)
    {
        return Some(Blocked::Reserved);
    }
    None
}

/// Why an address is not public unicast; `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The address as the network treats it: IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a webhook target is refused. Never carries the URL or the address
/// (the attempt log and the 422 are the tenant's to read, and a URL may
/// hold a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The host is (or resolves to) an address that is not public.
    Blocked(Blocked),
    /// Plain http to a public address.
    PlainHttp,
    /// The host has no address (or the lookup failed).
    Unresolved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blocked(why) => write!(
                f,
                "the host is or resolves to {}; webhooks go to public addresses only, unless the operator admits the network (--webhook-allow-networks)",
                why.describe()
            ),
            Self::PlainHttp => f.write_str(
                "must be https: plain http is allowed only to networks the operator admits (--webhook-allow-networks)",
            ),
            Self::Unresolved => f.write_str("the host does not resolve to any address"),
        }
    }
}

impl std::error::Error for Refusal {}

/// Longest a registration waits for the host's addresses.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The address rules with the networks the operator admits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookNetworks {
    allow: Vec<IpNet>,
}

impl WebhookNetworks {
    /// Rules admitting these networks besides the public internet.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Parses `CIDR[,CIDR…]` (a bare address is one host); empty admits nothing.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allow = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a network in CIDR notation (e.g. 10.0.0.0/8, fd00::/8)"))?;
            allow.push(net.trunc());
        }
        Ok(Self { allow })
    }

    /// The admitted networks.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    fn admitted(&self, ip: IpAddr) -> bool {
        let canon = canonical(ip);
        self.allow.iter().any(|net| net.contains(&ip) || net.contains(&canon))
    }

    /// Whether a connection to `ip` is allowed: an admitted network, or
    /// (over https only) a public address.
    pub fn check(&self, https: bool, ip: IpAddr) -> Result<(), Refusal> {
        if self.admitted(ip) {
            return Ok(());
        }
        if let Some(why) = classify(ip) {
            return Err(Refusal::Blocked(why));
        }
        if https {
            Ok(())
        } else {
            Err(Refusal::PlainHttp)
        }
    }

    /// Checks every address a host resolved to: one refused address refuses
    /// the host (a name that also points inside is not a public receiver).
    pub fn check_all(&self, https: bool, addrs: &[SocketAddr]) -> Result<(), Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::Unresolved);
        }
        addrs.iter().try_for_each(|a| self.check(https, a.ip()))
    }

    /// The host's addresses, resolved once and checked; what is returned
    /// is what may be connected to.
    pub async fn resolve(&self, https: bool, host: &url::Host<&str>, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let addrs: Vec<SocketAddr> = match host {
            url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
            url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
            url::Host::Domain(name) => {
                match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((*name, port))).await {
                    Ok(Ok(found)) => found.collect(),
                    Ok(Err(_)) | Err(_) => return Err(Refusal::Unresolved),
                }
            }
        };
        self.check_all(https, &addrs)?;
        Ok(addrs)
    }

    /// Checks a webhook URL's target (resolving its host) as registration does.
    pub async fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(Refusal::PlainHttp),
        };
        let host = url.host().ok_or(Refusal::Unresolved)?;
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        self.resolve(https, &host, port).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The host of a URL as the parser (WHATWG) normalizes it.
    fn host_ip(url: &str) -> IpAddr {
        match url::Url::parse(url).unwrap().host().unwrap() {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(d) => panic!("{url}: parsed as the name {d}"),
        }
    }

    #[test]
    fn every_spelling_of_an_inside_address_is_refused() {
        let cases: &[(&str, Blocked)] = &[
            ("http://127.0.0.1/", Blocked::Loopback),
            ("http://2130706433/", Blocked::Loopback),
            ("http://0x7f000001/", Blocked::Loopback),
            ("http://0x7F.0.0.1/", Blocked::Loopback),
            ("http://0177.0.0.1/", Blocked::Loopback),
            ("http://017700000001/", Blocked::Loopback),
            ("http://127.1/", Blocked::Loopback),
            ("http://127.0.1/", Blocked::Loopback),
            ("http://127.255.255.254/", Blocked::Loopback),
            ("http://[::1]/", Blocked::Loopback),
            ("http://[0:0:0:0:0:0:0:1]/", Blocked::Loopback),
            ("http://[::ffff:127.0.0.1]/", Blocked::Loopback),
            ("http://[::ffff:7f00:1]/", Blocked::Loopback),
            ("http://[64:ff9b::7f00:1]/", Blocked::Loopback),
            ("http://0.0.0.0/", Blocked::Unspecified),
            ("http://0/", Blocked::Unspecified),
            ("http://[::]/", Blocked::Unspecified),
            ("http://10.0.0.1/", Blocked::Private),
            ("http://167772161/", Blocked::Private),
            ("http://012.0.0.1/", Blocked::Private),
            ("http://172.16.0.1/", Blocked::Private),
            ("http://172.31.255.255/", Blocked::Private),
            ("http://192.168.1.1/", Blocked::Private),
            ("http://0xc0a80101/", Blocked::Private),
            ("http://[::ffff:192.168.1.1]/", Blocked::Private),
            ("http://[::ffff:10.0.0.1]/", Blocked::Private),
            ("http://[fc00::1]/", Blocked::Private),
            ("http://[fd00:ec2::254]/", Blocked::Private),
            ("http://169.254.169.254/", Blocked::LinkLocal),
            ("http://2852039166/", Blocked::LinkLocal),
            ("http://0xa9fea9fe/", Blocked::LinkLocal),
            ("http://[::ffff:169.254.169.254]/", Blocked::LinkLocal),
            ("http://[::ffff:a9fe:a9fe]/", Blocked::LinkLocal),
            ("http://[fe80::1]/", Blocked::LinkLocal),
            ("http://100.64.0.1/", Blocked::SharedAddressSpace),
            ("http://100.127.255.255/", Blocked::SharedAddressSpace),
            ("http://224.0.0.1/", Blocked::Multicast),
            ("http://239.255.255.250/", Blocked::Multicast),
            ("http://[ff02::1]/", Blocked::Multicast),
            ("http://255.255.255.255/", Blocked::Broadcast),
            ("http://4294967295/", Blocked::Broadcast),
            ("http://240.0.0.1/", Blocked::Reserved),
            ("http://192.0.2.1/", Blocked::Reserved),
            ("http://198.51.100.7/", Blocked::Reserved),
            ("http://203.0.113.9/", Blocked::Reserved),
            ("http://198.18.0.1/", Blocked::Reserved),
            ("http://192.0.0.8/", Blocked::Reserved),
            ("http://[::127.0.0.1]/", Blocked::Reserved),
            ("http://[::8.8.8.8]/", Blocked::Reserved),
            ("http://[2001:db8::1]/", Blocked::Reserved),
            ("http://[2002:7f00:1::]/", Blocked::Reserved),
            ("http://[2001::1]/", Blocked::Reserved),
            ("http://[fec0::1]/", Blocked::Reserved),
            ("http://[100::1]/", Blocked::Reserved),
        ];
        let rules = WebhookNetworks::default();
        for (url, why) in cases {
            let ip = host_ip(url);
            assert_eq!(classify(ip), Some(*why), "{url} ({ip})");
            for https in [true, false] {
                assert_eq!(rules.check(https, ip), Err(Refusal::Blocked(*why)), "{url}");
            }
        }
    }

    #[test]
    fn public_addresses_need_https() {
        let rules = WebhookNetworks::default();
        for url in [
            "https://8.8.8.8/",
            "https://134744072/",
            "https://1.1.1.1/",
            "https://100.63.255.255/",
            "https://100.128.0.0/",
            "https://172.15.255.255/",
            "https://172.32.0.0/",
            "https://11.0.0.1/",
            "https://[2606:4700:4700::1111]/",
            "https://[::ffff:8.8.8.8]/",
            "https://[64:ff9b::808:808]/",
        ] {
            let ip = host_ip(url);
            assert_eq!(classify(ip), None, "{url} ({ip}) is public");
            assert_eq!(rules.check(true, ip), Ok(()), "{url}");
            assert_eq!(rules.check(false, ip), Err(Refusal::PlainHttp), "{url} over http");
        }
    }

    #[test]
    fn admitted_networks_allow_http_and_inside_addresses() {
        let rules = WebhookNetworks::parse("127.0.0.0/8, ::1/128,10.1.2.3").unwrap();
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "10.1.2.3"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(rules.check(false, ip), Ok(()), "{ip}");
            assert_eq!(rules.check(true, ip), Ok(()), "{ip}");
        }
        for (ip, why) in [
            ("10.1.2.4", Blocked::Private),
            ("169.254.169.254", Blocked::LinkLocal),
            ("::2", Blocked::Reserved),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(rules.check(false, ip), Err(Refusal::Blocked(why)), "{ip}");
        }
        assert_eq!(WebhookNetworks::parse("").unwrap(), WebhookNetworks::default());
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8", "::1/129"] {
            let e = WebhookNetworks::parse(bad).unwrap_err();
            assert!(e.contains("CIDR"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_inside_address_refuses_the_whole_name() {
        let rules = WebhookNetworks::default();
        let public: SocketAddr = "8.8.8.8:443".parse().unwrap();
        let inside: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(rules.check_all(true, &[public]), Ok(()));
        assert_eq!(
            rules.check_all(true, &[public, inside]),
            Err(Refusal::Blocked(Blocked::Private))
        );
        assert_eq!(rules.check_all(true, &[]), Err(Refusal::Unresolved));
    }

    #[tokio::test]
    async fn localhost_resolves_and_is_refused_unless_admitted() {
        let url = url::Url::parse("http://localhost:9/hook").unwrap();
        assert_eq!(
            WebhookNetworks::default().check_url(&url).await,
            Err(Refusal::Blocked(Blocked::Loopback))
        );
        let admitted = WebhookNetworks::parse("127.0.0.0/8,::1/128").unwrap();
        assert_eq!(admitted.check_url(&url).await, Ok(()));
    }
}
