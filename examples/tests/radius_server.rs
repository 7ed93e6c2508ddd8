//! The licensed RADIUS server against real peers: FreeRADIUS's `radclient` for PAP,
//! Message-Authenticator, accounting, Status-Server and overload; a raw UDP socket for every
//! malformed case; and, embedded, a real licence authority whose ledger must match what was
//! answered.
#![allow(missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use entitle_examples::radius_server::{
    Clients, Licence, Licensed, OverLimit, PAR_TPS, Server, ServerConfig, Stats, Totals, Users,
};
use entitle_radius::attribute::{ACCT_STATUS_TYPE, MESSAGE_AUTHENTICATOR, USER_NAME};
use entitle_radius::{Attribute, Code, Packet, Policy};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UdpSocket;

const RADCLIENT: &str = "/usr/bin/radclient";
const SECRET: &str = "testing123";
const USERS: &str = "alice Cleartext-Password := \"wonderland\"\nbob:builder\n";
/// Longest a radclient run may take before the test fails.
const RADCLIENT_DEADLINE: Duration = Duration::from_secs(60);

/// A server on 127.0.0.1:0 in this process, stopped when dropped.
struct Running {
    addr: SocketAddr,
    stats: Arc<Stats>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn totals(&self) -> Totals {
        self.stats.totals()
    }

    /// Waits (bounded) until `done` holds of the totals; fails the test if it never does.
    async fn until(&self, what: &str, done: impl Fn(&Totals) -> bool) -> Totals {
        for _ in 0..500 {
            let totals = self.totals();
            if done(&totals) {
                return totals;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: never reached; totals {:?}", self.totals());
    }
}

fn start(
    clients: &str,
    licence: Option<Licence>,
    over_limit: OverLimit,
    workers: usize,
) -> Running {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        clients: Clients::parse(clients).expect("clients"),
        users: Users::parse(USERS).expect("users"),
        licence,
        over_limit,
        workers,
        socket_buffer: 4 << 20,
    })
    .expect("binds");
    let addr = server.local_addr().expect("bound");
    let stats = server.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stats,
        _stop: stop,
    }
}

fn clients() -> String {
    format!("127.0.0.1 {SECRET}\n")
}

struct Radclient {
    stdout: String,
    stderr: String,
}

impl Radclient {
    fn received(&self, code: &str) -> bool {
        self.stdout.contains(&format!("Received {code} "))
    }

    /// A count of radclient's `-s` summary, such as `Accepted`.
    fn summary(&self, field: &str) -> u64 {
        self.stdout
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == field).then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {field:?} in radclient's summary:\n{}", self.stdout))
    }
}

