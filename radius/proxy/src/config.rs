//! The proxy's configuration: a TOML file read into [`RawConfig`] (unknown keys refused),
//! turned into a [`Config`] by [`RawConfig::validate`], which reads the secret files and
//! checks every address, secret and number.
//!
//! ```
//! use entitle_radius_proxy::config::{CountMode, OverLicence, RawConfig};
//!
//! let raw: RawConfig = toml::from_str(r#"
//!     listen = ["127.0.0.1:1812", "127.0.0.1:1813"]
//!
//!     [[client]]
//!     name = "nas-1"
//!     address = "127.0.0.0/8"
//!     secret = "client-secret"
//!
//!     [[upstream]]
//!     name = "freeradius"
//!     auth = "127.0.0.1:11812"
//!     secret = "upstream-secret"
//!
//!     [licence]
//!     mode = "attached"
//!     sidecar_url = "unix:/var/lib/entitled/entitled.sock"
//! "#)?;
//! let config = raw.validate()?;
//! assert_eq!(config.counting.access, CountMode::Enforce);
//! assert_eq!(config.counting.accounting, CountMode::Count);
//! assert_eq!(config.over_licence, OverLicence::Drop);
//! // The accounting port is the next one when not given.
//! assert_eq!(config.upstreams[0].acct.port(), 11813);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Result};

/// The file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where NAS clients send their requests; Access- and Accounting-Requests are told apart
    /// by their code, so one address may take both.
    pub listen: Vec<SocketAddr>,
    /// Prometheus `/metrics`; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a reply is kept to answer a retransmission (RFC 5080 §2.2.2).
    #[serde(default = "default_reply_cache_secs")]
    pub reply_cache_secs: u64,
    /// SO_RCVBUF and SO_SNDBUF of every socket: the kernel's defaults overflow with a few
    /// hundred requests in flight.
    #[serde(default = "default_socket_buffer")]
    pub socket_buffer_bytes: usize,
    /// What is counted against the licence, and how.
    #[serde(default)]
    pub counting: RawCounting,
    /// What happens to an Access-Request beyond the licence.
    #[serde(default)]
    pub over_licence: RawOverLicence,
    /// The NAS clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<RawClient>,
    /// The RADIUS servers requests are forwarded to, in order of preference.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<RawUpstream>,
    /// Where the licence comes from.
    pub licence: RawLicence,
}

/// `[counting]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCounting {
    /// The gate entitlement each counted request takes one transaction of.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Access-Requests: `enforce` by default.
    #[serde(default = "enforce")]
    pub access: CountMode,
    /// Accounting-Requests: `count` by default (never dropped).
    #[serde(default = "count")]
    pub accounting: CountMode,
}

impl Default for RawCounting {
    fn default() -> Self {
        Self {
            tag: default_tag(),
            access: CountMode::Enforce,
            accounting: CountMode::Count,
        }
    }
}

/// How one packet type meets the licence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountMode {
    /// Each request is a transaction; beyond the licence it is dropped (or rejected).
    Enforce,
    /// Each request is a transaction, metered and reported, and forwarded even beyond the
    /// licence (it then shows as rejected in the usage and as `over_licence_forwarded`).
    Count,
    /// Not counted at all.
    Off,
}

/// `[over_licence]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverLicence {
    /// `drop` (the default, as FreeRADIUS `max_pps` does) or `reject`.
    #[serde(default)]
    pub action: OverLicenceAction,
    /// The Reply-Message of the Access-Reject, with `action = "reject"`.
    #[serde(default)]
    pub reply_message: Option<String>,
}

/// `over_licence.action`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverLicenceAction {
    /// Say nothing: the NAS retransmits or fails over, as with an overloaded server.
    #[default]
    Drop,
    /// Answer Access-Reject.
    Reject,
}

/// One `[[client]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    /// A name for logs and metrics.
    pub name: String,
    /// An address or a network (`192.0.2.7`, `192.0.2.0/24`, `2001:db8::/32`). The first
    /// client in the file whose network holds a packet's source is the one.
    pub address: String,
    /// The shared secret, inline; or
    #[serde(default)]
    pub secret: Option<String>,
    /// the file that holds it (mode 0600; one line).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Drop (and count) an Access-Request without a valid Message-Authenticator.
    #[serde(default)]
    pub require_message_authenticator: bool,
}

