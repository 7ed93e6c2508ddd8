//! The sidecar's configuration: a TOML file read into [`RawConfig`] (unknown keys refused,
//! defaults for everything but the device's identity and trust anchor), turned into a
//! [`SidecarConfig`] by [`RawConfig::validate`].
//!
//! ```toml
//! data_dir = "/var/lib/entitled"
//! socket = "/var/lib/entitled/entitled.sock"   # the Sidecar gRPC service; default <data_dir>/entitled.sock
//! socket_group = "entitle"                # the operators' group (name or gid); optional
//! listen = "127.0.0.1:7070"               # also on TCP, with a bearer credential (optional)
//! metrics_listen = "127.0.0.1:9464"       # Prometheus /metrics (optional)
//! authority_public_key = "/etc/entitle/authority.pub"   # unless compiled in (crate::vendor)
//! codes_public_key = "/etc/entitle/codes.pub"   # reservation codes; default: beside it
//! callhome_url = "https://authority.example:7171"  # optional; the CLI can set it
//! authority_ca = "/etc/entitle/ca.pem"   # the CA of its TLS certificate; default: system roots
//! allow_plaintext = false                # http:// to a host other than this machine
//! callhome_proxy = "http://proxy.example:3128"   # optional HTTP CONNECT proxy; the CLI can set it
//! snapshot_interval_secs = 60           # one report to the authority per interval
//! local_snapshot_interval_secs = 1       # the sidecar's own gate into the spool
//! spool_capacity = 100000                # reports
//!
//! [udi]
//! product_id = "CPAR"
//! serial = "FCH2231V0AB"
//!
//! [agent]                                 # optional: timers, selection; product and
//! selection = { "PAR-TPS" = 1 }          # unlicensed only lower the vendor's (crate::vendor)
//!
//! [notify]                                # optional: syslog and SNMP traps (crate::notify)
//! syslog = "udp://127.0.0.1:514"
//! snmp_trap = "127.0.0.1:162"
//! ```
//!
//! # The local API
//!
//! The `Sidecar` service (the `entitle` CLI's commands and `Attach`), gRPC health and
//! reflection listen on the Unix socket `socket`, mode 0660, owned by `socket_group` when
//! one is set: only root, the sidecar's user and that group can register, deregister or
//! repoint the device. A stale socket file (left by a crash) is replaced at start; a live
//! one (another `entitled` answering) stops the start. The socket is removed on a clean
//! stop. The data directory must let the group through (search permission, `x`), as
//! `/var/lib/entitled` made with mode 0755 (or 0750 with that group) does.
//!
//! `data_dir = "/var/lib/entitled"` (the one this documentation names) puts the socket at
//! [`entitle_proto::local::DEFAULT_SOCKET`], where the CLI looks by default.
//!
//! With `listen`, the same services are served on TCP too, and every call there must carry
//! `authorization: Bearer <credential>`, the credential in `<data_dir>/api.credential`
//! (random, base64url, made at the first start with `listen`, mode 0600). Calls without
//! it, or with another, are refused as UNAUTHENTICATED. There is no TCP listener without
//! `listen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use entitle_licensing::{AgentConfig, Counts, Product, Timers, Unlicensed};
use serde::Deserialize;

use ed25519_dalek::VerifyingKey;
use entitle_codes::CodeVerifyingKey;

use super::notify::{NotifyConfig, RawNotify};
use super::trust::fingerprint;
use super::{Result, SidecarError};

