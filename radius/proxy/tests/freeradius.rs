//! The proxy between real peers: `radclient` and `pyrad` in front, a real FreeRADIUS 3.2
//! behind, over loopback sockets.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;
use entitle_radius::attribute::REPLY_MESSAGE;
use entitle_radius::{Code, Packet, Policy};

use common::*;
use entitle_radius_peers as peers;
use peers::{FreeRadius, User, radclient, radclient_summary};

const ALICE: User<'static> = User {
    name: "alice",
    password: "wonderland",
    reply_message: "Hello, alice",
};

fn stdout(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn radclient_through_the_proxy_to_freeradius() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    let key = offline_key(dir.path());
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "",
        "",
        &embedded_licence(dir.path(), &key, None, 1),
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];

    // Accepted, with FreeRADIUS's Reply-Message relayed.
    let out = tokio::task::spawn_blocking(move || {
        radclient(
            &["-t", "3", "-r", "1"],
            at,
            "auth",
            CLIENT_SECRET,
            "User-Name = alice\nUser-Password = wonderland\nMessage-Authenticator = 0x00\n",
        )
    })
    .await
    .unwrap();
    let text = stdout(&out);
    assert!(text.contains("Received Access-Accept"), "{text}");
    assert!(text.contains("Hello, alice"), "{text}");
    assert_eq!(radclient_summary(&out), (1, 0, 0), "{text}");

    // A wrong password: FreeRADIUS's Access-Reject comes back.
    let out = tokio::task::spawn_blocking(move || {
        radclient(
            &["-t", "3", "-r", "1"],
            at,
            "auth",
            CLIENT_SECRET,
            "User-Name = alice\nUser-Password = looking-glass\n",
        )
    })
    .await
    .unwrap();
    assert!(
        stdout(&out).contains("Received Access-Reject"),
        "{}",
        stdout(&out)
    );

    // Accounting is answered.
    let out = tokio::task::spawn_blocking(move || {
        radclient(
            &["-t", "3", "-r", "1"],
            at,
            "acct",
            CLIENT_SECRET,
            "User-Name = alice\nAcct-Status-Type = Start\nAcct-Session-Id = \"s1\"\n",
        )
    })
    .await
    .unwrap();
    assert!(
        stdout(&out).contains("Received Accounting-Response"),
        "{}",
        stdout(&out)
    );

    // Status-Server: the proxy answers for itself, uncounted.
    let out = tokio::task::spawn_blocking(move || {
        radclient(
            &["-t", "3", "-r", "1"],
            at,
            "status",
            CLIENT_SECRET,
            "Message-Authenticator = 0x00\n",
        )
    })
    .await
    .unwrap();
    assert!(
        stdout(&out).contains("Received Access-Accept"),
        "{}",
        stdout(&out)
    );

    let metrics = scrape(proxy.metrics_listen().unwrap());
    assert_eq!(counter(&metrics, "admitted"), 3, "{metrics}");
    assert_eq!(counter(&metrics, "reply_relayed"), 3, "{metrics}");
    assert_eq!(counter(&metrics, "status_server"), 1, "{metrics}");
    assert!(metrics.contains("entitle_radius_proxy_upstream_up{upstream=\"freeradius\"} 1"));
    assert!(
        metrics.contains("entitle_limit_tps"),
        "the agent's metrics follow: {metrics}"
    );
    proxy.stop().await;
}

const PYRAD_CLIENT: &str = r#"
import sys
import pyrad.packet
from pyrad.client import Client
from pyrad.dictionary import Dictionary

host, port, secret, dictionary, password = sys.argv[1:6]
client = Client(server=host, authport=int(port), secret=secret.encode(),
                dict=Dictionary(dictionary), retries=2, timeout=3, enforce_ma=True)
request = client.CreateAuthPacket(code=pyrad.packet.AccessRequest, User_Name="alice")
request["User-Password"] = request.PwCrypt(password)
request.add_message_authenticator()
reply = client.SendPacket(request)
names = {pyrad.packet.AccessAccept: "Access-Accept", pyrad.packet.AccessReject: "Access-Reject"}
print(names.get(reply.code, reply.code), reply.get("Reply-Message", [""])[0])
"#;

