//! Licence events as RFC 5424 syslog messages, sent as datagrams over UDP (RFC 5426) or to
//! a local Unix socket such as `/dev/log`.
//!
//! ```text
//! <PRI>1 2026-12-01T22:00:00Z host entitled 4242 registration [entitle@32473 udi="CPAR:FCH2231V0AB" kind="registration" trap="entitleRegistrationStateChanged"] registration REGISTERING -> REGISTERED
//! ```
//!
//! PRI is facility * 8 + severity; MSGID is the event's kind; the structured data element
//! `entitle@32473` (under the enterprise number of [`super::snmp`]) names the device, the
//! kind and the trap the event also raises. Sending never blocks the caller: a socket
//! that cannot take a datagram now loses it, with a warning in the sidecar's log.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::Severity;

/// The structured data ID of entitle's parameters (`name@<private enterprise number>`).
pub(crate) const SD_ID: &str = "entitle@32473";
/// The longest message text sent; RFC 5426 receivers must take 480 octets, should take 2048.
const MAX_TEXT: usize = 1024;

/// Where syslog messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A syslog server over UDP.
    Udp(SocketAddr),
    /// A local datagram socket (`/dev/log`).
    Unix(PathBuf),
}

/// The facilities by name, as RFC 5424 numbers them.
pub(crate) const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// One message's fields.
pub(crate) struct Message<'a> {
    pub(crate) facility: u8,
    pub(crate) severity: Severity,
    pub(crate) at_unix: i64,
    pub(crate) hostname: &'a str,
    pub(crate) procid: u32,
    pub(crate) msgid: &'a str,
    /// Parameters of the `entitle@32473` element.
    pub(crate) params: &'a [(&'a str, &'a str)],
    pub(crate) text: &'a str,
}

/// The message in RFC 5424's syntax.
pub(crate) fn format(m: &Message<'_>) -> String {
    let pri = u16::from(m.facility.min(23)) * 8 + m.severity as u16;
    let timestamp = OffsetDateTime::from_unix_timestamp(m.at_unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned());
    let mut sd = format!("[{SD_ID}");
    for (name, value) in m.params {
        sd.push_str(&format!(" {name}=\"{}\"", escape(value)));
    }
    sd.push(']');
    let mut text: String = m.text.chars().filter(|c| !c.is_control()).collect();
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    format!(
        "<{pri}>1 {timestamp} {} entitled {} {} {sd} {text}",
        header_field(m.hostname, 255),
        m.procid,
        header_field(m.msgid, 32),
    )
}

/// A header field: printable US-ASCII without spaces, at most `max` long, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash; control characters dropped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| !c.is_control()) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An open syslog destination.
pub(crate) struct Syslog {
    target: SyslogTarget,
    udp: Option<UdpSocket>,
    unix: Option<UnixDatagram>,
}

impl Syslog {
    /// Opens a socket for `target` (nothing is sent yet; a Unix socket path is resolved at
    /// each send, so a syslog daemon that starts later is found).
    pub(crate) fn open(target: SyslogTarget) -> std::io::Result<Self> {
        let (udp, unix) = match &target {
            SyslogTarget::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.set_nonblocking(true)?;
                (Some(socket), None)
            }
            SyslogTarget::Unix(_) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                (None, Some(socket))
            }
        };
        Ok(Self { target, udp, unix })
    }

    /// Sends one formatted message.
    pub(crate) fn send(&self, line: &str) -> std::io::Result<()> {
        match (&self.target, &self.udp, &self.unix) {
            (SyslogTarget::Udp(addr), Some(socket), _) => {
                socket.send_to(line.as_bytes(), addr).map(drop)
            }
            (SyslogTarget::Unix(path), _, Some(socket)) => {
                socket.send_to(line.as_bytes(), path).map(drop)
            }
            _ => Err(std::io::Error::other("the syslog socket is not open")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(params: &'a [(&'a str, &'a str)], text: &'a str) -> Message<'a> {
        Message {
            facility: 3,
            severity: Severity::Warning,
            at_unix: 1_764_626_400,
            hostname: "radius-1",
            procid: 42,
            msgid: "authorization",
            params,
            text,
        }
    }

    #[test]
    fn the_header_follows_rfc_5424() {
        let line = format(&message(
            &[("udi", "CPAR:FCH1"), ("kind", "authorization")],
            "authorization AUTHORIZED -> OUT OF COMPLIANCE",
        ));
        assert_eq!(
            line,
            "<28>1 2025-12-01T22:00:00Z radius-1 entitled 42 authorization \
             [entitle@32473 udi=\"CPAR:FCH1\" kind=\"authorization\"] \
             authorization AUTHORIZED -> OUT OF COMPLIANCE"
        );
    }

    #[test]
    fn param_values_are_escaped_and_header_fields_cleaned() {
        let mut m = message(&[("reason", "a \"quoted\" ] \\ reason\n")], "x\ny");
        m.hostname = "bad host";
        m.msgid = "";
        let line = format(&m);
        assert!(
            line.contains(r#"reason="a \"quoted\" \] \\ reason""#),
            "{line}"
        );
        assert!(line.contains(" badhost entitled 42 - ["), "{line}");
        assert!(line.ends_with("] xy"), "{line}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_TEXT);
        let line = format(&message(&[], &text));
        let body = line.rsplit("] ").next().unwrap_or_default();
        assert!(body.len() <= MAX_TEXT && body.len() >= MAX_TEXT - 1);
        assert!(body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn datagrams_reach_a_udp_listener() -> std::io::Result<()> {
        let listener = UdpSocket::bind("127.0.0.1:0")?;
        listener.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let syslog = Syslog::open(SyslogTarget::Udp(listener.local_addr()?))?;
        syslog.send("<13>1 - - entitled - - - hello")?;
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"<13>1 - - entitled - - - hello");
        Ok(())
    }

    #[test]
    fn datagrams_reach_a_unix_socket() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let listener = UnixDatagram::bind(&path)?;
        listener.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let syslog = Syslog::open(SyslogTarget::Unix(path))?;
        syslog.send("<13>1 - - entitled - - - hello")?;
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf)?;
        assert_eq!(&buf[..n], b"<13>1 - - entitled - - - hello");
        Ok(())
    }
}