/// The configuration file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the device key, the local store and the spool live.
    pub data_dir: PathBuf,
    /// The Unix socket of the local API (the `Sidecar` service, health and reflection);
    /// `<data_dir>/entitled.sock` when absent.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The group the socket belongs to (a name, or a numeric gid), so that its members can
    /// use it; the sidecar user's own group when absent.
    #[serde(default)]
    pub socket_group: Option<String>,
    /// A TCP address to serve the local API on as well, with the bearer credential of
    /// `<data_dir>/api.credential`; none when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The address of the Prometheus metrics endpoint; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The authority's public key (32 raw bytes, as `entitle-authority init` writes
    /// `authority.pub`): the trust anchor every answer is checked against. Needed unless
    /// the vendor compiled one in ([`crate::vendor::AUTHORITY_KEY`]), which it must match.
    #[serde(default)]
    pub authority_public_key: Option<PathBuf>,
    /// The authority's public key for reservation codes (96 bytes, `codes.pub` of
    /// `entitle-authority init`); by default `codes.pub` beside `authority_public_key`.
    /// A key the vendor compiled in ([`crate::vendor::CODES_KEY`]) wins; this must match it.
    #[serde(default)]
    pub codes_public_key: Option<PathBuf>,
    /// The first call-home destination; the CLI's `callhome destination` replaces it.
    #[serde(default)]
    pub callhome_url: Option<String>,
    /// The CA file (PEM) the authority's TLS certificate is checked against; the system's
    /// roots when absent (a public authority).
    #[serde(default)]
    pub authority_ca: Option<PathBuf>,
    /// Allows `http://` to a host other than this machine (usage and licences unencrypted).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The HTTP CONNECT proxy call home goes through (`http://[user:password@]host:port`);
    /// the CLI's `callhome destination proxy` replaces it.
    #[serde(default)]
    pub callhome_proxy: Option<String>,
    /// The device's identity.
    pub udi: RawUdi,
    /// How often the spooled usage becomes one report for the authority: the snapshots of
    /// the interval are summed into one spool row.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval_secs: u64,
    /// How often the sidecar's own gate is snapshotted into the spool (durably): what a
    /// crash of the process can lose. At most `snapshot_interval_secs`.
    #[serde(default = "default_local_snapshot_interval")]
    pub local_snapshot_interval_secs: u64,
    /// The most reports the spool holds before it pushes back.
    #[serde(default = "default_spool_capacity")]
    pub spool_capacity: u64,
    /// How long a call to the authority may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: u64,
    /// The licence agent.
    #[serde(default)]
    pub agent: RawAgent,
    /// Where licence events are sent besides the event log.
    #[serde(default)]
    pub notify: RawNotify,
}

/// The unique device identifier.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawUdi {
    /// The product id, such as `CPAR`.
    pub product_id: String,
    /// The serial number.
    pub serial: String,
}

/// The licence agent's part of the file. The product and the unlicensed behaviour are the
/// vendor's ([`crate::vendor`]); what is written here can only lower them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// The timers (Cisco's defaults).
    #[serde(default)]
    pub timers: Timers,
    /// The device's own view of the catalogue: a gate entitlement it names gets at most
    /// its rate and at least its policy's strictness; it never raises what the vendor's
    /// product or the authority's signature give.
    #[serde(default)]
    pub product: Option<Product>,
    /// A lower unlicensed floor than the vendor's; a higher one is ignored.
    #[serde(default)]
    pub unlicensed: Option<Unlicensed>,
    /// The licences the device asks for at first.
    #[serde(default)]
    pub selection: Counts,
}

fn default_snapshot_interval() -> u64 {
    60
}
fn default_local_snapshot_interval() -> u64 {
    1
}
fn default_spool_capacity() -> u64 {
    100_000
}
fn default_call_timeout() -> u64 {
    10
}

/// A validated sidecar configuration.
#[derive(Clone, Debug)]
pub struct SidecarConfig {
    /// Where the device key, the local store and the spool live.
    pub data_dir: PathBuf,
    /// The Unix socket of the local API.
    pub socket: PathBuf,
    /// The group the socket is given, if one is configured.
    pub socket_group: Option<SocketGroup>,
    /// The TCP address of the local API (with the bearer credential), if any.
    pub listen: Option<SocketAddr>,
    /// The address of the Prometheus metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// The authority's public key bytes.
    pub authority_public_key: VerifyingKey,
    /// The trust anchor for reservation codes, when one is configured or found.
    pub codes_public_key: Option<CodeVerifyingKey>,
    /// The first call-home destination.
    pub callhome_url: Option<String>,
    /// The CA file the authority's certificate is checked against (else system roots).
    pub authority_ca: Option<PathBuf>,
    /// Whether `http://` may go to a host other than this machine.
    pub allow_plaintext: bool,
    /// The first HTTP proxy for call home.
    pub callhome_proxy: Option<String>,
    /// The device's identity.
    pub udi: entitle_proto::pb::Udi,
    /// How often the spooled usage becomes one report for the authority.
    pub snapshot_interval: Duration,
    /// How often the sidecar's own gate is snapshotted into the spool.
    pub local_snapshot_interval: Duration,
    /// The most reports the spool holds before it pushes back.
    pub spool_capacity: u64,
    /// How long a call to the authority may take.
    pub call_timeout: Duration,
    /// The licence agent.
    pub agent: AgentConfig,
    /// Where licence events are sent besides the event log.
    pub notify: NotifyConfig,
}