const PYRAD_DICTIONARY: &str = "ATTRIBUTE User-Name 1 string\n\
    ATTRIBUTE User-Password 2 string\n\
    ATTRIBUTE Reply-Message 18 string\n\
    ATTRIBUTE Proxy-State 33 octets\n\
    ATTRIBUTE Message-Authenticator 80 octets\n";

/// pyrad, an independent client, sending Message-Authenticator and requiring one back, to a
/// client that must send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyrad_with_message_authenticator() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    let key = offline_key(dir.path());
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "require_message_authenticator = true\n",
        "",
        &embedded_licence(dir.path(), &key, None, 1),
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];
    std::fs::write(dir.path().join("dictionary"), PYRAD_DICTIONARY).unwrap();
    let path = dir.path().to_owned();
    let run = move |password: &'static str| {
        let path = path.clone();
        move || {
            let dictionary = path.join("dictionary").display().to_string();
            let port = at.port().to_string();
            peers::python(
                &path,
                "client.py",
                PYRAD_CLIENT,
                &["127.0.0.1", &port, CLIENT_SECRET, &dictionary, password],
            )
        }
    };
    let out = tokio::task::spawn_blocking(run("wonderland"))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Access-Accept Hello, alice"
    );
    let out = tokio::task::spawn_blocking(run("looking-glass"))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("Access-Reject"),
        "{}",
        stdout(&out)
    );
    let metrics = proxy.metrics_text();
    assert_eq!(counter(&metrics, "admitted"), 2, "{metrics}");
    assert_eq!(counter(&metrics, "missing_message_authenticator"), 0);
    proxy.stop().await;
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A licence of 100 TPS registered with a real authority; about 200 TPS offered for 3 s.
/// The excess is dropped, the rest answered by FreeRADIUS, and the authority's ledger
/// admits exactly as many as the clients got answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_the_licence_the_excess_is_dropped_and_the_ledger_matches_the_answers() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    let mut authority = TestAuthority::start().await;
    let token = authority.pool(1).await;
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "",
        "",
        &embedded_licence(dir.path(), &authority.public_key(), Some(&authority.url), 1),
    );
    let proxy = start_proxy(&toml).await;
    // The operator's CLI reaches the embedded agent on its socket.
    let address = proxy.sidecar_address().unwrap();
    assert!(address.starts_with("unix:"), "{address}");
    let channel = entitle_proto::local::LocalEndpoint::new(address, None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut cli = SidecarClient::new(channel);
    cli.register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap();
    let text = || proxy.metrics_text();
    until(
        "AUTHORIZED at 100 TPS",
        Duration::from_secs(20),
        async || {
            let t = text();
            t.contains("entitle_license_state{machine=\"authorization\",state=\"AUTHORIZED\"} 1")
                && t.contains("entitle_limit_tps{tag=\"PAR-TPS\"} 100")
        },
    )
    .await;

    // Four clients, 50 TPS each, 150 requests each: 600 in 3 s.
    const CLIENTS: usize = 4;
    const EACH: usize = 150;
    let at = proxy.listen()[0];
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let answered = Arc::clone(&answered);
            std::thread::spawn(move || {
                let client = UdpClient::new(at);
                let mut sent = Vec::new();
                for i in 0..EACH {
                    let due = started + Duration::from_millis((i as u64) * 20 + (c as u64) * 5);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let mut authenticator = [0u8; 16];
                    authenticator[0] = c as u8;
                    authenticator[1] = i as u8;
                    let mut request = peers::access_request(
                        i as u8,
                        authenticator,
                        "alice",
                        "wonderland",
                        CLIENT_SECRET.as_bytes(),
                    );
                    client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
                    sent.push(request);
                    // Take what has come meanwhile.
                    while let Some(bytes) = client.recv(Duration::from_millis(1)) {
                        count_answer(&bytes, &sent, &answered);
                    }
                }
                while let Some(bytes) = client.recv(Duration::from_secs(2)) {
                    count_answer(&bytes, &sent, &answered);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let answered = answered.load(Ordering::SeqCst);
    let offered = (CLIENTS * EACH) as u64;
    let metrics = proxy.metrics_text();
    let admitted = counter(&metrics, "admitted");
    let dropped = counter(&metrics, "over_licence_dropped");
    println!("offered {offered}, admitted {admitted}, dropped {dropped}, answered {answered}");
    assert_eq!(admitted + dropped, offered, "{metrics}");
    assert!(
        dropped >= offered / 5,
        "clearly more than the licence is offered: {metrics}"
    );
    assert!(
        admitted >= 200,
        "about 100 TPS for 3 s is admitted: {metrics}"
    );
    assert_eq!(
        answered, admitted,
        "every admitted request is answered: {metrics}"
    );
    assert_eq!(counter(&metrics, "reply_relayed"), admitted);

    proxy.flush_usage(Duration::from_secs(20)).await.unwrap();
    let (ledger_admitted, ledger_rejected) = authority.ledger().await;
    assert_eq!(
        ledger_admitted, answered,
        "the ledger admits what was answered"
    );
    assert_eq!(ledger_rejected, dropped, "and rejects what was dropped");
    let status = cli
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.registration.is_some());
    proxy.stop().await;
}

fn count_answer(bytes: &[u8], sent: &[Packet], answered: &AtomicU64) {
    let reply = Packet::decode(bytes).unwrap();
    let request = sent
        .iter()
        .rev()
        .find(|r| r.identifier == reply.identifier)
        .expect("an answer to a request sent");
    reply
        .verify_response(
            CLIENT_SECRET.as_bytes(),
            request,
            Policy::RequireMessageAuthenticator,
        )
        .unwrap();
    assert_eq!(reply.code, Code::AccessAccept);
    answered.fetch_add(1, Ordering::SeqCst);
}

/// The same datagram twice: one transaction, the same answer twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retransmission_is_one_transaction_with_the_same_answer() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    let key = offline_key(dir.path());
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "",
        "",
        &embedded_licence(dir.path(), &key, None, 1),
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];
    let (first, second) = tokio::task::spawn_blocking(move || {
        let client = UdpClient::new(at);
        let mut request =
            peers::access_request(9, [7; 16], "alice", "wonderland", CLIENT_SECRET.as_bytes());
        let bytes = request.encode_request(CLIENT_SECRET.as_bytes()).unwrap();
        client.send(&bytes);
        let first = client.recv(Duration::from_secs(5)).expect("an answer");
        client.send(&bytes);
        let second = client
            .recv(Duration::from_secs(5))
            .expect("the answer again");
        let reply = Packet::decode(&first).unwrap();
        reply
            .verify_response(CLIENT_SECRET.as_bytes(), &request, Policy::default())
            .unwrap();
        assert_eq!(reply.code, Code::AccessAccept);
        assert_eq!(
            reply.get(REPLY_MESSAGE).map(|a| a.value.clone()),
            Some(b"Hello, alice".to_vec())
        );
        // Nothing more comes.
        assert_eq!(client.recv(Duration::from_millis(300)), None);
        (first, second)
    })
    .await
    .unwrap();
    assert_eq!(first, second);
    let metrics = proxy.metrics_text();
    assert_eq!(counter(&metrics, "admitted"), 1, "{metrics}");
    assert_eq!(
        counter(&metrics, "duplicate_answered_from_cache"),
        1,
        "{metrics}"
    );
    proxy.stop().await;
}

