//! Operators see what happened: a real `entitled` registers with a real authority whose
//! pool is short; the registration and the out-of-compliance answer, and the usage levels
//! its own gate crosses, arrive as RFC 5424 syslog messages at a UDP listener of the test's
//! own (which parses them) and as SNMPv2c traps at Debian's `snmptrapd`, started here on a
//! loopback port; `show license eventlog` lists them with times; the authority's audit log
//! filters by account, instance and kind.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entitle_proto::pb;
use harness::{Authority, Entitled, authorization, registration};

const CLI: &str = env!("CARGO_BIN_EXE_e2e-entitle");
const LIMIT: Duration = Duration::from_secs(30);

/// The entitle OID tree (see `entitle_sidecar::notify::snmp`).
const REGISTRATION_CHANGED: &str = ".1.3.6.1.4.1.32473.1.0.6";
const OUT_OF_COMPLIANCE: &str = ".1.3.6.1.4.1.32473.1.0.4";
const USAGE_80: &str = ".1.3.6.1.4.1.32473.1.0.1";
const USAGE_90: &str = ".1.3.6.1.4.1.32473.1.0.2";
const USAGE_100: &str = ".1.3.6.1.4.1.32473.1.0.3";
const AUTHORIZATION_EXPIRED: &str = ".1.3.6.1.4.1.32473.1.0.5";

// ----- A syslog listener: RFC 5424 over UDP -----

/// One RFC 5424 message, parsed.
#[derive(Clone, Debug)]
struct Syslog {
    facility: u8,
    severity: u8,
    timestamp: String,
    app: String,
    msgid: String,
    /// SD-ID -> params.
    sd: BTreeMap<String, BTreeMap<String, String>>,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
fn parse_syslog(line: &str) -> Result<Syslog, String> {
    let rest = line.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    let pri: u16 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err("PRI out of range".into());
    }
    let rest = rest.strip_prefix("1 ").ok_or("not version 1")?;
    let mut fields = rest.splitn(6, ' ');
    let mut next = || fields.next().ok_or("header too short");
    let timestamp = next()?.to_owned();
    let _host = next()?;
    let app = next()?.to_owned();
    let _procid = next()?;
    let msgid = next()?.to_owned();
    let rest = next()?;
    let (sd, msg) = parse_sd(rest)?;
    Ok(Syslog {
        facility: (pri / 8) as u8,
        severity: (pri % 8) as u8,
        timestamp,
        app,
        msgid,
        sd,
        msg: msg.strip_prefix(' ').unwrap_or(msg).to_owned(),
    })
}

type Elements = BTreeMap<String, BTreeMap<String, String>>;

