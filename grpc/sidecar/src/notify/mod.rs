//! Licence events sent where operators of RADIUS servers look: [`syslog`] (RFC 5424) and
//! SNMPv2c traps ([`snmp`]).
//!
//! Configured in the `[notify]` section of `entitled.toml`; each destination is optional:
//!
//! ```toml
//! [notify]
//! syslog = "udp://127.0.0.1:514"      # or "unix:/dev/log"
//! syslog_facility = "daemon"          # kern, user, ... local0 to local7 (default daemon)
//! snmp_trap = "127.0.0.1:162"         # where SNMPv2c traps go
//! snmp_community = "public"           # (default public)
//! ```
//!
//! Every event of the event log goes to syslog; those that are smart-licensing alarms
//! (usage at 80, 90, 100%, out of compliance, authorisation expired, registration state
//! changed) also go out as traps. Sending is best effort and never blocks the agent: a
//! destination that cannot be reached loses the message and the sidecar logs why.

pub mod snmp;
pub mod syslog;

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use serde::Deserialize;

use crate::events::Notice;
use crate::{Result, SidecarError};
pub use syslog::SyslogTarget;

/// The `[notify]` section as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// `udp://host:port` or `unix:/path/to/socket`.
    #[serde(default)]
    pub syslog: Option<String>,
    /// The syslog facility by name (default `daemon`).
    #[serde(default)]
    pub syslog_facility: Option<String>,
    /// `host:port` of the SNMP trap receiver.
    #[serde(default)]
    pub snmp_trap: Option<String>,
    /// The SNMPv2c community (default `public`).
    #[serde(default)]
    pub snmp_community: Option<String>,
}

/// Where events go, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The syslog destination.
    pub syslog: Option<SyslogTarget>,
    /// The syslog facility (RFC 5424 number, 0 to 23).
    pub syslog_facility: u8,
    /// The trap receiver.
    pub snmp_trap: Option<SocketAddr>,
    /// The SNMPv2c community.
    pub snmp_community: String,
}

impl RawNotify {
    /// Checks the destinations (resolving host names once, now).
    pub fn validate(self) -> Result<NotifyConfig> {
        let bad = |what: String| SidecarError::Config(format!("notify: {what}"));
        let syslog = match self.syslog.as_deref() {
            None => None,
            Some(s) => Some(if let Some(addr) = s.strip_prefix("udp://") {
                SyslogTarget::Udp(resolve(addr).map_err(|e| bad(format!("syslog {s:?}: {e}")))?)
            } else if let Some(path) = s.strip_prefix("unix:") {
                let path = PathBuf::from(path.trim_start_matches("//"));
                if !path.is_absolute() {
                    return Err(bad(format!(
                        "syslog {s:?}: the socket path must be absolute"
                    )));
                }
                SyslogTarget::Unix(path)
            } else {
                return Err(bad(format!(
                    "syslog {s:?} must be udp://host:port or unix:/path"
                )));
            }),
        };
        let facility = match self.syslog_facility.as_deref() {
            None => 3,
            Some(name) => syslog::FACILITIES
                .iter()
                .position(|f| *f == name)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "syslog_facility {name:?} is none of {}",
                        syslog::FACILITIES.join(", ")
                    ))
                })?,
        };
        let snmp_trap = self
            .snmp_trap
            .as_deref()
            .map(|s| resolve(s).map_err(|e| bad(format!("snmp_trap {s:?}: {e}"))))
            .transpose()?;
        let community = self.snmp_community.unwrap_or_else(|| "public".to_owned());
        if community.is_empty()
            || community.len() > 255
            || !community.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(
                "snmp_community must be 1 to 255 printable ASCII characters".into(),
            ));
        }
        Ok(NotifyConfig {
            syslog,
            syslog_facility: facility,
            snmp_trap,
            snmp_community: community,
        })
    }
}

/// `host:port` to its first address.
fn resolve(s: &str) -> std::result::Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("not a host:port ({e})"))?
        .next()
        .ok_or_else(|| "the host has no address".to_owned())
}

/// Sends notices to the configured destinations.
pub(crate) struct Notifier {
    syslog: Option<syslog::Syslog>,
    facility: u8,
    traps: Option<snmp::TrapSender>,
    udi: String,
    hostname: String,
    started: Instant,
    request_id: AtomicI32,
}