/// Two upstreams, the first a port where nothing answers: requests are still answered,
/// each once, and the first is marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_upstream_fails_over_and_nothing_is_answered_twice() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    // Bound, so nothing else takes the port, and never read.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_at = dead.local_addr().unwrap();
    let key = offline_key(dir.path());
    let toml = proxy_toml(
        &[
            ("dead", dead_at, dead_at),
            ("freeradius", server.auth, server.acct),
        ],
        "",
        "",
        &embedded_licence(dir.path(), &key, None, 1),
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];
    tokio::task::spawn_blocking(move || {
        let client = UdpClient::new(at);
        for id in 0..4u8 {
            let mut request = peers::access_request(
                id,
                [id + 1; 16],
                "alice",
                "wonderland",
                CLIENT_SECRET.as_bytes(),
            );
            client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
            let bytes = client
                .recv(Duration::from_secs(5))
                .expect("answered after the failover");
            let reply = Packet::decode(&bytes).unwrap();
            reply
                .verify_response(CLIENT_SECRET.as_bytes(), &request, Policy::default())
                .unwrap();
            assert_eq!(reply.code, Code::AccessAccept);
            // Sent twice from one kept request: the second time with one Proxy-State of
            // ours too, taken off again.
            assert_eq!(reply.proxy_states().count(), 0, "{reply:?}");
        }
        // No second answer to any of them.
        assert_eq!(client.recv(Duration::from_millis(1500)), None);
    })
    .await
    .unwrap();
    let metrics = scrape(proxy.metrics_listen().unwrap());
    assert_eq!(counter(&metrics, "admitted"), 4, "{metrics}");
    assert_eq!(counter(&metrics, "reply_relayed"), 4, "{metrics}");
    assert_eq!(counter(&metrics, "upstream_failed"), 0, "{metrics}");
    assert!(
        metrics.contains("entitle_radius_proxy_upstream_up{upstream=\"dead\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("entitle_radius_proxy_upstream_up{upstream=\"freeradius\"} 1"),
        "{metrics}"
    );
    // Marked down after 2 timeouts: the later requests went straight to FreeRADIUS.
    assert!(
        metrics.contains("entitle_radius_proxy_upstream_timeouts_total{upstream=\"dead\"} 2"),
        "{metrics}"
    );
    drop(dead);
    proxy.stop().await;
}

