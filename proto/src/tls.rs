//! How every client of an authority connects (a device, a satellite, the admin CLI): over
//! TLS (rustls) for `https://`, trusting a CA file or the system's roots; plaintext
//! `http://` only to a loopback address unless plaintext is allowed explicitly; directly,
//! or through an HTTP CONNECT proxy with TLS end to end inside the tunnel ([`channel`]).
//! And what a failed connection is called, in one sentence naming the cause.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Why no endpoint could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// The URL does not parse, or is neither `http://` nor `https://`.
    #[error("{0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// A plaintext destination that is not a loopback address.
    #[error(
        "{0} is plaintext http:// to a host that is not this machine: use https://, or set allow_plaintext = true to send licences and usage unencrypted"
    )]
    Plaintext(String),
    /// The CA file does not read or holds no certificate.
    #[error("cannot use the CA file {0}: {1}")]
    Ca(String, String),
    /// The proxy URL is not `http://[user:password@]host:port`.
    #[error("{0:?} is not an HTTP proxy URL: use http://[user:password@]host:port")]
    BadProxy(String),
}

/// A lazily connecting channel to `url` (see [`endpoint`]), through the HTTP CONNECT proxy
/// `proxy` when one is given (`http://[user:password@]host:port`; the credentials go as
/// Basic proxy authorisation). TLS runs end to end inside the tunnel.
pub fn channel(
    url: &str,
    ca: Option<&Path>,
    allow_plaintext: bool,
    timeout: Duration,
    proxy: Option<&str>,
) -> Result<Channel, EndpointError> {
    let Some(proxy) = proxy else {
        return Ok(endpoint(url, ca, allow_plaintext, timeout)?.connect_lazy());
    };
    // The tunnel asks the proxy for the URL's port, or 443 when it has none.
    let url = with_port(url).ok_or_else(|| EndpointError::BadUrl(url.to_owned()))?;
    let endpoint = endpoint(&url, ca, allow_plaintext, timeout)?;
    let (address, basic) = proxy_parts(proxy)?;
    let tunnel = crate::connect::Connect {
        address,
        basic,
        timeout,
    };
    Ok(endpoint.connect_with_connector_lazy(tunnel))
}

/// `url` with its scheme's port written out.
fn with_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = host_of(rest)?;
    let after_host = &rest[rest.find(&host)? + host.len()..];
    if after_host.starts_with(':') {
        return Some(url.to_owned());
    }
    let port = if scheme == "https" { 443 } else { 80 };
    let at = url.len() - after_host.len();
    Some(format!("{}:{port}{}", &url[..at], &url[at..]))
}

/// The proxy's `host:port` and its Basic credentials (base64), if any.
fn proxy_parts(proxy: &str) -> Result<(String, Option<String>), EndpointError> {
    let bad = || EndpointError::BadProxy(proxy.to_owned());
    let rest = proxy.strip_prefix("http://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, rest),
    };
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || hostport.contains('/') {
        return Err(bad());
    }
    let basic = userinfo.map(|userinfo| {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, userinfo)
    });
    Ok((hostport.to_owned(), basic))
}

/// Checks a proxy URL as [`channel`] takes it.
pub fn check_proxy(proxy: &str) -> Result<(), EndpointError> {
    proxy_parts(proxy).map(drop)
}

/// `proxy` as it may be shown and logged: its credentials masked.
pub fn proxy_shown(proxy: &str) -> String {
    match proxy
        .strip_prefix("http://")
        .and_then(|r| r.rsplit_once('@'))
    {
        Some((_, hostport)) => format!("http://***@{hostport}"),
        None => proxy.to_owned(),
    }
}

/// An endpoint for `url`: `https://` with `ca` (a PEM file) or else the system's roots;
/// `http://` only to a loopback host or with `allow_plaintext`. Calls and connections time
/// out after `timeout`.
pub fn endpoint(
    url: &str,
    ca: Option<&Path>,
    allow_plaintext: bool,
    timeout: Duration,
) -> Result<Endpoint, EndpointError> {
    let bad = || EndpointError::BadUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let host = host_of(rest).ok_or_else(bad)?;
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| bad())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    match scheme {
        "https" => {
            let tls = match ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        EndpointError::Ca(path.display().to_string(), e.to_string())
                    })?;
                    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                        return Err(EndpointError::Ca(
                            path.display().to_string(),
                            "it holds no PEM certificate".into(),
                        ));
                    }
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint
                .tls_config(tls.domain_name(host.trim_matches(['[', ']'])))
                .map_err(|e| EndpointError::Ca(String::new(), e.to_string()))
        }
        "http" if allow_plaintext || is_loopback(&host) => Ok(endpoint),
        "http" => Err(EndpointError::Plaintext(url.to_owned())),
        _ => Err(bad()),
    }
}