/// Runs radclient once against `addr` with `args` before the server, `input` on stdin.
async fn radclient(addr: SocketAddr, args: &[&str], command: &str, input: &str) -> Radclient {
    assert!(
        Path::new(RADCLIENT).exists(),
        "{RADCLIENT} (FreeRADIUS's client, Debian's freeradius-utils) is missing: run .ci/install-peers"
    );
    let mut child = tokio::process::Command::new(RADCLIENT)
        .args(args)
        .arg(addr.to_string())
        .arg(command)
        .arg(SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("radclient starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("written");
    drop(stdin);
    let output = tokio::time::timeout(RADCLIENT_DEADLINE, child.wait_with_output())
        .await
        .expect("radclient ends in time")
        .expect("radclient runs");
    Radclient {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One try, a short timeout: a dropped request is a quick timeout, never a resend.
const ONCE: &[&str] = &["-x", "-r", "1", "-t", "1"];
/// radclient 3.2 with many requests in parallel and many lost takes a very long time to
/// give up on them with a timeout of a second or more; below a second it is quick.
const OVERLOAD_TIMEOUT: &str = "0.8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_pap_accept_and_reject_with_and_without_message_authenticator() {
    let server = start(&clients(), None, OverLimit::Drop, 2);
    let cases = [
        (
            "User-Name = alice, User-Password = wonderland",
            "Access-Accept",
        ),
        (
            "User-Name = alice, User-Password = wonderlan",
            "Access-Reject",
        ),
        ("User-Name = bob, User-Password = builder", "Access-Accept"),
        (
            "User-Name = carol, User-Password = builder",
            "Access-Reject",
        ),
        (
            "User-Name = alice, User-Password = wonderland, Message-Authenticator = 0x00",
            "Access-Accept",
        ),
        (
            "User-Name = alice, User-Password = nope, Message-Authenticator = 0x00",
            "Access-Reject",
        ),
    ];
    for (input, expected) in cases {
        let out = radclient(server.addr, ONCE, "auth", input).await;
        assert!(
            out.received(expected),
            "{input}: expected {expected}\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let t = server.until("every reply sent", |t| t.answered == 6).await;
    assert_eq!(
        (t.received, t.admitted, t.accepted, t.rejected),
        (6, 6, 3, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_requires_a_message_authenticator() {
    let server = start(
        &format!("127.0.0.1 {SECRET} require-message-authenticator\n"),
        None,
        OverLimit::Drop,
        2,
    );
    let out = radclient(
        server.addr,
        ONCE,
        "auth",
        "User-Name = alice, User-Password = wonderland, Message-Authenticator = 0x00",
    )
    .await;
    assert!(
        out.received("Access-Accept"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let out = radclient(
        server.addr,
        ONCE,
        "auth",
        "User-Name = alice, User-Password = wonderland",
    )
    .await;
    assert!(
        !out.stdout.contains("Received"),
        "dropped without an answer:\n{}",
        out.stdout
    );
    let t = server
        .until("the request without one counted", |t| {
            t.bad_authenticator == 1
        })
        .await;
    assert_eq!((t.received, t.admitted, t.answered), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_accounting_and_status_server() {
    let server = start(&clients(), None, OverLimit::Drop, 2);
    for status in ["Start", "Interim-Update", "Stop"] {
        let input = format!(
            "User-Name = alice, Acct-Status-Type = {status}, Acct-Session-Id = \"s-1\", \
             NAS-IP-Address = 127.0.0.1"
        );
        let out = radclient(server.addr, ONCE, "acct", &input).await;
        assert!(
            out.received("Accounting-Response"),
            "{status}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let out = radclient(server.addr, ONCE, "status", "Message-Authenticator = 0x00").await;
    assert!(
        out.received("Access-Accept"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let t = server.until("every reply sent", |t| t.answered == 4).await;
    assert_eq!(
        (t.accounting, t.status, t.admitted),
        (3, 1, 3),
        "Status-Server is never counted by the gate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_with_the_wrong_secret_is_dropped() {
    let server = start("127.0.0.1 another-secret\n", None, OverLimit::Drop, 2);
    let out = radclient(
        server.addr,
        ONCE,
        "auth",
        "User-Name = alice, User-Password = wonderland, Message-Authenticator = 0x00",
    )
    .await;
    assert!(!out.stdout.contains("Received"), "{}", out.stdout);
    let out = radclient(
        server.addr,
        ONCE,
        "acct",
        "User-Name = alice, Acct-Status-Type = Start",
    )
    .await;
    assert!(!out.stdout.contains("Received"), "{}", out.stdout);
    let t = server
        .until("both counted", |t| t.bad_authenticator == 2)
        .await;
    assert_eq!((t.admitted, t.answered), (0, 0));
}

/// Requests for radclient's `-f`: `count` Access-Requests, half with the right password.
fn requests(count: usize) -> String {
    (0..count)
        .map(|i| {
            let password = if i % 2 == 0 { "wonderland" } else { "wrong" };
            format!("User-Name = alice, User-Password = {password}, NAS-Port = {i}\n\n")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_licence_the_excess_is_dropped_and_counted() {
    const SENT: usize = 200;
    let licensed = Licensed::standalone(50, 10).expect("a gate");
    let server = start(
        &clients(),
        Some(licensed.licence.clone()),
        OverLimit::Drop,
        2,
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("requests");
    std::fs::write(&file, requests(SENT)).expect("written");
    let file = file.to_str().expect("a UTF-8 path");
    let out = radclient(
        server.addr,
        &[
            "-s",
            "-r",
            "1",
            "-t",
            OVERLOAD_TIMEOUT,
            "-p",
            "200",
            "-f",
            file,
        ],
        "auth",
        "",
    )
    .await;
    let got = out.summary("Accepted") + out.summary("Rejected");
    let t = server
        .until("every datagram handled", |t| {
            t.received == t.admitted + t.over_limit + t.malformed + t.bad_authenticator
        })
        .await;
    let usage = licensed.licence.gate.snapshot();
    let usage = usage.usage(PAR_TPS).expect("the entitlement");
    assert_eq!(t.received, SENT as u64, "one try each: {t:?}");
    assert_eq!(
        t.admitted, usage.admitted,
        "the server admitted what the gate did"
    );
    assert_eq!(t.over_limit, usage.rejected);
    assert_eq!(t.accepted + t.rejected, t.admitted);
    assert_eq!(t.answered, t.admitted, "dropped ones are not answered");
    assert_eq!(
        got, t.answered,
        "radclient got every answer sent:\n{}",
        out.stdout
    );
    assert!(t.over_limit > 0, "some were over the licence: {t:?}");
    assert!(t.admitted >= 10, "the burst at least: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_licence_with_reject_the_excess_is_refused() {
    let licensed = Licensed::standalone(1, 1).expect("a gate");
    let server = start(
        &clients(),
        Some(licensed.licence.clone()),
        OverLimit::Reject,
        1,
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("requests");
    std::fs::write(&file, requests(10)).expect("written");
    let file = file.to_str().expect("a UTF-8 path");
    let out = radclient(
        server.addr,
        &[
            "-x",
            "-s",
            "-r",
            "1",
            "-t",
            OVERLOAD_TIMEOUT,
            "-p",
            "10",
            "-f",
            file,
        ],
        "auth",
        "",
    )
    .await;
    assert!(
        out.stdout.contains("over the licensed rate"),
        "the Reply-Message:\n{}",
        out.stdout
    );
    let t = server.until("all answered", |t| t.answered == 10).await;
    assert!(t.over_limit > 0, "{t:?}");
    assert_eq!(t.admitted + t.over_limit, 10);
    assert_eq!(out.summary("Accepted") + out.summary("Rejected"), 10);
}

// ---- Malformed datagrams through a real socket ----

fn access_request(id: u8, secret: &[u8], password: &[u8]) -> (Packet, Vec<u8>) {
    let mut request =
        Packet::new(Code::AccessRequest, id, [id; 16]).with(Attribute::new(USER_NAME, "alice"));
    request
        .set_user_password(password, secret)
        .expect("password");
    let bytes = request.encode_request(secret).expect("encodes");
    (request, bytes)
}

/// The raw header of a datagram: code, identifier, the Length field, a zero authenticator.
fn raw(code: u8, length: u16, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![code, 1];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(rest);
    out
}

/// Sends a good request and waits for its Access-Accept: with one worker, every datagram
/// sent before it has been handled once it comes.
async fn still_answers(socket: &UdpSocket, server: SocketAddr, id: u8) {
    let (request, bytes) = access_request(id, SECRET.as_bytes(), b"wonderland");
    socket.send_to(&bytes, server).await.expect("sent");
    let mut buffer = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
        .await
        .expect("an answer in time")
        .expect("received");
    let reply = Packet::decode(&buffer[..n]).expect("decodes");
    reply
        .verify_response(
            SECRET.as_bytes(),
            &request,
            Policy::RequireMessageAuthenticator,
        )
        .expect("signed with the secret");
    assert_eq!(reply.code, Code::AccessAccept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_datagram_is_counted_and_the_server_keeps_answering() {
    let server = start(&clients(), None, OverLimit::Drop, 1);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binds");
    still_answers(&socket, server.addr, 1).await;

    let (_, good) = access_request(2, SECRET.as_bytes(), b"wonderland");
    let mut length_past = good.clone();
    length_past[3] += 1;
    let mut padded = good.clone();
    padded.push(0);
    let mut duplicate_ma = good.clone();
    duplicate_ma.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
    duplicate_ma.extend_from_slice(&[0; 16]);
    let length = u16::try_from(duplicate_ma.len()).expect("short");
    duplicate_ma[2..4].copy_from_slice(&length.to_be_bytes());
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("short", vec![1, 1, 0, 20, 0, 0, 0, 0, 0, 0]),
        ("Length below 20", raw(1, 19, &[])),
        ("Length above 4096", raw(1, 4097, &[])),
        ("Length past the datagram", length_past),
        ("datagram past the Length", padded),
        ("attribute length 0", raw(1, 23, &[USER_NAME, 0, b'a'])),
        ("attribute length 1", raw(1, 23, &[USER_NAME, 1, b'a'])),
        (
            "attribute past the end",
            raw(1, 24, &[USER_NAME, 9, b'a', b'b']),
        ),
        ("a lone attribute octet", raw(1, 21, &[USER_NAME])),
        ("unknown code", raw(40, 20, &[])),
        ("a reply code", raw(2, 20, &[])),
        (
            "Message-Authenticator too short",
            raw(1, 24, &[MESSAGE_AUTHENTICATOR, 4, 0, 0]),
        ),
        ("two Message-Authenticators", duplicate_ma),
        ("larger than RADIUS allows", vec![1; 5000]),
    ];
    for (what, datagram) in &malformed {
        socket.send_to(datagram, server.addr).await.expect("sent");
        let _ = what;
    }
    still_answers(&socket, server.addr, 3).await;
    let t = server.totals();
    assert_eq!(t.malformed, malformed.len() as u64, "{t:?}");

    // A User-Password that is not a multiple of 16 octets: malformed, not counted.
    let mut request = Packet::new(Code::AccessRequest, 4, [4; 16])
        .with(Attribute::new(USER_NAME, "alice"))
        .with(Attribute::new(
            entitle_radius::attribute::USER_PASSWORD,
            [7u8; 15],
        ));
    let bytes = request.encode_request(SECRET.as_bytes()).expect("encodes");
    socket.send_to(&bytes, server.addr).await.expect("sent");

    // The wrong secret: a bad Message-Authenticator, and a bad accounting authenticator.
    let (_, wrong) = access_request(5, b"not-the-secret", b"wonderland");
    socket.send_to(&wrong, server.addr).await.expect("sent");
    let mut acct = Packet::new(Code::AccountingRequest, 6, [0; 16])
        .with(Attribute::from_u32(ACCT_STATUS_TYPE, 1));
    let wrong = acct.encode_request(b"not-the-secret").expect("encodes");
    socket.send_to(&wrong, server.addr).await.expect("sent");
    // Status-Server without a Message-Authenticator (RFC 5997 requires one).
    let status = Packet::new(Code::StatusServer, 7, [7; 16])
        .encode()
        .expect("encodes");
    socket.send_to(&status, server.addr).await.expect("sent");

    // An unknown client: the same good request from 127.0.0.3.
    let stranger = UdpSocket::bind("127.0.0.3:0")
        .await
        .expect("binds 127.0.0.3");
    assert_eq!(
        stranger.local_addr().expect("bound").ip(),
        "127.0.0.3".parse::<IpAddr>().expect("ip")
    );
    stranger.send_to(&good, server.addr).await.expect("sent");

    still_answers(&socket, server.addr, 8).await;
    let t = server.totals();
    assert_eq!(
        (t.malformed, t.bad_authenticator, t.unknown_client),
        (malformed.len() as u64 + 1, 3, 1),
        "{t:?}"
    );
    assert_eq!((t.admitted, t.accepted, t.answered), (3, 3, 3), "{t:?}");
    let mut buffer = [0u8; 64];
    assert!(
        stranger.try_recv_from(&mut buffer).is_err(),
        "no answer to an unknown client"
    );
}

// ---- Licensed by a real authority: embedded, and attached to a sidecar ----

mod licensed {
    use super::*;
    use entitle_authority::{self as authority, AuthorityState, DataDir, Periods};
    use entitle_examples::radius_server::Mode;
    use entitle_proto::pb;
    use entitle_proto::pb::authority_admin_client::AuthorityAdminClient;
    use entitle_proto::pb::sidecar_client::SidecarClient;
    use entitle_sidecar::{AttachOptions, RawConfig, Sidecar, SidecarConfig};
    use tonic::service::interceptor::InterceptedService;
    use tonic::transport::Channel;

    type Admin = AuthorityAdminClient<
        InterceptedService<
            Channel,
            Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
        >,
    >;

    /// A licence authority on 127.0.0.1:0 with one PAR-TPS (100 TPS) for "Acme"/"Radius",
    /// a token for it, and a sidecar configuration asking for it.
    struct Authority {
        dir: tempfile::TempDir,
        url: String,
        admin: Admin,
        token: String,
        config: SidecarConfig,
    }

    async fn authority() -> Authority {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("authority");
        authority::init(&data).expect("init");
        let state = AuthorityState::open(&data, Periods::default(), authority::system_clock())
            .expect("opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(authority::serve(state, listener, std::future::pending()));

        let credential = std::fs::read_to_string(DataDir::new(&data).admin_credential())
            .expect("the admin credential");
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", credential.trim())
            .parse()
            .expect("ascii");
        let channel = Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connects");
        let mut admin: Admin = AuthorityAdminClient::with_interceptor(
            channel,
            Box::new(move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", bearer.clone());
                Ok(r)
            }),
        );
        admin
            .create_smart_account(pb::CreateSmartAccountRequest {
                name: "Acme".into(),
                plr_authorized: false,
                export_controlled: false,
            })
            .await
            .expect("account");
        admin
            .create_virtual_account(pb::CreateVirtualAccountRequest {
                smart_account: "Acme".into(),
                name: "Radius".into(),
            })
            .await
            .expect("virtual account");
        admin
            .add_licenses(pb::AddLicensesRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                tag: "PAR-TPS".into(),
                quantity: 1,
                term_end: 0,
                plr_capable: false,
            })
            .await
            .expect("licences");
        let token = admin
            .create_token(pb::CreateTokenRequest {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
                validity_days: 30,
                max_uses: 1,
                export_controlled: false,
                description: "radius-server test".into(),
            })
            .await
            .expect("token")
            .into_inner()
            .secret;
        let config_path = dir.path().join("entitled.toml");
        std::fs::write(
            &config_path,
            format!(
                "data_dir = {:?}\nauthority_public_key = {:?}\nsnapshot_interval_secs = 1\n\
                 [udi]\nproduct_id = \"CPAR\"\nserial = \"RADIUS-TEST-1\"\n\
                 [agent]\nselection = {{ \"PAR-TPS\" = 1 }}\n",
                dir.path().join("entitled"),
                DataDir::new(&data).public_key(),
            ),
        )
        .expect("written");
        let config = RawConfig::read(&config_path)
            .and_then(RawConfig::validate)
            .expect("a valid sidecar configuration");
        Authority {
            dir,
            url,
            admin,
            token,
            config,
        }
    }

    impl Authority {
        /// Serves the sidecar's local API on its socket and registers it, as `entitle`
        /// would; answers the socket's address.
        async fn register(&self, sidecar: &Sidecar) -> String {
            let api = sidecar.bind_local_api().await.expect("binds");
            let sidecar_url = api.address();
            let serving = sidecar.clone();
            tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });
            let channel = entitle_proto::local::LocalEndpoint::new(&sidecar_url, None)
                .expect("an address")
                .connect()
                .await
                .expect("connects");
            let mut cli = SidecarClient::new(channel);
            cli.set_call_home(pb::SetCallHomeCommand {
                url: self.url.clone(),
            })
            .await
            .expect("call home set");
            cli.register(pb::RegisterCommand {
                id_token: self.token.clone(),
            })
            .await
            .expect("registered");
            sidecar_url
        }

        /// The ledger's admitted PAR-TPS.
        async fn ledger(&mut self) -> u64 {
            let usage = self
                .admin
                .get_usage(pb::GetUsageRequest {
                    smart_account: "Acme".into(),
                    virtual_account: "Radius".into(),
                    ..Default::default()
                })
                .await
                .expect("usage")
                .into_inner();
            usage
                .totals
                .iter()
                .filter(|t| t.tag == PAR_TPS)
                .map(|t| t.admitted)
                .sum()
        }
    }

    fn limit(licence: &Licence) -> Option<u64> {
        licence
            .gate
            .limits()
            .limit(licence.entitlement)
            .per_second()
    }

    /// Auth and accounting traffic well below the licence, and a Status-Server; answers
    /// the transactions radclient got answered (every one of them, at this rate).
    async fn traffic(server: &Running, dir: &Path) -> u64 {
        let file = dir.join("requests");
        std::fs::write(&file, requests(8)).expect("written");
        let out = radclient(
            server.addr,
            &[
                "-s",
                "-r",
                "1",
                "-t",
                "2",
                "-f",
                file.to_str().expect("utf-8"),
            ],
            "auth",
            "",
        )
        .await;
        let auth = out.summary("Accepted") + out.summary("Rejected");
        let mut acct = 0;
        for status in ["Start", "Stop"] {
            let out = radclient(
                server.addr,
                ONCE,
                "acct",
                &format!("User-Name = alice, Acct-Status-Type = {status}, Acct-Session-Id = \"e\""),
            )
            .await;
            acct += u64::from(out.received("Accounting-Response"));
        }
        let out = radclient(server.addr, ONCE, "status", "Message-Authenticator = 0x00").await;
        assert!(out.received("Access-Accept"), "{}", out.stdout);
        let t = server
            .until("every reply sent", |t| t.answered == auth + acct + 1)
            .await;
        assert_eq!((auth, acct), (8, 2));
        assert_eq!(t.admitted, auth + acct, "{t:?}");
        auth + acct
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_the_ledger_matches_what_was_answered() {
        let mut authority = authority().await;
        let licensed = Licensed::embedded(authority.config.clone(), PAR_TPS)
            .await
            .expect("the agent starts");
        let Mode::Embedded(sidecar) = &licensed.mode else {
            panic!("embedded")
        };
        authority.register(sidecar).await;
        assert_eq!(limit(&licensed.licence), Some(100), "1 PAR-TPS is 100 TPS");

        let server = start(
            &clients(),
            Some(licensed.licence.clone()),
            OverLimit::Drop,
            2,
        );
        let answered = traffic(&server, authority.dir.path()).await;

        // Deliver: gate -> spool -> authority; the ledger counts exactly what was answered.
        licensed
            .flush(Duration::from_secs(30))
            .await
            .expect("the usage reaches the authority");
        assert_eq!(
            authority.ledger().await,
            answered,
            "the ledger's admitted is what radclient got answered (Status-Server not counted)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attached_the_ledger_matches_what_was_answered() {
        let mut authority = authority().await;
        let sidecar = Sidecar::start(authority.config.clone(), None)
            .await
            .expect("entitled starts");
        let sidecar_url = authority.register(&sidecar).await;
        let options = AttachOptions {
            snapshot_interval: Duration::from_millis(200),
            ..AttachOptions::default()
        };
        let licensed = Licensed::attached(&sidecar_url, PAR_TPS, options).expect("attaches");
        for _ in 0..1000 {
            if limit(&licensed.licence) == Some(100) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            limit(&licensed.licence),
            Some(100),
            "entitled sent the licensed limit"
        );

        let server = start(
            &clients(),
            Some(licensed.licence.clone()),
            OverLimit::Drop,
            2,
        );
        let answered = traffic(&server, authority.dir.path()).await;

        // Deliver: gate -> entitled's spool -> authority.
        licensed
            .flush(Duration::from_secs(30))
            .await
            .expect("entitled took every snapshot");
        assert_eq!(sidecar.flush().await.expect("delivered"), 0);
        assert_eq!(authority.ledger().await, answered);
    }
}