/// One `[[upstream]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// A name for logs and metrics.
    pub name: String,
    /// Where Access-Requests go.
    pub auth: SocketAddr,
    /// Where Accounting-Requests go; the port after `auth`'s when absent.
    #[serde(default)]
    pub acct: Option<SocketAddr>,
    /// The shared secret, inline; or
    #[serde(default)]
    pub secret: Option<String>,
    /// the file that holds it (mode 0600; one line).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// How long to wait for an answer before trying again elsewhere.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive timeouts after which the upstream is marked down.
    #[serde(default = "default_max_timeouts")]
    pub max_timeouts: u32,
    /// How long a down upstream is left alone before it is tried again.
    #[serde(default = "default_down_secs")]
    pub down_secs: u64,
    /// Drop (and count) an Access-Accept/Reject/Challenge without a valid
    /// Message-Authenticator. Off by default: FreeRADIUS before 3.2.5 sends none.
    #[serde(default)]
    pub require_message_authenticator: bool,
}

/// `[licence]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLicence {
    /// `embedded` or `attached`.
    pub mode: LicenceMode,
    /// `embedded`: the licence agent's configuration, exactly as `entitled.toml` has it
    /// (its `listen` serves the `entitle` CLI).
    #[serde(default)]
    pub sidecar: Option<entitle_sidecar::RawConfig>,
    /// `attached`: where a running `entitled` is: `unix:PATH` of its socket, or
    /// `http://host:port` of its TCP listener with `sidecar_credential_file`.
    #[serde(default)]
    pub sidecar_url: Option<String>,
    /// `attached` over TCP: the sidecar's credential (its `api.credential`, mode 0600).
    #[serde(default)]
    pub sidecar_credential_file: Option<std::path::PathBuf>,
    /// `attached`: how often usage snapshots are sent.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    /// `attached`: how long to wait at start for the first limits before serving on the
    /// initial limit of 1 TPS.
    #[serde(default = "default_attach_wait_secs")]
    pub attach_wait_secs: u64,
}

/// `licence.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LicenceMode {
    /// The licence agent runs inside the proxy.
    Embedded,
    /// The proxy's gate attaches to a running `entitled`.
    Attached,
}

