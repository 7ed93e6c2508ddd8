//! Bad input through real sockets, against the `entitle-radius-proxy` binary run as a
//! process in front of a real FreeRADIUS: each case is dropped and counted in the metrics,
//! the log stays rate-limited, and the proxy keeps serving.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use entitle_radius::attribute::{ACCT_STATUS_TYPE, Attribute, USER_NAME};
use entitle_radius::{Code, Packet, Policy};
use entitle_radius_peers as peers;
use peers::{FreeRadius, User};

const PROXY: &str = env!("CARGO_BIN_EXE_entitle-radius-proxy");
const STRICT_SECRET: &str = "strict-secret-3";

struct Running {
    child: Child,
    listen: SocketAddr,
    metrics: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and reads the addresses it prints.
fn run(config: &std::path::Path, log: std::path::PathBuf) -> Running {
    let mut child = Command::new(PROXY)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |prefix: &str| {
        let line = lines.next().expect("a line").unwrap();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?} is not {prefix}..."))
            .parse::<SocketAddr>()
            .unwrap()
    };
    let listen = next("entitle-radius-proxy listening on ");
    let metrics = next("entitle-radius-proxy metrics on ");
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        listen,
        metrics,
        log,
    }
}

/// A good request still gets its Access-Accept.
fn still_serves(at: SocketAddr) {
    let client = UdpClient::new(at);
    let mut request = peers::access_request(
        1,
        getrandom_16(),
        "alice",
        "wonderland",
        CLIENT_SECRET.as_bytes(),
    );
    client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
    let bytes = client.recv(Duration::from_secs(5)).expect("still answered");
    let reply = Packet::decode(&bytes).unwrap();
    reply
        .verify_response(CLIENT_SECRET.as_bytes(), &request, Policy::default())
        .unwrap();
    assert_eq!(reply.code, Code::AccessAccept);
}

fn getrandom_16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b
}

/// Waits (bounded) until the counter for `reason` reaches `expected`, and checks it goes
/// no further.
fn expect_count(metrics: SocketAddr, reason: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = counter(&scrape(metrics), reason);
        if seen == expected {
            return;
        }
        assert!(seen < expected, "{reason}: {seen} > {expected}");
        assert!(
            Instant::now() < deadline,
            "{reason}: {seen}, not {expected}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn header(code: u8, id: u8, length: u16) -> Vec<u8> {
    let mut out = vec![code, id];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[0x11; 16]);
    out
}