/// With `action = "reject"`, beyond the licence is answered Access-Reject with the
/// configured Reply-Message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_the_licence_can_be_rejected_with_a_reply_message() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(UPSTREAM_SECRET, &[ALICE]);
    let key = offline_key(dir.path());
    // Evaluation at 100 TPS, burst 10: 40 at once, most beyond.
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "",
        "[over_licence]\naction = \"reject\"\nreply_message = \"Licensed capacity exceeded\"\n",
        &embedded_licence(dir.path(), &key, None, 1),
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];
    let (accepts, rejects) = tokio::task::spawn_blocking(move || {
        let client = UdpClient::new(at);
        let mut sent = Vec::new();
        for id in 0..40u8 {
            let mut request = peers::access_request(
                id,
                [id; 16],
                "alice",
                "wonderland",
                CLIENT_SECRET.as_bytes(),
            );
            client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
            sent.push(request);
        }
        let (mut accepts, mut rejects) = (0, 0);
        while let Some(bytes) = client.recv(Duration::from_secs(2)) {
            let reply = Packet::decode(&bytes).unwrap();
            let request = &sent[usize::from(reply.identifier)];
            reply
                .verify_response(CLIENT_SECRET.as_bytes(), request, Policy::default())
                .unwrap();
            match reply.code {
                Code::AccessAccept => accepts += 1,
                Code::AccessReject => {
                    assert_eq!(
                        reply.get(REPLY_MESSAGE).map(|a| a.value.clone()),
                        Some(b"Licensed capacity exceeded".to_vec())
                    );
                    rejects += 1;
                }
                other => panic!("{other}"),
            }
        }
        (accepts, rejects)
    })
    .await
    .unwrap();
    assert_eq!(accepts + rejects, 40, "every request answered once");
    assert!(
        rejects > 0 && accepts > 0,
        "{accepts} accepts, {rejects} rejects"
    );
    let metrics = proxy.metrics_text();
    assert_eq!(counter(&metrics, "over_licence_rejected"), rejects);
    assert_eq!(counter(&metrics, "admitted"), accepts);
    proxy.stop().await;
}
