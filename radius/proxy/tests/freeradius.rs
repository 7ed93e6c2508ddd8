//! The proxy between real peers: `radclient` and `pyrad` in front, a real FreeRADIUS 3.2
//! behind, over loopback sockets.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod peers;

use std::time::Duration;

use common::*;
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
    let _ = Duration::ZERO;
}