#[test]
fn bad_input_is_dropped_counted_and_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(
        UPSTREAM_SECRET,
        &[User {
            name: "alice",
            password: "wonderland",
            reply_message: "hi",
        }],
    );
    let key = offline_key(dir.path());
    // 127.0.0.1 is a lenient client, 127.0.0.2 one that must send Message-Authenticator;
    // 127.0.0.3 is nobody.
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        &format!(
            "[[client]]\nname = \"strict\"\naddress = \"127.0.0.2\"\nsecret = {STRICT_SECRET:?}\n\
             require_message_authenticator = true\n"
        ),
        "",
        &embedded_licence(dir.path(), &key, None, 10),
    );
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let proxy = run(&config, dir.path().join("proxy.log"));
    let (at, metrics) = (proxy.listen, proxy.metrics);
    still_serves(at);

    let lenient = UdpClient::new(at);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short packet", vec![1, 2, 0, 10, 0, 0, 0, 0, 0, 0]),
        ("length field past the datagram", {
            let mut p = header(1, 2, 30);
            p.extend_from_slice(&[1, 3, b'x']);
            p
        }),
        ("length field below 20", header(1, 3, 19)),
        ("attribute length 1", {
            let mut p = header(1, 4, 23);
            p.extend_from_slice(&[1, 1, b'x']);
            p
        }),
        ("attribute overrunning the packet", {
            let mut p = header(1, 5, 24);
            p.extend_from_slice(&[1, 9, b'x', b'y']);
            p
        }),
        ("unknown code", header(40, 6, 20)),
        ("two hidden passwords", {
            let mut p = header(1, 7, 56);
            p.extend_from_slice(&[2, 18]);
            p.extend_from_slice(&[0; 16]);
            p.extend_from_slice(&[2, 18]);
            p.extend_from_slice(&[0; 16]);
            p
        }),
    ];
    for (n, (what, datagram)) in cases.iter().enumerate() {
        lenient.send(datagram);
        expect_count(metrics, "malformed", n as u64 + 1);
        still_serves(at);
        println!("malformed: {what}: dropped and counted");
    }

    // A reply sent as if it were a request.
    let mut accept = Packet::new(Code::AccessAccept, 1, [0; 16]);
    lenient.send(&accept.encode().unwrap());
    expect_count(metrics, "unexpected_code", 1);
    let _ = &mut accept;

    // Wrong secret: an Access-Request's Message-Authenticator, an Accounting-Request's
    // authenticator.
    let mut request = peers::access_request(8, [8; 16], "alice", "wonderland", b"wrong");
    lenient.send(&request.encode_request(b"wrong").unwrap());
    expect_count(metrics, "bad_authenticator", 1);
    let mut accounting = Packet::new(Code::AccountingRequest, 9, [0; 16])
        .with(Attribute::from_u32(ACCT_STATUS_TYPE, 1))
        .with(Attribute::new(USER_NAME, "alice"));
    lenient.send(&accounting.encode_request(b"wrong").unwrap());
    expect_count(metrics, "bad_authenticator", 2);
    still_serves(at);

    // The strict client without Message-Authenticator; then with one, answered.
    let strict = UdpSocket::bind("127.0.0.2:0").unwrap();
    strict
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let bare = peers::access_request(
        10,
        [10; 16],
        "alice",
        "wonderland",
        STRICT_SECRET.as_bytes(),
    );
    strict.send_to(&bare.encode().unwrap(), at).unwrap();
    expect_count(metrics, "missing_message_authenticator", 1);
    let mut signed = bare.clone();
    signed.authenticator = [11; 16];
    signed
        .set_user_password(b"wonderland", STRICT_SECRET.as_bytes())
        .unwrap();
    strict
        .send_to(
            &signed.encode_request(STRICT_SECRET.as_bytes()).unwrap(),
            at,
        )
        .unwrap();
    let mut buffer = [0u8; 4096];
    let (n, _) = strict
        .recv_from(&mut buffer)
        .expect("the strict client is served");
    let reply = Packet::decode(&buffer[..n]).unwrap();
    reply
        .verify_response(STRICT_SECRET.as_bytes(), &signed, Policy::default())
        .unwrap();
    assert_eq!(reply.code, Code::AccessAccept);

    // An unknown address, then a flood from it.
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut from_stranger = peers::access_request(
        12,
        [12; 16],
        "alice",
        "wonderland",
        CLIENT_SECRET.as_bytes(),
    );
    let datagram = from_stranger
        .encode_request(CLIENT_SECRET.as_bytes())
        .unwrap();
    stranger.send_to(&datagram, at).unwrap();
    expect_count(metrics, "unknown_client", 1);
    const FLOOD: u64 = 3000;
    for i in 0..FLOOD {
        stranger.send_to(&datagram, at).unwrap();
        if i % 200 == 0 {
            // Keep within the socket buffer the kernel grants.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    still_serves(at);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = counter(&scrape(metrics), "unknown_client");
        if seen == FLOOD + 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen > FLOOD / 2 && seen <= FLOOD + 1,
        "{seen} of the flood counted"
    );

    // Everything above was logged, rate-limited: a few lines, not thousands.
    let log = std::fs::read_to_string(&proxy.log).unwrap();
    let lines = log.lines().filter(|l| l.contains("unknown_client")).count();
    assert!(
        (1..=20).contains(&lines),
        "{lines} log lines for the flood:\n{log}"
    );
    assert!(!log.contains(CLIENT_SECRET) && !log.contains(UPSTREAM_SECRET));
    let text = scrape(metrics);
    assert_eq!(counter(&text, "admitted"), 11, "{text}");
}

#[test]
fn a_bad_configuration_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    for bad in [
        "listen = [\"127.0.0.1:0\"]\n",
        "listen = [\"127.0.0.1:0\"]\nbogus = 1\n",
        &proxy_toml(
            &[(
                "u",
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )],
            "",
            "[counting]\ntag = \"NOPE\"\n",
            &embedded_licence(dir.path(), &offline_key(dir.path()), None, 1),
        ),
    ] {
        std::fs::write(&config, bad).unwrap();
        let out = Command::new(PROXY)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad configuration"), "{stderr}");
    }
}