/// The group the local API's socket is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketGroup {
    /// As configured (a name or a number), for messages.
    pub name: String,
    /// Its numeric id.
    pub gid: u32,
}

/// The longest socket path the system takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

impl RawConfig {
    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SidecarError::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| SidecarError::Config(format!("{}: {}", path.display(), e.message())))
    }

    /// Checks everything and reads the trust anchor.
    pub fn validate(self) -> Result<SidecarConfig> {
        let bad = |what: String| Err(SidecarError::Config(what));
        for (field, value) in [
            ("udi.product_id", &self.udi.product_id),
            ("udi.serial", &self.udi.serial),
        ] {
            if !is_udi_part(value) {
                return bad(format!(
                    "{field} must be 1 to 64 of A-Z a-z 0-9 - _ . ; got {value:?}"
                ));
            }
        }
        if self.snapshot_interval_secs == 0 || self.snapshot_interval_secs > 3600 {
            return bad("snapshot_interval_secs must be 1 to 3600".into());
        }
        if self.local_snapshot_interval_secs == 0
            || self.local_snapshot_interval_secs > self.snapshot_interval_secs
        {
            return bad(format!(
                "local_snapshot_interval_secs must be 1 to snapshot_interval_secs ({})",
                self.snapshot_interval_secs
            ));
        }
        if self.spool_capacity == 0 {
            return bad("spool_capacity must be at least 1".into());
        }
        if self.call_timeout_secs == 0 || self.call_timeout_secs > 300 {
            return bad("call_timeout_secs must be 1 to 300".into());
        }
        if let Some(url) = &self.callhome_url {
            check_url(url)?;
            check_destination(url, self.authority_ca.as_deref(), self.allow_plaintext)
                .map_err(|e| SidecarError::Config(format!("callhome_url: {e}")))?;
        }
        if let Some(proxy) = &self.callhome_proxy {
            check_proxy(proxy).map_err(|e| SidecarError::Config(format!("callhome_proxy: {e}")))?;
        }
        if self.callhome_url.is_none()
            && let Some(ca) = &self.authority_ca
        {
            check_destination("https://localhost", Some(ca), false)
                .map_err(|e| SidecarError::Config(format!("authority_ca: {e}")))?;
        }
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("entitled.sock"));
        check_socket_path(&socket)?;
        let socket_group = self.socket_group.as_deref().map(socket_group).transpose()?;
        let authority_public_key = authority_anchor(
            crate::vendor::AUTHORITY_KEY,
            self.authority_public_key.as_deref(),
        )?;
        let beside = self
            .authority_public_key
            .as_ref()
            .map(|p| p.with_file_name("codes.pub"));
        let codes_public_key = codes_anchor(
            crate::vendor::CODES_KEY,
            self.codes_public_key.as_deref(),
            beside.as_deref(),
        )?;
        let (unlicensed, ignored) = crate::vendor::unlicensed(self.agent.unlicensed);
        if let Some(why) = ignored {
            tracing::warn!("{why}");
        }
        let agent = AgentConfig {
            timers: self.agent.timers,
            product: crate::vendor::product(),
            unlicensed,
            selection: self.agent.selection,
            device_catalogue: self.agent.product,
        };
        agent
            .validate()
            .map_err(|e| SidecarError::Config(format!("agent: {e}")))?;
        Ok(SidecarConfig {
            data_dir: self.data_dir,
            socket,
            socket_group,
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            authority_public_key,
            codes_public_key,
            callhome_url: self.callhome_url,
            authority_ca: self.authority_ca,
            allow_plaintext: self.allow_plaintext,
            callhome_proxy: self.callhome_proxy,
            udi: entitle_proto::pb::Udi {
                product_id: self.udi.product_id,
                serial: self.udi.serial,
            },
            snapshot_interval: Duration::from_secs(self.snapshot_interval_secs),
            local_snapshot_interval: Duration::from_secs(self.local_snapshot_interval_secs),
            spool_capacity: self.spool_capacity,
            call_timeout: Duration::from_secs(self.call_timeout_secs),
            agent,
            notify: self.notify.validate()?,
        })
    }
}

