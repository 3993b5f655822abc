//! Where a webhook may point. `https://` only, to a host whose every address is public: no
//! loopback, private, link-local (the instance metadata service at 169.254.169.254 and
//! fd00:ec2::254 included), carrier-grade NAT, multicast, unspecified or reserved address, in
//! IPv4 or IPv6 (IPv4-mapped forms too). Checked when a webhook is saved, and again at every
//! delivery by the resolver the delivery connects with, so a name that later resolves
//! elsewhere (DNS rebinding) reaches nothing private.
//!
//! Locally, `WEBHOOKS_ALLOW_LOOPBACK=true` (set by `make dev` and the tests, never by the
//! template) also allows `http://127.0.0.1:<port>` and `http://localhost:<port>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAX_URL_BYTES: usize = 2048;

/// Whether the local setting allows loopback `http://` targets.
pub fn loopback_allowed() -> bool {
    std::env::var("WEBHOOKS_ALLOW_LOOPBACK").is_ok_and(|v| v == "true")
}

/// Checks a webhook URL's form (not its addresses): the reason it is refused, if it is.
pub fn check_url(raw: &str, allow_loopback: bool) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let host = url.host_str().unwrap_or("");
    let loopback_host = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match url.scheme() {
        "https" if !host.is_empty() => {}
        "http" if allow_loopback && loopback_host => {}
        "http" if allow_loopback => {
            return Err("may be http:// only to 127.0.0.1 or localhost (local setting)".into())
        }
        _ => return Err("must be an https:// URL".into()),
    }
    if !allow_loopback || !loopback_host {
        if let Some(ip) = literal_ip(&url) {
            if !is_public(ip) {
                return Err(format!("points at a non-public address ({ip})"));
            }
        }
    }
    Ok(url)
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Whether every resolved address may be connected to.
pub fn check_addresses(addrs: &[SocketAddr], allow_loopback: bool) -> Result<(), String> {
    if addrs.is_empty() {
        return Err("the host does not resolve".into());
    }
    for a in addrs {
        let ip = a.ip();
        if !(is_public(ip) || allow_loopback && ip.is_loopback()) {
            // Which address is not said: that would answer DNS questions for the caller.
            return Err("the host resolves to a non-public address".into());
        }
    }
    Ok(())
}

/// A globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254, the metadata service)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some nets)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 of any IPv4 (and /48 local)
        || first == 0x2002 // 6to4: embeds any IPv4
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible
        || ip.segments()[..6] == [0, 0, 0, 0, 0xffff, 0]) // IPv4-translated
}

/// The resolver deliveries connect with: the system's answer, refused whole if any address
/// is not public, so the connection only ever goes to addresses just checked.
#[derive(Debug)]
pub struct GuardedResolver {
    pub allow_loopback: bool,
}

impl ureq::unversioned::resolver::Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        check_addresses(&addrs, self.allow_loopback).map_err(|why| {
            ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                why,
            ))
        })?;
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_targets_pass() {
        for ok in [
            "https://hooks.example.com/in",
            "https://93.184.216.34/x",
            "https://[2606:2800:220:1::1]/x",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/in",
            "ftp://example.com",
            "https://user:pw@example.com/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00:ec2::254]/",
            "https://[fec0::1]/",
            "https://[64:ff9b:1::a00:1]/",
            "https://[2002:a00:1::1]/",
            "https://[::ffff:0:a00:1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "http://127.0.0.1:9/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8123/hook", true).is_ok());
        assert!(check_url("http://localhost:8123/hook", true).is_ok());
        assert!(check_url("http://10.0.0.1/hook", true).is_err());
        assert!(check_url(
            &format!("https://a.com/{}", "x".repeat(MAX_URL_BYTES)),
            false
        )
        .is_err());
    }

    #[test]
    fn resolved_addresses_must_all_be_public() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert!(check_addresses(&[a("93.184.216.34:443")], false).is_ok());
        assert!(check_addresses(&[a("93.184.216.34:443"), a("10.0.0.1:443")], false).is_err());
        assert!(check_addresses(&[a("[fe80::1]:443")], false).is_err());
        assert!(check_addresses(&[a("127.0.0.1:80")], false).is_err());
        assert!(check_addresses(&[a("127.0.0.1:80")], true).is_ok());
        assert!(check_addresses(&[], false).is_err());
    }
}
