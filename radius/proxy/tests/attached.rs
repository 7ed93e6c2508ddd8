//! The proxy attached to a running `entitled` (the sidecar's code, in-process, serving on
//! 127.0.0.1:0): its gate takes the sidecar's limits, and its usage lands in the sidecar.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;
use entitle_radius::{Code, Packet, Policy};
use entitle_radius_peers as peers;
use entitle_sidecar::{RawConfig, Sidecar};
use peers::{FreeRadius, User};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attached_to_entitled_the_gate_follows_its_limits_and_reports_to_it() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let server = FreeRadius::start(
        UPSTREAM_SECRET,
        &[User {
            name: "alice",
            password: "wonderland",
            reply_message: "hi",
        }],
    );
    // entitled, unregistered: evaluation at 1 PAR-TPS = 100 TPS (burst 10).
    let key = offline_key(dir.path());
    let sidecar_toml = format!(
        "data_dir = {:?}\nauthority_public_key = {key:?}\n[udi]\nproduct_id = \"CPAR\"\n\
         serial = \"ATTACHED-1\"\n[agent]\nselection = {{ \"PAR-TPS\" = 1 }}\n",
        dir.path().join("entitled")
    );
    let sidecar_config: RawConfig = toml::from_str(&sidecar_toml).unwrap();
    let sidecar = Sidecar::start(sidecar_config.validate().unwrap(), None)
        .await
        .unwrap();
    // Its local API on its socket, where the proxy attaches (no credential needed there).
    let api = sidecar.bind_local_api().await.unwrap();
    let url = api.address();
    let serving = sidecar.clone();
    tokio::spawn(async move { serving.serve_local(api, std::future::pending()).await });

    let licence = format!(
        "[licence]\nmode = \"attached\"\nsidecar_url = {url:?}\nsnapshot_interval_ms = 200\n"
    );
    let toml = proxy_toml(
        &[("freeradius", server.auth, server.acct)],
        "",
        "",
        &licence,
    );
    let proxy = start_proxy(&toml).await;
    let at = proxy.listen()[0];

    // Eight at 50 TPS: the placeholder of 1 TPS would admit one; the sidecar's 100 TPS
    // admits all. (A raised limit hands out no burst, so they are paced.)
    let answered = tokio::task::spawn_blocking(move || {
        let client = UdpClient::new(at);
        let mut sent = Vec::new();
        for id in 0..8u8 {
            let mut request = peers::access_request(
                id,
                [id; 16],
                "alice",
                "wonderland",
                CLIENT_SECRET.as_bytes(),
            );
            client.send(&request.encode_request(CLIENT_SECRET.as_bytes()).unwrap());
            sent.push(request);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut answered = 0;
        while let Some(bytes) = client.recv(Duration::from_secs(3)) {
            let reply = Packet::decode(&bytes).unwrap();
            reply
                .verify_response(
                    CLIENT_SECRET.as_bytes(),
                    &sent[usize::from(reply.identifier)],
                    Policy::default(),
                )
                .unwrap();
            assert_eq!(reply.code, Code::AccessAccept);
            answered += 1;
        }
        answered
    })
    .await
    .unwrap();
    assert_eq!(answered, 8, "{}", proxy.metrics_text());

    proxy.flush_usage(Duration::from_secs(20)).await.unwrap();
    let mut cli = SidecarClient::connect(url).await.unwrap();
    let status = cli
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.attached_engines, 1);
    let par_tps = status
        .entitlements
        .iter()
        .find(|e| e.tag == "PAR-TPS")
        .expect("PAR-TPS");
    assert_eq!(par_tps.admitted, 8, "{status:?}");
    proxy.stop().await;
}