/// The authority key the device checks answers against: the vendor's when one is
/// compiled in (a configured key must then be the same), else the configured one.
fn authority_anchor(vendor: Option<[u8; 32]>, configured: Option<&Path>) -> Result<VerifyingKey> {
    let read = |path: &Path| {
        let bytes = std::fs::read(path).map_err(|e| {
            SidecarError::Config(format!(
                "cannot read the authority public key {}: {e}",
                path.display()
            ))
        })?;
        entitle_proto::signing::verifying_key(&bytes).map_err(|_| {
            SidecarError::Config(format!(
                "{} is not an Ed25519 public key (32 bytes, as `entitle-authority init` writes)",
                path.display()
            ))
        })
    };
    let Some(vendor) = vendor else {
        let path = configured.ok_or_else(|| {
            SidecarError::Config(
                "authority_public_key is needed (this build has no authority key compiled in)"
                    .into(),
            )
        })?;
        return read(path);
    };
    let vendor = entitle_proto::signing::verifying_key(&vendor).map_err(|_| {
        SidecarError::Config(
            "the authority key compiled into this build is not an Ed25519 key".into(),
        )
    })?;
    if let Some(path) = configured {
        let named = read(path)?;
        if named != vendor {
            return Err(SidecarError::Config(format!(
                "this build trusts only its vendor's authority key ({}); {} holds another ({}): remove authority_public_key or name the vendor's key",
                fingerprint(vendor.as_bytes()),
                path.display(),
                fingerprint(named.as_bytes())
            )));
        }
    }
    Ok(vendor)
}

/// The key reservation codes are checked against: the vendor's when one is compiled in (a
/// configured one must be the same; the file beside the authority key is not consulted),
/// else the configured one, else `codes.pub` beside the authority key when it exists.
fn codes_anchor(
    vendor: Option<[u8; 96]>,
    configured: Option<&Path>,
    beside: Option<&Path>,
) -> Result<Option<CodeVerifyingKey>> {
    let Some(vendor) = vendor else {
        return match (configured, beside) {
            (Some(path), _) => read_codes_key(path).map(Some),
            (None, Some(path)) if path.exists() => read_codes_key(path).map(Some),
            (None, _) => Ok(None),
        };
    };
    let vendor = CodeVerifyingKey::from_bytes(&vendor).map_err(|_| {
        SidecarError::Config(
            "the codes key compiled into this build is not a reservation code key".into(),
        )
    })?;
    if let Some(path) = configured {
        let named = read_codes_key(path)?;
        if named != vendor {
            return Err(SidecarError::Config(format!(
                "this build trusts only its vendor's reservation code key ({}); {} holds another ({})",
                fingerprint(&vendor.to_bytes()),
                path.display(),
                fingerprint(&named.to_bytes())
            )));
        }
    }
    Ok(Some(vendor))
}

fn read_codes_key(path: &Path) -> Result<CodeVerifyingKey> {
    let bytes = std::fs::read(path).map_err(|e| {
        SidecarError::Config(format!(
            "cannot read the reservation code key {}: {e}",
            path.display()
        ))
    })?;
    CodeVerifyingKey::from_bytes(&bytes).map_err(|_| {
        SidecarError::Config(format!(
            "{} is not a reservation code key (96 bytes, as `entitle-authority init` writes codes.pub)",
            path.display()
        ))
    })
}

/// A socket path the system can bind: not empty, not a directory's name, short enough.
fn check_socket_path(path: &Path) -> Result<()> {
    let length = path.as_os_str().len();
    if path.file_name().is_none() {
        return Err(SidecarError::Config(format!(
            "socket {:?} names no file",
            path.display()
        )));
    }
    if length > MAX_SOCKET_PATH {
        return Err(SidecarError::Config(format!(
            "socket {} is {length} bytes long; a Unix socket's path can be at most {MAX_SOCKET_PATH}",
            path.display()
        )));
    }
    Ok(())
}

/// The group `name` names: a group of the system's, or a numeric gid (taken as it is).
fn socket_group(name: &str) -> Result<SocketGroup> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(SocketGroup {
            name: name.to_owned(),
            gid,
        });
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(SocketGroup {
            name: name.to_owned(),
            gid: group.gid.as_raw(),
        }),
        Ok(None) => Err(SidecarError::Config(format!(
            "socket_group: there is no group {name:?} on this system"
        ))),
        Err(e) => Err(SidecarError::Config(format!(
            "socket_group: cannot look up the group {name:?}: {e}"
        ))),
    }
}

