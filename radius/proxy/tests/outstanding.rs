//! Many requests outstanding at once: an upstream that holds every answer back until it has
//! them all makes the proxy open more sockets to it (256 Identifiers each), and every
//! answer, on whichever socket, comes back to its client once.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use entitle_radius::{Code, Packet, Policy};

use common::*;
use entitle_radius_peers as peers;

/// Client sockets, and requests from each (Identifiers 0..PER_CLIENT).
const CLIENTS: usize = 3;
const PER_CLIENT: usize = 200;
const TOTAL: usize = CLIENTS * PER_CLIENT;

/// Receives `TOTAL` requests (bounded in time), then answers them all, newest first.
/// Returns how many came and the source ports the proxy used.
fn held_back_upstream(socket: UdpSocket) -> (usize, BTreeSet<u16>) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Read first, decode after: a slow reader overflows the socket's buffer.
    let mut raw: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
    let mut buffer = [0u8; 4096];
    while raw.len() < TOTAL && Instant::now() < deadline {
        if let Ok((n, from)) = socket.recv_from(&mut buffer) {
            raw.push((buffer[..n].to_vec(), from));
        }
    }
    let held: Vec<(Packet, SocketAddr)> = raw
        .iter()
        .map(|(bytes, from)| {
            let request = Packet::decode(bytes).unwrap();
            request
                .verify_request(UPSTREAM_SECRET.as_bytes(), Policy::default())
                .unwrap();
            (request, *from)
        })
        .collect();
    let ports = held.iter().map(|(_, from)| from.port()).collect();
    for (request, from) in held.iter().rev() {
        let reply = request
            .reply(Code::AccessAccept)
            .encode_response(UPSTREAM_SECRET.as_bytes(), request)
            .unwrap();
        socket.send_to(&reply, from).unwrap();
    }
    (held.len(), ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_one_sockets_identifiers_all_come_back_once() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    // A receive buffer for all the requests at once (the default holds about 200).
    let upstream = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    upstream.set_recv_buffer_size(4 << 20).unwrap();
    upstream
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let upstream: UdpSocket = upstream.into();
    let at_upstream = upstream.local_addr().unwrap();
    let key = offline_key(dir.path());
    // 100 PAR-TPS licences: 10,000 TPS, a burst of 1,000, more than the requests sent.
    let mut toml = proxy_toml(
        &[("held", at_upstream, at_upstream)],
        "",
        "",
        &embedded_licence(dir.path(), &key, None, 100),
    );
    // Long enough that nothing times out while the upstream holds the answers.
    toml = toml.replace("timeout_ms = 500", "timeout_ms = 15000");
    let proxy = start_proxy(&toml).await;
    // The gate starts from a fail-closed placeholder and a swap never hands out tokens, so
    // the licence's bucket fills from empty at 10 tokens a millisecond: 600 sent at once
    // right after the start would find some of them refused. 200 ms fills it to its burst;
    // a slow machine only fills it more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let at = proxy.listen()[0];
    let upstream = std::thread::spawn(move || held_back_upstream(upstream));

    let clients = tokio::task::spawn_blocking(move || {
        let clients: Vec<UdpClient> = (0..CLIENTS).map(|_| UdpClient::new(at)).collect();
        let mut sent: Vec<HashMap<u8, Packet>> = vec![HashMap::new(); CLIENTS];
        for (c, client) in clients.iter().enumerate() {
            for id in 0..PER_CLIENT as u8 {
                let mut request = peers::access_request(
                    id,
                    [id ^ (c as u8 * 85); 16],
                    "alice",
                    "wonderland",
                    CLIENT_SECRET.as_bytes(),
                );
                client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
                sent[c].insert(id, request);
                // In bursts of 50, so no socket's buffer on the way overflows.
                if id % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        for (c, client) in clients.iter().enumerate() {
            let mut answered = BTreeSet::new();
            while answered.len() < PER_CLIENT {
                let bytes = client.recv(Duration::from_secs(20)).unwrap_or_else(|| {
                    panic!("client {c}: {} answers of {PER_CLIENT}", answered.len())
                });
                let reply = Packet::decode(&bytes).unwrap();
                let request = &sent[c][&reply.identifier];
                reply
                    .verify_response(CLIENT_SECRET.as_bytes(), request, Policy::default())
                    .unwrap();
                assert_eq!(reply.code, Code::AccessAccept);
                assert!(answered.insert(reply.identifier), "answered twice");
            }
        }
        // Nothing more for anyone.
        for client in &clients {
            assert_eq!(client.recv(Duration::from_millis(300)), None);
        }
    });
    let (forwarded, ports) = tokio::task::spawn_blocking(move || upstream.join().unwrap())
        .await
        .unwrap();
    let metrics = scrape(proxy.metrics_listen().unwrap());
    assert_eq!(forwarded, TOTAL, "every request forwarded: {metrics}");
    clients.await.unwrap();
    assert!(
        ports.len() >= TOTAL.div_ceil(256),
        "{TOTAL} outstanding need at least {} sockets to the upstream: {ports:?}",
        TOTAL.div_ceil(256)
    );
    let metrics = scrape(proxy.metrics_listen().unwrap());
    assert_eq!(counter(&metrics, "admitted"), TOTAL as u64, "{metrics}");
    assert_eq!(
        counter(&metrics, "reply_relayed"),
        TOTAL as u64,
        "{metrics}"
    );
    proxy.stop().await;
}
