//! Checks probe targets: an address (ICMP), or a mapping naming a method (`tcp`, `dns`,
//! `http`) and what it needs. Everything a probe sends is fixed here: a host address (no
//! name to resolve through an uplink that may be down), a port, a checked DNS name, an
//! `http://` URL whose host is an address.

use std::net::IpAddr;

use super::model::{ProbeMethod, ProbeTarget};
use super::names::check_domain;
use super::path::FieldPath;
use super::raw::{RawMethod, RawTarget, RawTargetSpec};
use super::validate::Checker;

impl Checker<'_> {
    pub(super) fn target(&mut self, raw: RawTarget, p: &FieldPath) -> Option<ProbeTarget> {
        match raw {
            RawTarget::Address(addr) => Some(ProbeTarget::icmp(addr)),
            RawTarget::Spec(spec) => self.target_spec(spec, p),
        }
    }

    fn target_spec(&mut self, spec: RawTargetSpec, p: &FieldPath) -> Option<ProbeTarget> {
        let method = match (spec.method, &spec.url) {
            (Some(m), _) => m,
            (None, Some(_)) => RawMethod::Http,
            (None, None) => RawMethod::Icmp,
        };
        if method == RawMethod::Http {
            return self.http_target(&spec, p);
        }
        for (key, given) in [
            ("url", spec.url.is_some()),
            ("expect", spec.expect.is_some()),
        ] {
            if given {
                self.error(&p.key(key), "only an http target has a `url` and `expect`");
            }
        }
        let Some(addr) = spec.host else {
            self.error(p, "give the `host` to probe (an address)");
            return None;
        };
        let needs_query = method == RawMethod::Dns;
        if spec.query.is_some() && !needs_query {
            self.error(&p.key("query"), "only a dns target has a `query`");
        }
        let method = match method {
            RawMethod::Icmp => {
                if spec.port.is_some() {
                    self.error(&p.key("port"), "an icmp target has no port");
                }
                ProbeMethod::Icmp
            }
            RawMethod::Tcp => match spec.port {
                Some(port) if port > 0 => ProbeMethod::Tcp { port },
                _ => {
                    self.error(p, "a tcp target needs a `port` (1-65535), like 443");
                    return None;
                }
            },
            RawMethod::Dns => {
                let Some(query) = spec.query else {
                    self.error(
                        p,
                        "a dns target needs a `query`: the name to ask for, like example.com",
                    );
                    return None;
                };
                if let Err(e) = check_domain(&query) {
                    self.error(&p.key("query"), e);
                }
                ProbeMethod::Dns {
                    port: spec.port.filter(|p| *p > 0).unwrap_or(53),
                    query,
                }
            }
            RawMethod::Http => unreachable!("handled above"),
        };
        Some(ProbeTarget { addr, method })
    }

    /// `url: http://ADDRESS[:PORT]/PATH`: the host must be an address, the scheme plain
    /// HTTP (a captive portal answers plain HTTP; HTTPS would need certificates).
    fn http_target(&mut self, spec: &RawTargetSpec, p: &FieldPath) -> Option<ProbeTarget> {
        let Some(url) = &spec.url else {
            self.error(
                p,
                "an http target needs a `url`, like http://198.51.100.1/generate_204",
            );
            return None;
        };
        let at = p.key("url");
        let Some((addr, port, path)) = parse_url(url) else {
            self.error(
                &at,
                format!("`{url}` is not an http:// URL with an address as its host, like http://198.51.100.1/generate_204"),
            );
            return None;
        };
        if spec.host.is_some_and(|h| h != addr) {
            self.error(
                &p.key("host"),
                "differs from the url's host: give only the url",
            );
        }
        if spec.query.is_some() || spec.port.is_some() {
            self.error(
                p,
                "an http target takes the port from its url and has no query",
            );
        }
        if let Some(e) = spec.expect.filter(|e| !(100..=599).contains(e)) {
            self.error(
                &p.key("expect"),
                format!("{e} is not an HTTP status (100-599)"),
            );
        }
        let host = match (addr, port) {
            (IpAddr::V4(a), 80) => a.to_string(),
            (IpAddr::V4(a), port) => format!("{a}:{port}"),
            (IpAddr::V6(a), 80) => format!("[{a}]"),
            (IpAddr::V6(a), port) => format!("[{a}]:{port}"),
        };
        Some(ProbeTarget {
            addr,
            method: ProbeMethod::Http {
                port,
                host,
                path,
                expect: spec.expect,
            },
        })
    }
}

/// The address, port and path-and-query of an `http://` URL whose host is an address.
fn parse_url(url: &str) -> Option<(IpAddr, u16, String)> {
    let uri: http::Uri = url.trim().parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let addr: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let path = if path.is_empty() { "/".into() } else { path };
    // Only printable ASCII reaches the request line.
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some((addr, uri.port_u16().unwrap_or(80), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_an_address_host() {
        assert_eq!(
            parse_url("http://198.51.100.1/generate_204"),
            Some(("198.51.100.1".parse().unwrap(), 80, "/generate_204".into()))
        );
        assert_eq!(
            parse_url("http://[2001:db8::1]:8080/a?b=c"),
            Some(("2001:db8::1".parse().unwrap(), 8080, "/a?b=c".into()))
        );
        assert_eq!(parse_url("https://198.51.100.1/"), None);
        assert_eq!(parse_url("http://example.com/"), None, "a name needs DNS");
        assert_eq!(
            parse_url("http://198.51.100.1"),
            Some(("198.51.100.1".parse().unwrap(), 80, "/".into()))
        );
    }
}