/// A UDI part: 1 to 64 of `[A-Za-z0-9-_.]`.
fn is_udi_part(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether the device may call `url`: TLS with a readable CA, or plaintext to this
/// machine (or anywhere with `allow_plaintext`).
pub fn check_destination(url: &str, ca: Option<&Path>, allow_plaintext: bool) -> Result<()> {
    entitle_proto::tls::endpoint(url, ca, allow_plaintext, Duration::from_secs(1))
        .map(drop)
        .map_err(|e| SidecarError::InvalidArgument(e.to_string()))
}

/// Accepts `http://[user:password@]host:port` as a call-home proxy.
pub fn check_proxy(proxy: &str) -> Result<()> {
    entitle_proto::tls::check_proxy(proxy).map_err(|e| SidecarError::InvalidArgument(e.to_string()))
}

/// Accepts an `http://` or `https://` URL with a host, and nothing else.
pub fn check_url(url: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(SidecarError::InvalidArgument(format!(
            "{url:?} is not a call-home URL: {why}"
        )))
    };
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some((scheme, _)) => {
            return refuse(&format!("the scheme must be http or https, not {scheme}"));
        }
        None => return refuse("it must start with http:// or https://"),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("it has no host, or has spaces in it");
    }
    if tonic::transport::Endpoint::from_shared(url.to_owned()).is_err() {
        return refuse("it does not parse");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:7171").is_ok());
        assert!(check_url("https://authority.example/").is_ok());
        for bad in [
            "",
            "127.0.0.1:7171",
            "ftp://x",
            "http://",
            "http:// x",
            "http://a b",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_local_snapshot_interval_is_one_second_and_at_most_the_report_interval() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = dir.path().join("authority.pub");
        let authority = entitle_proto::signing::generate_key().expect("a key");
        std::fs::write(&key, authority.verifying_key().to_bytes()).expect("written");
        let read = |extra: &str| {
            toml::from_str::<RawConfig>(&format!(
                "data_dir = \"/tmp/x\"\nauthority_public_key = {key:?}\n{extra}\n\
                 [udi]\nproduct_id = \"CPAR\"\nserial = \"S1\"\n"
            ))
            .expect("parses")
            .validate()
        };
        let config = read("").expect("valid");
        assert_eq!(config.snapshot_interval, Duration::from_secs(60));
        assert_eq!(config.local_snapshot_interval, Duration::from_secs(1));
        let config =
            read("snapshot_interval_secs = 5\nlocal_snapshot_interval_secs = 5").expect("valid");
        assert_eq!(config.local_snapshot_interval, Duration::from_secs(5));
        for bad in [
            "local_snapshot_interval_secs = 0",
            "snapshot_interval_secs = 5\nlocal_snapshot_interval_secs = 6",
        ] {
            let e = read(bad).expect_err(bad).to_string();
            assert!(e.contains("local_snapshot_interval_secs"), "{e}");
        }
    }

    /// Parses and validates a configuration with `data_dir` and `extra` lines.
    fn with(data_dir: &str, extra: &str) -> Result<SidecarConfig> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = dir.path().join("authority.pub");
        let authority = entitle_proto::signing::generate_key().expect("a key");
        std::fs::write(&key, authority.verifying_key().to_bytes()).expect("written");
        toml::from_str::<RawConfig>(&format!(
            "data_dir = {data_dir:?}\nauthority_public_key = {key:?}\n{extra}\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = \"S1\"\n"
        ))
        .map_err(|e| SidecarError::Config(e.message().to_owned()))?
        .validate()
    }

    #[test]
    fn the_socket_is_in_the_data_directory_unless_named() {
        let config = with("/srv/e", "").expect("valid");
        assert_eq!(config.socket, Path::new("/srv/e/entitled.sock"));
        assert_eq!(config.socket_group, None);
        let config = with("/srv/e", "socket = \"/run/entitled/api.sock\"").expect("valid");
        assert_eq!(config.socket, Path::new("/run/entitled/api.sock"));
        // The documented data directory gives the socket the CLI looks for by default.
        let config = with("/var/lib/entitled", "").expect("valid");
        assert_eq!(
            config.socket,
            Path::new(entitle_proto::local::DEFAULT_SOCKET)
        );
    }

    #[test]
    fn a_socket_path_must_fit_and_name_a_file() {
        let long = format!("/{}/e.sock", "d".repeat(100));
        let e = with("/srv/e", &format!("socket = {long:?}"))
            .expect_err("too long")
            .to_string();
        assert!(e.contains("a Unix socket's path can be at most 107"), "{e}");
        let e = with("/srv/e", "socket = \"/\"")
            .expect_err("a directory")
            .to_string();
        assert!(e.contains("names no file"), "{e}");
    }

    #[test]
    fn the_socket_group_is_a_name_of_this_system_or_a_gid() {
        let root = with("/srv/e", "socket_group = \"root\"").expect("root exists");
        assert_eq!(
            root.socket_group,
            Some(SocketGroup {
                name: "root".into(),
                gid: 0
            })
        );
        let numeric = with("/srv/e", "socket_group = \"4242\"").expect("a gid");
        assert_eq!(numeric.socket_group.map(|g| g.gid), Some(4242));
        let e = with("/srv/e", "socket_group = \"no-such-group-xyz\"")
            .expect_err("no such group")
            .to_string();
        assert_eq!(
            e,
            "socket_group: there is no group \"no-such-group-xyz\" on this system"
        );
    }

    #[test]
    fn tcp_is_off_unless_listen_is_given() {
        assert_eq!(with("/srv/e", "").expect("valid").listen, None);
        let config = with("/srv/e", "listen = \"127.0.0.1:7070\"").expect("valid");
        assert_eq!(
            config.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 7070)))
        );
        let e = with("/srv/e", "listen = \"nowhere\"").expect_err("not an address");
        assert!(e.to_string().contains("invalid socket address"), "{e}");
        let e = with("/srv/e", "socket_mode = 438").expect_err("not a field");
        assert!(e.to_string().contains("unknown field `socket_mode`"), "{e}");
    }

    #[test]
    fn a_key_compiled_in_is_the_only_one_trusted() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (vendor, other) = (
            entitle_proto::signing::generate_key()
                .expect("a key")
                .verifying_key(),
            entitle_proto::signing::generate_key()
                .expect("a key")
                .verifying_key(),
        );
        let (vendor_file, other_file) =
            (dir.path().join("vendor.pub"), dir.path().join("other.pub"));
        std::fs::write(&vendor_file, vendor.to_bytes()).expect("written");
        std::fs::write(&other_file, other.to_bytes()).expect("written");
        let compiled = Some(vendor.to_bytes());

        assert_eq!(
            authority_anchor(compiled, None).expect("the vendor's"),
            vendor
        );
        assert_eq!(
            authority_anchor(compiled, Some(&vendor_file)).expect("the same key named"),
            vendor
        );
        let refused = authority_anchor(compiled, Some(&other_file))
            .expect_err("another key")
            .to_string();
        assert!(
            refused.contains("trusts only its vendor's authority key"),
            "{refused}"
        );
        assert!(
            refused.contains(&fingerprint(other.as_bytes())),
            "{refused}"
        );

        // Without a compiled-in key the configured one applies, and is needed.
        assert_eq!(
            authority_anchor(None, Some(&other_file)).expect("configured"),
            other
        );
        let needed = authority_anchor(None, None).expect_err("none").to_string();
        assert!(
            needed.contains("authority_public_key is needed"),
            "{needed}"
        );
    }

    #[test]
    fn a_codes_key_compiled_in_wins_over_the_file_beside_the_authority_key() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = |seed: u8| entitle_codes::CodeSigningKey::from_seed(&[seed; 32]).verifying_key();
        let (vendor, other) = (key(1), key(2));
        let other_file = dir.path().join("codes.pub");
        std::fs::write(&other_file, other.to_bytes()).expect("written");
        let compiled = Some(vendor.to_bytes());

        assert_eq!(
            codes_anchor(compiled, None, Some(&other_file)).expect("the vendor's"),
            Some(vendor)
        );
        let refused = codes_anchor(compiled, Some(&other_file), None)
            .expect_err("another key named")
            .to_string();
        assert!(
            refused.contains("trusts only its vendor's reservation code key"),
            "{refused}"
        );
        assert_eq!(
            codes_anchor(None, None, Some(&other_file)).expect("beside"),
            Some(other)
        );
        assert_eq!(
            codes_anchor(None, None, Some(&dir.path().join("missing.pub"))).expect("none"),
            None
        );
    }

    #[test]
    fn udi_parts() {
        assert!(is_udi_part("CPAR"));
        assert!(!is_udi_part(""));
        assert!(!is_udi_part("a b"));
        assert!(!is_udi_part(&"x".repeat(65)));
    }
}