/// STRUCTURED-DATA: `-` or `[ID name="value" ...]...` with `\"`, `\\`, `\]` escapes.
fn parse_sd(s: &str) -> Result<(Elements, &str), String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((BTreeMap::new(), rest));
    }
    let mut elements = BTreeMap::new();
    let mut rest = s;
    while let Some(body) = rest.strip_prefix('[') {
        let id_end = body.find([' ', ']']).ok_or("SD element not closed")?;
        let id = body[..id_end].to_owned();
        let mut params = BTreeMap::new();
        let mut cursor = &body[id_end..];
        loop {
            if let Some(after) = cursor.strip_prefix(']') {
                rest = after;
                break;
            }
            let after_space = cursor.strip_prefix(' ').ok_or("expected a space")?;
            let (name, value_start) = after_space.split_once("=\"").ok_or("param without =\"")?;
            let mut value = String::new();
            let mut chars = value_start.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("param value not closed".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                        Some((_, c)) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err("escape at the end".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            params.insert(name.to_owned(), value);
            cursor = &value_start[end + 1..];
        }
        elements.insert(id, params);
    }
    if elements.is_empty() {
        return Err("no structured data".into());
    }
    Ok((elements, rest))
}

#[test]
fn the_syslog_parser_refuses_what_is_not_rfc_5424() {
    let ok = parse_syslog(
        r#"<28>1 2026-12-01T22:00:00Z host entitled 42 usage [entitle@32473 udi="CPAR:A" reason="a \"b\" \] c"] text here"#,
    )
    .unwrap();
    assert_eq!((ok.facility, ok.severity), (3, 4));
    assert_eq!(ok.sd["entitle@32473"]["reason"], r#"a "b" ] c"#);
    assert_eq!(ok.msg, "text here");
    for bad in [
        "",
        "28>1 - - - - - -",
        "<999>1 - - - - - -",
        "<28>2 - - - - - -",
        "<28>1 - - -",
        "<28>1 - - - - - [id",
        "<28>1 - - - - - [id a=\"b]",
        "<28>1 - - - - - text",
    ] {
        assert!(parse_syslog(bad).is_err(), "{bad:?} parsed");
    }
}

/// Collects every datagram that arrives at a loopback UDP port.
struct SyslogListener {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogListener {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf) {
                let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(line);
            }
        });
        Self { port, lines }
    }

    /// Waits for a message that `matches`; every message must parse.
    fn wait(&self, what: &str, matches: impl Fn(&Syslog) -> bool) -> Syslog {
        let start = Instant::now();
        loop {
            let lines = self.lines.lock().unwrap().clone();
            for line in &lines {
                let message =
                    parse_syslog(line).unwrap_or_else(|e| panic!("not RFC 5424 ({e}): {line:?}"));
                if matches(&message) {
                    return message;
                }
            }
            assert!(
                start.elapsed() < LIMIT,
                "no syslog message {what} within {LIMIT:?}; got {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ----- snmptrapd -----

/// Debian's `snmptrapd` on a loopback port, logging every trap of community `public` to a
/// file with numeric OIDs.
struct TrapReceiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TrapReceiver {
    fn start(dir: &Path) -> Self {
        let conf = dir.join("snmptrapd.conf");
        std::fs::write(&conf, "authCommunity log public\n").unwrap();
        let log = dir.join("traps.log");
        // A free port: the receiver binds it right after; its start-up line says it did.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("snmptrapd")
            .args(["-f", "-n", "-On", "-C", "-c"])
            .arg(&conf)
            .arg("-Lf")
            .arg(&log)
            .arg(format!("udp:127.0.0.1:{port}"))
            // No MIBs: the OIDs are printed as numbers, and nothing else needs loading.
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run snmptrapd (Debian packages snmptrapd and snmp; .ci/install-peers installs them): {e}")
            });
        let mut receiver = Self { child, port, log };
        receiver.wait("its start-up line", |text| {
            text.contains("NET-SNMP version")
        });
        receiver
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log satisfies `ready`; answers the log.
    fn wait(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if ready(&text) {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("snmptrapd exited ({status}) before {what}; its log:\n{text}");
            }
            assert!(
                start.elapsed() < LIMIT,
                "snmptrapd: no {what} within {LIMIT:?}; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The trap lines (one per trap: its varbinds, tab-separated) naming `trap_oid`.
    fn traps(&mut self, trap_oid: &str) -> Vec<String> {
        let needle = format!(".1.3.6.1.6.3.1.1.4.1.0 = OID: {trap_oid}\t");
        let text = self.wait(&format!("trap {trap_oid}"), |t| {
            t.lines().any(|l| format!("{l}\t").contains(&needle))
        });
        text.lines()
            .filter(|l| format!("{l}\t").contains(&needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TrapReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_syslog_snmptrapd_and_the_eventlog() {
    let dir = tempfile::tempdir().unwrap();
    let listener = SyslogListener::start();
    let mut traps = TrapReceiver::start(dir.path());
    let authority = Authority::start(dir.path());
    // One PAR-TPS in the pool, two asked for: OUT OF COMPLIANCE.
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let extra = format!(
        "[agent]\nselection = {{ \"PAR-TPS\" = 2 }}\n\n[notify]\n\
         syslog = \"udp://127.0.0.1:{}\"\nsyslog_facility = \"local0\"\n\
         snmp_trap = \"127.0.0.1:{}\"\nsnmp_community = \"public\"\n",
        listener.port, traps.port
    );
    let sidecar = Entitled::start(dir.path(), &authority, "FCH-NOTIFY", &extra);
    sidecar.register(token).await;
    let status = sidecar
        .wait_for("out of compliance", LIMIT, |s| {
            authorization(s) == "OUT OF COMPLIANCE"
        })
        .await;
    assert_eq!(registration(&status), "REGISTERED");

    // Syslog: RFC 5424 with the device, the kind and the trap in structured data.
    let registered = listener.wait("REGISTERING -> REGISTERED", |m| {
        m.msgid == "registration" && m.msg.ends_with("REGISTERING -> REGISTERED")
    });
    assert_eq!(
        (registered.facility, registered.app.as_str()),
        (16, "entitled")
    );
    assert_eq!(registered.severity, 5, "notice");
    let sd = &registered.sd["entitle@32473"];
    assert_eq!(sd["udi"], "CPAR:FCH-NOTIFY");
    assert_eq!(sd["trap"], "entitleRegistrationStateChanged");
    // RFC 3339 in UTC, to the second: 2026-12-01T22:00:00Z.
    let t = registered.timestamp.as_bytes();
    assert!(
        t.len() == 20 && t[4] == b'-' && t[10] == b'T' && t[19] == b'Z',
        "{registered:?}"
    );
    let ooc = listener.wait("OUT OF COMPLIANCE", |m| {
        m.msgid == "authorization" && m.msg.ends_with("-> OUT OF COMPLIANCE")
    });
    assert_eq!(ooc.severity, 4, "warning");
    assert_eq!(ooc.sd["entitle@32473"]["trap"], "entitleOutOfCompliance");
    listener.wait("the registration call", |m| {
        m.msgid == "call" && m.msg == "registration succeeded"
    });

    // snmptrapd: the two traps, with the device and the states.
    let changed = traps.traps(REGISTRATION_CHANGED);
    assert!(
        changed.iter().any(|t| t.contains("STRING: \"REGISTERED\"")
            && t.contains(".1.3.6.1.4.1.32473.1.1.1.0 = STRING: \"CPAR:FCH-NOTIFY\"")),
        "{changed:#?}"
    );
    let ooc = traps.traps(OUT_OF_COMPLIANCE);
    assert!(
        ooc[0].contains(".1.3.6.1.4.1.32473.1.1.8.0 = STRING: \"OUT OF COMPLIANCE\""),
        "{ooc:#?}"
    );
    assert!(
        ooc[0].starts_with(".1.3.6.1.2.1.1.3.0 = Timeticks: "),
        "{ooc:#?}"
    );

    // Usage: three times the licence through the sidecar's own gate crosses 80, 90 and 100%.
    let mut client = sidecar.client().await;
    let licensed = harness::rate(&status, "PAR-TPS").unwrap();
    client
        .check(pb::CheckRequest {
            tag: "PAR-TPS".into(),
            count: u32::try_from(licensed * 3).unwrap(),
        })
        .await
        .unwrap();
    for oid in [USAGE_80, USAGE_90, USAGE_100] {
        let usage = traps.traps(oid);
        assert!(
            usage[0].contains("STRING: \"PAR-TPS\"")
                && usage[0].contains(&format!(".1.3.6.1.4.1.32473.1.1.6.0 = Gauge32: {licensed}")),
            "{usage:#?}"
        );
    }
    listener.wait("usage at 100%", |m| {
        m.msgid == "usage"
            && m.msg
                .starts_with("PAR-TPS traffic crossed 100% of the licence")
    });

    // `show license eventlog`: the events with their times and traps, newest first.
    let out = Command::new(CLI)
        .args(["--sidecar", &sidecar.url, "show", "license", "eventlog"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing from\n{text}"))
    };
    assert!(text.lines().nth(1).unwrap().contains(" UTC "), "{text}");
    let usage = row("traffic crossed 100% of the licence");
    let ooc = row("-> OUT OF COMPLIANCE [trap entitleOutOfCompliance]");
    let registered = row("REGISTERING -> REGISTERED [trap entitleRegistrationStateChanged]");
    let call = row("registration succeeded");
    let registering = row("UNREGISTERED -> REGISTERING");
    assert!(
        usage < ooc && ooc < registered && registered < call && call < registering,
        "newest first:\n{text}"
    );

    // The authority's audit log, by account, instance and kind.
    let mut admin = authority.admin().await;
    let instances = admin
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert_eq!(instances.len(), 1, "{instances:?}");
    let instance = instances[0].instance_id.clone();
    let of_instance = audit(&mut admin, "", &instance, "").await;
    assert!(
        of_instance.first().map(String::as_str) == Some("instance.register")
            && of_instance.iter().any(|a| a == "instance.authorize")
            && of_instance.iter().all(|a| a.starts_with("instance.")),
        "{of_instance:?}"
    );
    let of_acme = audit(&mut admin, "Acme", "", "").await;
    assert!(
        of_acme.iter().any(|a| a == "smart-account.create")
            && of_acme.iter().any(|a| a == "instance.register"),
        "{of_acme:?}"
    );
    assert_eq!(
        audit(&mut admin, "Acme", &instance, "instance.register").await,
        ["instance.register"]
    );
    assert!(audit(&mut admin, "Nobody", "", "").await.is_empty());
    assert_eq!(audit(&mut admin, "", "", "pool.add").await, ["pool.add"]);
}

/// The actions of the audit entries that match the filters.
async fn audit(
    admin: &mut common::Admin,
    account: &str,
    instance: &str,
    kind: &str,
) -> Vec<String> {
    admin
        .list_audit(pb::ListAuditRequest {
            smart_account: account.into(),
            instance_id: instance.into(),
            kind: kind.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The authority gone past the communication deadline (5 s, signed by the authority; the
/// device's timers in seconds): the authorisation expires, and snmptrapd gets the trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_authorization_reaches_snmptrapd() {
    let dir = tempfile::tempdir().unwrap();
    let mut traps = TrapReceiver::start(dir.path());
    let mut authority =
        Authority::start_with(dir.path(), &["--renewal-secs", "2", "--deadline-secs", "5"]);
    let token = authority.acme(&[("PAR-TPS", 1)]).await;
    let extra = format!(
        "[agent]\nselection = {{ \"PAR-TPS\" = 1 }}\n\
         [agent.timers]\nretry = 1\nauthorization_renewal = 2\ncommunication_deadline = 5\n\
         grace = 3\nid_renewal = 30\nid_validity = 60\n\n[notify]\n\
         snmp_trap = \"127.0.0.1:{}\"\nsnmp_community = \"public\"\n",
        traps.port
    );
    let sidecar = Entitled::start(dir.path(), &authority, "FCH-EXPIRE", &extra);
    sidecar.register(token).await;
    sidecar
        .wait_for("authorised", LIMIT, |s| authorization(s) == "AUTHORIZED")
        .await;
    authority.kill();
    sidecar
        .wait_for("expired", LIMIT, |s| {
            authorization(s) == "AUTHORIZATION EXPIRED"
        })
        .await;
    let expired = traps.traps(AUTHORIZATION_EXPIRED);
    assert!(
        expired[0].contains(".1.3.6.1.4.1.32473.1.1.7.0 = STRING: \"AUTHORIZED\"")
            && expired[0]
                .contains(".1.3.6.1.4.1.32473.1.1.8.0 = STRING: \"AUTHORIZATION EXPIRED\"")
            && expired[0].contains("STRING: \"CPAR:FCH-EXPIRE\""),
        "{expired:#?}"
    );
}