fn default_reply_cache_secs() -> u64 {
    5
}
fn default_socket_buffer() -> usize {
    8 << 20
}
fn default_tag() -> String {
    "PAR-TPS".into()
}
fn enforce() -> CountMode {
    CountMode::Enforce
}
fn count() -> CountMode {
    CountMode::Count
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_max_timeouts() -> u32 {
    3
}
fn default_down_secs() -> u64 {
    30
}
fn default_snapshot_interval_ms() -> u64 {
    5000
}
fn default_attach_wait_secs() -> u64 {
    10
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Prometheus `/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// How long replies are kept for retransmissions.
    pub reply_cache: Duration,
    /// SO_RCVBUF and SO_SNDBUF.
    pub socket_buffer_bytes: usize,
    /// Counting.
    pub counting: Counting,
    /// Beyond the licence.
    pub over_licence: OverLicence,
    /// NAS clients.
    pub clients: Vec<Client>,
    /// Upstream servers, in order of preference.
    pub upstreams: Vec<Upstream>,
    /// The licence.
    pub licence: Licence,
}

/// What is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counting {
    /// The gate entitlement.
    pub tag: String,
    /// Access-Requests.
    pub access: CountMode,
    /// Accounting-Requests.
    pub accounting: CountMode,
}

/// Beyond the licence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverLicence {
    /// Dropped silently.
    Drop,
    /// Answered with an Access-Reject carrying this Reply-Message, if any.
    Reject(Option<String>),
}

/// A NAS client.
#[derive(Clone)]
pub struct Client {
    /// Its name.
    pub name: String,
    /// Its network.
    pub network: Network,
    /// The shared secret.
    pub secret: entitle_radius::Secret,
    /// Whether Access-Requests must carry a Message-Authenticator.
    pub require_message_authenticator: bool,
}

/// An upstream RADIUS server.
#[derive(Clone)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// Access-Requests go here.
    pub auth: SocketAddr,
    /// Accounting-Requests go here.
    pub acct: SocketAddr,
    /// The shared secret.
    pub secret: entitle_radius::Secret,
    /// The wait for an answer.
    pub timeout: Duration,
    /// Consecutive timeouts before it is marked down.
    pub max_timeouts: u32,
    /// How long it stays down.
    pub down_for: Duration,
    /// Whether its answers must carry a Message-Authenticator.
    pub require_message_authenticator: bool,
}

// Secrets never reach a log line through Debug.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("network", &self.network)
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("acct", &self.acct)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where the licence comes from.
#[derive(Clone, Debug)]
pub enum Licence {
    /// The agent in-process.
    Embedded(Box<entitle_sidecar::SidecarConfig>),
    /// Attached to a running `entitled`.
    Attached {
        /// Its address: `unix:PATH` or `http://host:port`.
        url: String,
        /// The credential for its TCP listener.
        credential: Option<entitle_proto::local::Credential>,
        /// How often snapshots go.
        snapshot_interval: Duration,
        /// How long to wait for the first limits.
        wait: Duration,
    },
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`.
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { address, prefix })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl RawConfig {
    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))
    }

    /// Checks everything and reads the secret files.
    pub fn validate(self) -> Result<Config> {
        let bad = |what: String| Err(Error::Config(what));
        if self.listen.is_empty() {
            return bad("listen needs at least one address".into());
        }
        if !(1..=60).contains(&self.reply_cache_secs) {
            return bad("reply_cache_secs must be 1 to 60".into());
        }
        if !(64 << 10..=256 << 20).contains(&self.socket_buffer_bytes) {
            return bad("socket_buffer_bytes must be 64 KiB to 256 MiB".into());
        }
        if !entitle_engine::table::is_valid_tag(&self.counting.tag) {
            return bad(format!(
                "counting.tag {:?} is not an entitlement tag",
                self.counting.tag
            ));
        }
        let over_licence = match (self.over_licence.action, self.over_licence.reply_message) {
            (OverLicenceAction::Drop, None) => OverLicence::Drop,
            (OverLicenceAction::Drop, Some(_)) => {
                return bad("over_licence.reply_message needs action = \"reject\"".into());
            }
            (OverLicenceAction::Reject, message) => {
                if message
                    .as_ref()
                    .is_some_and(|m| m.is_empty() || m.len() > 253)
                {
                    return bad("over_licence.reply_message must be 1 to 253 octets".into());
                }
                OverLicence::Reject(message)
            }
        };
        if self.clients.is_empty() {
            return bad("at least one [[client]] is needed".into());
        }
        let mut clients = Vec::new();
        for c in self.clients {
            let Some(network) = Network::parse(&c.address) else {
                return bad(format!(
                    "client {:?}: address {:?} is not an IP address or network",
                    c.name, c.address
                ));
            };
            let secret = secret(&format!("client {:?}", c.name), c.secret, c.secret_file)?;
            clients.push(Client {
                name: c.name,
                network,
                secret: entitle_radius::Secret::new(secret),
                require_message_authenticator: c.require_message_authenticator,
            });
        }
        if self.upstreams.is_empty() {
            return bad("at least one [[upstream]] is needed".into());
        }
        let mut upstreams = Vec::new();
        for u in self.upstreams {
            let what = format!("upstream {:?}", u.name);
            if !(10..=60_000).contains(&u.timeout_ms) {
                return bad(format!("{what}: timeout_ms must be 10 to 60000"));
            }
            if !(1..=100).contains(&u.max_timeouts) {
                return bad(format!("{what}: max_timeouts must be 1 to 100"));
            }
            if !(1..=3600).contains(&u.down_secs) {
                return bad(format!("{what}: down_secs must be 1 to 3600"));
            }
            let acct = match u.acct {
                Some(a) => a,
                None => {
                    let Some(port) = u.auth.port().checked_add(1) else {
                        return bad(format!("{what}: give acct, auth's port has no next"));
                    };
                    SocketAddr::new(u.auth.ip(), port)
                }
            };
            let secret = secret(&what, u.secret, u.secret_file)?;
            upstreams.push(Upstream {
                name: u.name,
                auth: u.auth,
                acct,
                secret: entitle_radius::Secret::new(secret),
                timeout: Duration::from_millis(u.timeout_ms),
                max_timeouts: u.max_timeouts,
                down_for: Duration::from_secs(u.down_secs),
                require_message_authenticator: u.require_message_authenticator,
            });
        }
        let l = self.licence;
        let licence = match l.mode {
            LicenceMode::Embedded => {
                if l.sidecar_url.is_some() || l.sidecar_credential_file.is_some() {
                    return bad(
                        "licence.sidecar_url and sidecar_credential_file are for mode = \"attached\""
                            .into(),
                    );
                }
                let Some(sidecar) = l.sidecar else {
                    return bad("mode = \"embedded\" needs a [licence.sidecar] table".into());
                };
                let sidecar = sidecar
                    .validate()
                    .map_err(|e| Error::Config(format!("licence.sidecar: {e}")))?;
                if !sidecar
                    .agent
                    .product
                    .entitlements
                    .iter()
                    .any(|e| e.tag == self.counting.tag)
                {
                    return bad(format!(
                        "counting.tag {:?} is not an entitlement of the licence's product",
                        self.counting.tag
                    ));
                }
                Licence::Embedded(Box::new(sidecar))
            }
            LicenceMode::Attached => {
                if l.sidecar.is_some() {
                    return bad("[licence.sidecar] is for mode = \"embedded\"".into());
                }
                let Some(url) = l.sidecar_url else {
                    return bad("mode = \"attached\" needs licence.sidecar_url".into());
                };
                entitle_proto::local::SidecarAddress::parse(&url)
                    .map_err(|e| Error::Config(format!("licence.sidecar_url: {e}")))?;
                let credential = l
                    .sidecar_credential_file
                    .as_deref()
                    .map(entitle_proto::local::Credential::read)
                    .transpose()
                    .map_err(|e| Error::Config(format!("licence.sidecar_credential_file: {e}")))?;
                if !(100..=3_600_000).contains(&l.snapshot_interval_ms) {
                    return bad("licence.snapshot_interval_ms must be 100 to 3600000".into());
                }
                if l.attach_wait_secs > 300 {
                    return bad("licence.attach_wait_secs must be at most 300".into());
                }
                Licence::Attached {
                    url,
                    credential,
                    snapshot_interval: Duration::from_millis(l.snapshot_interval_ms),
                    wait: Duration::from_secs(l.attach_wait_secs),
                }
            }
        };
        Ok(Config {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            reply_cache: Duration::from_secs(self.reply_cache_secs),
            socket_buffer_bytes: self.socket_buffer_bytes,
            counting: Counting {
                tag: self.counting.tag,
                access: self.counting.access,
                accounting: self.counting.accounting,
            },
            over_licence,
            clients,
            upstreams,
            licence,
        })
    }
}

/// The secret given inline or in a file (mode 0600, trailing newline ignored).
fn secret(what: &str, inline: Option<String>, file: Option<PathBuf>) -> Result<Vec<u8>> {
    let secret = match (inline, file) {
        (Some(s), None) => s.into_bytes(),
        (None, Some(path)) => read_secret_file(what, &path)?,
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "{what}: give secret or secret_file, not both"
            )));
        }
        (None, None) => {
            return Err(Error::Config(format!(
                "{what}: needs secret or secret_file"
            )));
        }
    };
    if secret.is_empty() || secret.len() > 128 {
        return Err(Error::Config(format!(
            "{what}: the secret must be 1 to 128 octets"
        )));
    }
    Ok(secret)
}

fn read_secret_file(what: &str, path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("{what}: cannot read {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{what}: {} must be readable by its owner only (mode 0600)",
            path.display()
        )));
    }
    let mut bytes = std::fs::read(path)
        .map_err(|e| Error::Config(format!("{what}: cannot read {}: {e}", path.display())))?;
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