/// The host of `rest` (what follows `scheme://`), brackets kept for IPv6.
fn host_of(rest: &str) -> Option<String> {
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The cause of a failed connection, in one sentence: the TLS reason when there is one
/// (an unknown CA, an expired certificate, a name the certificate does not cover), else
/// the innermost error ("Connection refused (os error 111)").
pub fn failure_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return tls_reason(tls);
        }
        // rustls errors arrive wrapped in io::Error.
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return tls_reason(tls);
        }
        if let Some(proxy) = e.downcast_ref::<crate::connect::ProxyError>() {
            return proxy.to_string();
        }
        innermost = e.to_string();
        source = e.source();
    }
    innermost
}

fn tls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => "TLS: the authority's certificate is not signed by a CA this side trusts (check the CA file)".into(),
            C::Expired | C::ExpiredContext { .. } => {
                "TLS: the authority's certificate has expired".into()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "TLS: the authority's certificate is not valid yet (check the clocks)".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "TLS: the authority's certificate does not name the host called (check the URL, or the names given to `entitle-authority init --tls-name`)".into()
            }
            C::Revoked => "TLS: the authority's certificate is revoked".into(),
            other => format!("TLS: the authority's certificate is refused ({other:?})"),
        },
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn plaintext_goes_only_to_this_machine_unless_allowed() {
        for ok in [
            "http://127.0.0.1:7171",
            "http://localhost:7171",
            "http://[::1]:7171/",
            "http://127.1.2.3",
        ] {
            assert!(endpoint(ok, None, false, T).is_ok(), "{ok}");
        }
        let refused = endpoint("http://authority.example:7171", None, false, T).unwrap_err();
        assert!(matches!(refused, EndpointError::Plaintext(_)));
        assert!(
            refused.to_string().contains("allow_plaintext = true"),
            "{refused}"
        );
        assert!(endpoint("http://authority.example:7171", None, true, T).is_ok());
        assert!(endpoint("http://10.0.0.1", None, false, T).is_err());
    }

    #[test]
    fn urls_and_ca_files_are_checked() {
        for bad in ["", "127.0.0.1:7171", "ftp://x", "http://", "https:///x"] {
            assert!(
                matches!(endpoint(bad, None, false, T), Err(EndpointError::BadUrl(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().expect("a directory");
        let missing = dir.path().join("missing.pem");
        let e = endpoint("https://a.example", Some(&missing), false, T).unwrap_err();
        assert!(matches!(e, EndpointError::Ca(..)), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").expect("written");
        let e = endpoint("https://a.example", Some(&empty), false, T).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn proxies() {
        let (address, basic) = proxy_parts("http://u:p@127.0.0.1:8888").unwrap();
        assert_eq!(address, "127.0.0.1:8888");
        assert_eq!(basic.as_deref(), Some("dTpw"));
        assert!(proxy_parts("http://127.0.0.1:8888/").unwrap().1.is_none());
        for bad in [
            "127.0.0.1:8888",
            "https://p:1",
            "http://p",
            "http://p:x",
            "http://:1",
            "http://p:1/x",
        ] {
            assert!(
                matches!(proxy_parts(bad), Err(EndpointError::BadProxy(_))),
                "{bad}"
            );
        }
        assert_eq!(proxy_shown("http://u:p@h:1"), "http://***@h:1");
        assert_eq!(proxy_shown("http://h:1"), "http://h:1");
        assert_eq!(
            with_port("https://a.example/x").as_deref(),
            Some("https://a.example:443/x")
        );
        assert_eq!(
            with_port("http://a.example").as_deref(),
            Some("http://a.example:80")
        );
        assert_eq!(
            with_port("https://a.example:7/").as_deref(),
            Some("https://a.example:7/")
        );
        assert_eq!(
            with_port("https://[::1]").as_deref(),
            Some("https://[::1]:443")
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("a.example:1/x").as_deref(), Some("a.example"));
        assert_eq!(host_of("u:p@a.example").as_deref(), Some("a.example"));
        assert_eq!(host_of("[::1]:7").as_deref(), Some("[::1]"));
        assert_eq!(host_of(":7"), None);
    }
}