impl Notifier {
    /// Opens the sockets of `config` for the device `udi` ("product:serial").
    pub(crate) fn open(config: &NotifyConfig, udi: String) -> Result<Self> {
        let io = |what: &str, e: std::io::Error| {
            SidecarError::Config(format!("notify: cannot open the {what} socket: {e}"))
        };
        Ok(Self {
            syslog: config
                .syslog
                .clone()
                .map(syslog::Syslog::open)
                .transpose()
                .map_err(|e| io("syslog", e))?,
            facility: config.syslog_facility,
            traps: config
                .snmp_trap
                .map(|target| snmp::TrapSender::open(target, config.snmp_community.clone()))
                .transpose()
                .map_err(|e| io("SNMP", e))?,
            udi,
            hostname: hostname(),
            started: Instant::now(),
            request_id: AtomicI32::new(1),
        })
    }

    /// Sends `notice` to syslog and, when it is an alarm, as a trap.
    pub(crate) fn send(&self, notice: &Notice) {
        let trap = notice.alarm.as_ref().map(crate::events::TrapKind::of);
        if let Some(syslog) = &self.syslog {
            let mut params = vec![("udi", self.udi.as_str()), ("kind", notice.kind)];
            if let Some(trap) = trap {
                params.push(("trap", trap.name()));
            }
            let line = syslog::format(&syslog::Message {
                facility: self.facility,
                severity: notice.severity,
                at_unix: notice.at_unix,
                hostname: &self.hostname,
                procid: std::process::id(),
                msgid: notice.kind,
                params: &params,
                text: &notice.message,
            });
            if let Err(e) = syslog.send(&line) {
                tracing::warn!(error = %e, "cannot send a syslog message");
            }
        }
        if let (Some(traps), Some(alarm)) = (&self.traps, &notice.alarm) {
            let centis = self.started.elapsed().as_millis() / 10;
            let content = snmp::TrapContent {
                request_id: self.request_id.fetch_add(1, Ordering::Relaxed) & i32::MAX,
                uptime_centis: u32::try_from(centis % (1 << 32)).unwrap_or(0),
                udi: &self.udi,
                message: &notice.message,
                alarm,
            };
            if let Err(e) = traps.send(&content) {
                tracing::warn!(error = %e, "cannot send an SNMP trap");
            }
        }
    }
}

/// The machine's host name, for the syslog header (`-` when unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn raw(syslog: Option<&str>, facility: Option<&str>, trap: Option<&str>) -> RawNotify {
        RawNotify {
            syslog: syslog.map(Into::into),
            syslog_facility: facility.map(Into::into),
            snmp_trap: trap.map(Into::into),
            snmp_community: None,
        }
    }

    #[test]
    fn nothing_configured_sends_nothing() {
        let c = RawNotify::default().validate().unwrap();
        assert_eq!((c.syslog, c.snmp_trap, c.syslog_facility), (None, None, 3));
        assert_eq!(c.snmp_community, "public");
    }

    #[test]
    fn destinations_parse() {
        let c = raw(
            Some("udp://127.0.0.1:514"),
            Some("local0"),
            Some("127.0.0.1:162"),
        )
        .validate()
        .unwrap();
        assert_eq!(
            c.syslog,
            Some(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(c.syslog_facility, 16);
        assert_eq!(c.snmp_trap, Some("127.0.0.1:162".parse().unwrap()));
        for unix in ["unix:/dev/log", "unix:///dev/log"] {
            let c = raw(Some(unix), None, None).validate().unwrap();
            assert_eq!(c.syslog, Some(SyslogTarget::Unix("/dev/log".into())));
        }
    }

    #[test]
    fn bad_destinations_say_what_is_wrong() {
        for (r, says) in [
            (
                raw(Some("127.0.0.1:514"), None, None),
                "udp://host:port or unix:/path",
            ),
            (raw(Some("udp://nowhere"), None, None), "not a host:port"),
            (raw(Some("unix:dev/log"), None, None), "must be absolute"),
            (raw(None, Some("local9"), None), "is none of"),
            (raw(None, None, Some("127.0.0.1")), "not a host:port"),
            (
                RawNotify {
                    snmp_community: Some("two words".into()),
                    ..RawNotify::default()
                },
                "snmp_community",
            ),
        ] {
            let e = r.validate().unwrap_err().to_string();
            assert!(e.starts_with("notify: ") && e.contains(says), "{e}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = toml::from_str::<RawNotify>("sislog = \"udp://127.0.0.1:514\"").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
