//! More of the sidecar `entitled` as a user meets it: embedded in a packet server's own
//! process, watched through Prometheus, gRPC health and reflection, spooling usage while the
//! authority is away (in order, bounded, never dropping), driven by the operator CLI, and
//! restarted after a SIGKILL with its state intact; a bad configuration stops it with 64.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestAuthority;
use entitle_proto::local::LocalEndpoint;
use entitle_proto::pb;
use entitle_sidecar::{RawConfig, Sidecar};
use harness::{
    Authority, Entitled, attached_gate, authorization, gate_rate, packet_gate, rate, registration,
    sidecar_client, traffic, traffic_for, wait_gate,
};

const ENTITLE: &str = env!("CARGO_BIN_EXE_e2e-entitle");
const ENTITLED: &str = env!("CARGO_BIN_EXE_e2e-entitled");

const SELECT_300: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n";

fn spool(status: &pb::LicenseStatus) -> &pb::SpoolInfo {
    status.spool.as_ref().unwrap()
}

/// The PAR-TPS admitted count the sidecar has spooled since it started.
fn spooled_admitted(status: &pb::LicenseStatus) -> u64 {
    status
        .entitlements
        .iter()
        .find(|e| e.tag == "PAR-TPS")
        .unwrap()
        .admitted
}

/// The authority's ledger line for `tag` of the one instance with serial `serial`.
async fn ledger(authority: &Authority, serial: &str, tag: &str) -> pb::UsageTotal {
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
    let instance = instances
        .iter()
        .find(|i| i.udi.as_ref().is_some_and(|u| u.serial == serial))
        .unwrap_or_else(|| panic!("no instance of {serial}: {instances:#?}"));
    let totals = admin
        .get_usage(pb::GetUsageRequest {
            instance_id: instance.instance_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    totals
        .into_iter()
        .find(|t| t.tag == tag)
        .unwrap_or_else(|| panic!("no {tag} usage of {serial}"))
}

/// The authority's audit entries that flag a report out of sequence.
async fn sequence_complaints(authority: &Authority) -> Vec<String> {
    authority
        .admin()
        .await
        .list_audit(pb::ListAuditRequest {
            after_id: 0,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.action == "usage.sequence")
        .map(|e| e.detail)
        .collect()
}

// ----- 1. Embedded -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_sidecar_licenses_the_hosts_gate_live_and_delivers_its_usage_exactly() {
    let mut authority = TestAuthority::start().await;
    let token = authority.acme(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entitled.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\nauthority_public_key = {key:?}\n\
             callhome_url = {url:?}\nsnapshot_interval_secs = 1\n\n\
             [udi]\nproduct_id = \"CPAR\"\nserial = \"EMB1\"\n\n\
             [agent]\nselection = {{ \"PAR-TPS\" = 1 }}\n",
            data = dir.path().join("data"),
            key = authority.dir.path().join("authority.pub"),
            url = authority.url,
        ),
    )
    .unwrap();
    let config = RawConfig::read(&path).unwrap().validate().unwrap();

    // The packet server's own gate, handed to the sidecar running as tasks beside it.
    let gate = packet_gate();
    let sidecar = Sidecar::start(config, Some(Arc::clone(&gate)))
        .await
        .unwrap();
    assert!(
        Arc::ptr_eq(sidecar.gate(), &gate),
        "it enforces on our gate"
    );
    assert_eq!(
        gate_rate(&gate),
        Some(100),
        "evaluation of the selection, at once"
    );

    // The host serves the local API on the configuration's socket, as `entitled` does.
    let api = sidecar.bind_local_api().await.unwrap();
    let url = api.address();
    assert_eq!(
        url,
        format!("unix:{}", dir.path().join("data/entitled.sock").display())
    );
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = sidecar.clone();
    let server = tokio::spawn(async move {
        serving
            .serve_local(api, async {
                let _ = stopped.await;
            })
            .await
    });
    let mut client = sidecar_client(&url, None).await;
    let reply = client
        .register(pb::RegisterCommand { id_token: token })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.message.contains("smart account Acme"),
        "{}",
        reply.message
    );
    assert_eq!(gate_rate(&gate), Some(100));
    // More licences: applied to our gate by the time the command answered, live.
    let reply = client
        .set_selection(pb::SetSelectionCommand {
            counts: vec![pb::LicenseCount {
                tag: "PAR-ADD-TPS".into(),
                count: 2,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.message.ends_with("Authorized at once: AUTHORIZED."),
        "{}",
        reply.message
    );
    assert_eq!(gate_rate(&gate), Some(300));
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registration(&status), "REGISTERED");
    assert_eq!(authorization(&status), "AUTHORIZED");
    assert_eq!(rate(&status, "PAR-TPS"), Some(300));
    assert_eq!(
        sidecar.status().registration.smart_account.as_deref(),
        Some("Acme")
    );

    // Traffic through a worker of our gate, well over the limit; the snapshot task runs
    // meanwhile (every second), and a flush takes the rest and delivers everything.
    let seen = traffic_for(&gate, Duration::from_millis(1500)).await;
    assert!(seen.admitted > 300, "{seen:?}");
    assert!(seen.rejected > 0, "{seen:?}");
    assert_eq!(sidecar.flush().await.unwrap(), 0, "nothing left waiting");

    let totals = authority
        .admin
        .get_usage(pb::GetUsageRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals;
    let par_tps = totals.iter().find(|t| t.tag == "PAR-TPS").unwrap();
    assert_eq!(
        (par_tps.admitted, par_tps.rejected),
        (seen.admitted, seen.rejected),
        "the ledger holds exactly what the gate decided"
    );
    assert_eq!(par_tps.reports, par_tps.last_sequence);

    let _ = stop_serving.send(());
    server.await.unwrap().unwrap();
    assert!(
        !dir.path().join("data/entitled.sock").exists(),
        "a clean stop removes the socket"
    );
}

// ----- 2. Metrics, health, reflection -----

/// `GET path` over a plain HTTP/1.1 connection: the head and the body of a 200 answer.
fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `series` (name and labels as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_reflection_show_a_registered_sidecar_at_work() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "M1",
        &format!("metrics_listen = \"127.0.0.1:0\"\n{SELECT_300}"),
    );
    let metrics = sidecar.metrics.clone().expect("the metrics address");

    let (_, before) = http_get(&metrics, "/metrics");
    assert_eq!(
        sample(
            &before,
            "entitle_license_state{machine=\"registration\",state=\"UNREGISTERED\"}"
        ),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "entitle_last_callhome_success_timestamp_seconds"),
        Some(0.0)
    );

    sidecar.register(token).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let seen = traffic_for(&gate, Duration::from_millis(1000)).await;
    attachment.flush(Duration::from_secs(20)).await.unwrap();
    let status = sidecar
        .wait_for("the spool drains", Duration::from_secs(30), |s| {
            spool(s).depth == 0
        })
        .await;
    assert_eq!(attachment.admitted("PAR-TPS"), seen.admitted);

    let (head, text) = http_get(&metrics, "/metrics");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (series, expected) in [
        (
            "entitle_admitted_total{tag=\"PAR-TPS\"}",
            seen.admitted as f64,
        ),
        (
            "entitle_rejected_total{tag=\"PAR-TPS\"}",
            seen.rejected as f64,
        ),
        ("entitle_limit_tps{tag=\"PAR-TPS\"}", 300.0),
        (
            "entitle_license_state{machine=\"registration\",state=\"REGISTERED\"}",
            1.0,
        ),
        (
            "entitle_license_state{machine=\"authorization\",state=\"AUTHORIZED\"}",
            1.0,
        ),
        ("entitle_spool_depth", 0.0),
        ("entitle_spool_capacity", 100_000.0),
        (
            "entitle_usage_reports_delivered",
            spool(&status).delivered as f64,
        ),
        ("entitle_attached_engines", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(spool(&status).delivered > 0);
    // The limit is written as Prometheus writes a float.
    assert!(
        text.lines()
            .any(|l| l == "entitle_limit_tps{tag=\"PAR-TPS\"} 300.0"),
        "{text}"
    );
    // Only the current state of each machine is 1; the old one is gone.
    assert!(!text.contains("state=\"UNREGISTERED\""), "{text}");
    let last = sample(&text, "entitle_last_callhome_success_timestamp_seconds").unwrap();
    assert!(last > now - 120.0 && last <= now + 1.0, "{last} vs {now}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");

    // gRPC health names the Sidecar service as serving.
    let channel = LocalEndpoint::new(&sidecar.url, None)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "entitle.v1.Sidecar".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "entitle.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Reflection lists it, so grpcurl works without the proto files.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "entitle.v1.Sidecar".into(),
                )),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no list of services");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"entitle.v1.Sidecar"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptor for entitle.v1.Sidecar");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

// ----- 3. Spool while the authority is away -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_spools_while_the_authority_is_away_and_is_delivered_in_order_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SP1", SELECT_300);
    sidecar.register(token).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));
    sidecar
        .wait_for("reports flow", Duration::from_secs(10), |s| {
            spool(s).delivered > 0
        })
        .await;

    // The authority goes away; traffic goes on and its usage piles up in the spool.
    authority.kill();
    let away = Instant::now();
    let first = sidecar
        .wait_for("the spool grows", Duration::from_secs(10), |s| {
            spool(s).depth >= 2 && spool(s).last_failure.is_some()
        })
        .await;
    let failure = spool(&first).last_failure.clone().unwrap();
    assert!(failure.contains("cannot reach the authority"), "{failure}");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(away.elapsed())).await;
    let later = sidecar.status().await;
    assert!(
        spool(&later).depth > spool(&first).depth,
        "the spool keeps growing: {} then {}",
        spool(&first).depth,
        spool(&later).depth
    );
    assert_eq!(registration(&later), "REGISTERED");
    assert_eq!(rate(&later, "PAR-TPS"), Some(300), "the licence holds");

    // It comes back: the spool drains by itself, with the traffic still running (down to
    // the report being summed from the snapshots of this second).
    authority.restart();
    let drained = sidecar
        .wait_for("the spool drains", Duration::from_secs(60), |s| {
            spool(s).depth <= 1 && spool(s).last_failure.is_none()
        })
        .await;
    assert_eq!(spool(&drained).last_failure, None);
    stop.store(true, Ordering::Relaxed);
    let seen = driver.join().unwrap();
    attachment.flush(Duration::from_secs(30)).await.unwrap();
    let status = sidecar
        .wait_for("the last reports go", Duration::from_secs(60), |s| {
            spool(s).depth == 0
        })
        .await;

    assert_eq!(attachment.admitted("PAR-TPS"), seen.admitted);
    let line = ledger(&authority, "SP1", "PAR-TPS").await;
    assert_eq!(
        line.admitted, seen.admitted,
        "the ledger holds every admit once"
    );
    assert_eq!(line.rejected, seen.rejected);
    assert_eq!(
        line.reports, line.last_sequence,
        "reports 1..=n, each once, none missing"
    );
    assert_eq!(
        line.reports,
        spool(&status).delivered,
        "each spooled report was acknowledged once"
    );
    assert!(
        sequence_complaints(&authority).await.is_empty(),
        "every report arrived after the one before it"
    );
}

// ----- 4. The spool's bound -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pushes_back_to_the_engine_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "SP2",
        &format!("spool_capacity = 3\n{SELECT_300}"),
    );
    sidecar.register(token).await;
    let (gate, attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;
    let stop = Arc::new(AtomicBool::new(false));
    let driver = traffic(Arc::clone(&gate), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Away for a few seconds with snapshots every 50 ms: the spool fills to its bound and
    // stays there. Only the attached engine has traffic (the sidecar's own gate has none,
    // so it spools nothing), and an engine's snapshot is refused at capacity: the depth
    // never exceeds 3.
    authority.kill();
    let start = Instant::now();
    let mut full_since: Option<Instant> = None;
    // Bounded: the spool must fill within 20 s (3 snapshots' worth, even on a loaded
    // machine), then stay full for 1.5 s while we watch.
    loop {
        let depth = spool(&sidecar.status().await).depth;
        assert!(depth <= 3, "the spool holds at most its capacity: {depth}");
        match full_since {
            None if depth == 3 => full_since = Some(Instant::now()),
            None => assert!(
                start.elapsed() < Duration::from_secs(20),
                "the spool filled within 20 s (depth {depth})"
            ),
            Some(since) => {
                assert_eq!(depth, 3, "the full spool stays full");
                if since.elapsed() > Duration::from_millis(1500) {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The engine keeps what the sidecar could not take: it has taken snapshots whose
    // counts the sidecar never stored, and it was told why.
    let held = sidecar.status().await;
    assert!(
        attachment.admitted("PAR-TPS") > spooled_admitted(&held),
        "snapshots wait in the engine: taken {}, stored {}",
        attachment.admitted("PAR-TPS"),
        spooled_admitted(&held)
    );
    let why = attachment.last_error().unwrap_or_default();
    assert!(why.contains("spool is full"), "{why}");

    // Back: everything comes through, exactly.
    authority.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = driver.join().unwrap();
    attachment.flush(Duration::from_secs(60)).await.unwrap();
    let status = sidecar
        .wait_for("the spool drains", Duration::from_secs(60), |s| {
            spool(s).depth == 0
        })
        .await;
    assert_eq!(attachment.admitted("PAR-TPS"), seen.admitted);
    assert_eq!(spooled_admitted(&status), seen.admitted);
    let line = ledger(&authority, "SP2", "PAR-TPS").await;
    assert_eq!(
        (line.admitted, line.rejected),
        (seen.admitted, seen.rejected),
        "nothing dropped, nothing twice"
    );
    assert_eq!(line.reports, line.last_sequence);
    assert!(sequence_complaints(&authority).await.is_empty());
}

// ----- 5. The operator CLI against the real sidecar -----

/// Runs `entitle --sidecar <url> <args>`, with `script` on stdin when given.
fn entitle(url: &str, args: &[&str], script: Option<&str>) -> Output {
    let mut child = Command::new(ENTITLE)
        .env_remove("ENTITLE_SIDECAR")
        .arg("--sidecar")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(script) = script {
        input.write_all(script.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs one command that must succeed; answers its output.
fn ok(url: &str, args: &[&str]) -> String {
    let out = entitle(url, args, None);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "{args:?}");
    stdout(&out)
}

/// Runs one command the sidecar must refuse; answers its one sentence.
fn refused(url: &str, args: &[&str]) -> String {
    let out = entitle(url, args, None);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
    assert_eq!(stdout(&out), "", "{args:?}");
    let sentence = stderr(&out);
    assert_eq!(sentence.lines().count(), 1, "{args:?}: {sentence}");
    sentence
}

/// The PAR-TPS admitted counts in `show license usage` output, summed over its rows.
fn usage_admitted(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "PAR-TPS")?;
            words.get(at + 1)?.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_registers_and_inspects_a_real_sidecar_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "CLI1",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    let url = sidecar.url.clone();

    // Pointed at nothing first: the registration names the unreachable authority.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let nowhere = format!("http://{closed}");
    let set = ok(
        &url,
        &["callhome", "destination", "address", "http", &nowhere],
    );
    assert_eq!(set, format!("Call-home destination set to {nowhere}.\n"));
    let sentence = refused(&url, &["license", "smart", "register", &token]);
    assert!(
        sentence.starts_with(&format!("cannot reach the authority at {nowhere}")),
        "{sentence}"
    );

    let set = ok(
        &url,
        &["callhome", "destination", "address", "http", &authority.url],
    );
    assert_eq!(
        set,
        format!("Call-home destination set to {}.\n", authority.url)
    );

    // A bad token: one sentence, exit 1, still unregistered.
    let sentence = refused(
        &url,
        &["license", "smart", "register", "0123456789ab.wrong"],
    );
    assert!(sentence.contains("token"), "{sentence}");
    assert_eq!(registration(&sidecar.status().await), "UNREGISTERED");

    let said = ok(&url, &["license", "smart", "register", &token]);
    assert!(
        said.starts_with("Registered to smart account Acme"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");

    let text = ok(&url, &["show", "license", "status"]);
    for line in [
        "Smart Licensing is ENABLED\n",
        "  Status: REGISTERED\n",
        "  Smart Account: Acme\n",
        "  Virtual Account: Radius\n",
        &format!("Call Home: {}\n", authority.url),
        "UDI: PID:CPAR,SN:CLI1\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert!(text.contains("  Status: AUTHORIZED on "), "{text}");
    assert!(text.contains("  PAR-TPS  100 TPS burst "), "{text}");

    // Registering again is refused with the reason; so is a bad token; both leave the
    // registration as it was.
    let again = refused(&url, &["license", "smart", "register", &token]);
    assert_eq!(
        again,
        "the device is already registered: deregister first\n"
    );
    let again = refused(
        &url,
        &["license", "smart", "register", "0123456789ab.wrong"],
    );
    assert_eq!(
        again,
        "the device is already registered: deregister first\n"
    );
    let status = sidecar.status().await;
    assert_eq!(registration(&status), "REGISTERED");
    assert_eq!(authorization(&status), "AUTHORIZED");

    // Traffic through the sidecar's own gate (remote checks), spooled and delivered.
    let mut client = sidecar.client().await;
    let mut admitted = 0;
    for _ in 0..25 {
        // Paced under the 100 TPS limit, so each is admitted.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answer = client
            .check(pb::CheckRequest {
                tag: "PAR-TPS".into(),
                count: 1,
            })
            .await
            .unwrap()
            .into_inner();
        admitted += u64::from(answer.admitted);
    }
    assert_eq!(admitted, 25, "well under the burst");
    sidecar
        .wait_for("the checks are delivered", Duration::from_secs(20), |s| {
            spooled_admitted(s) == 25 && spool(s).depth == 0
        })
        .await;
    let usage = ok(&url, &["show", "license", "usage"]);
    assert!(usage.contains("Admitted"), "{usage}");
    assert_eq!(usage_admitted(&usage), 25, "{usage}");
    assert!(usage.contains("yes"), "delivered: {usage}");

    // One more licence, applied at once.
    let said = ok(&url, &["license", "selection", "PAR-ADD-TPS", "1"]);
    assert_eq!(
        said,
        "Selection: PAR-ADD-TPS x 1, PAR-TPS x 1. Authorized at once: AUTHORIZED.\n"
    );
    let selection = ok(&url, &["show", "license", "selection"]);
    assert!(
        selection.starts_with("License Selection (asked for at the next authorization):\n"),
        "{selection}"
    );
    assert!(selection.contains("  PAR-ADD-TPS  1"), "{selection}");
    assert!(selection.contains("  PAR-TPS      1"), "{selection}");
    assert_eq!(rate(&sidecar.status().await, "PAR-TPS"), Some(200));

    let summary = ok(&url, &["show", "license", "summary"]);
    for line in [
        "Registration: REGISTERED (Acme / Radius)\n",
        "License Authorization: AUTHORIZED\n",
        "Gate Limits: AUTHORIZED\n",
    ] {
        assert!(summary.contains(line), "{line:?} missing from\n{summary}");
    }
    let grant = summary
        .lines()
        .find(|l| l.trim_start().starts_with("PAR-ADD-TPS"))
        .unwrap();
    assert_eq!(
        grant.split_whitespace().collect::<Vec<_>>(),
        ["PAR-ADD-TPS", "1", "1", "AUTHORIZED"]
    );
    assert!(summary.contains("  PAR-TPS  200 TPS burst "), "{summary}");

    // The shell, with two commands piped in.
    let out = entitle(
        &url,
        &[],
        Some("license smart renew auth\nshow license summary\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    assert!(
        text.starts_with("Authorization renewed: AUTHORIZED ("),
        "{text}"
    );
    assert!(
        text.contains("\nSmart Licensing is ENABLED\nRegistration: REGISTERED (Acme / Radius)\n"),
        "{text}"
    );
    assert!(!text.contains("entitle> "), "no prompt off a terminal");
}

// ----- 6. Restart and bad configuration -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_sidecar_restarts_registered_with_its_limits_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut authority = Authority::start(dir.path());
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let mut sidecar = Entitled::start(dir.path(), &authority, "RS1", SELECT_300);
    sidecar.register(token).await;
    let key_path = sidecar.dir.join("data").join("device.key");
    let key = std::fs::read(&key_path).unwrap();
    let before = sidecar.status().await;
    assert_eq!(authorization(&before), "AUTHORIZED");

    // Killed, and restarted with the authority away: what it shows comes from its store.
    sidecar.kill();
    authority.kill();
    sidecar.restart();
    let after = sidecar.status().await;
    assert_eq!(registration(&after), "REGISTERED");
    assert_eq!(authorization(&after), "AUTHORIZED");
    assert_eq!(after.enforcement, "AUTHORIZED");
    let (r0, r1) = (
        before.registration.as_ref().unwrap(),
        after.registration.as_ref().unwrap(),
    );
    assert_eq!(r1.smart_account.as_deref(), Some("Acme"));
    assert_eq!(r1.virtual_account, r0.virtual_account);
    assert_eq!(r1.initial_registration, r0.initial_registration);
    assert_eq!(
        after.authorization.as_ref().unwrap().grants,
        before.authorization.as_ref().unwrap().grants
    );
    assert_eq!(after.selection, before.selection);
    assert_eq!(after.callhome_url, authority.url);
    assert_eq!(rate(&after, "PAR-TPS"), Some(300));

    // A packet server attaching now gets the licensed limit.
    let (gate, _attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, 300).await;

    // The same identity, kept private.
    assert_eq!(std::fs::read(&key_path).unwrap(), key);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "device.key is mode {:o}", mode & 0o777);

    // And with the authority back, it renews as the same instance.
    authority.restart();
    let renewed = sidecar
        .client()
        .await
        .renew_authorization(pb::RenewAuthorizationCommand {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        renewed
            .message
            .starts_with("Authorization renewed: AUTHORIZED"),
        "{}",
        renewed.message
    );
    let instances = authority
        .admin()
        .await
        .list_instances(pb::ListInstancesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert_eq!(instances.len(), 1, "{instances:#?}");
}

#[test]
fn a_bad_configuration_stops_entitled_with_64_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authority.pub");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let good = format!(
        "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nauthority_public_key = {key:?}\n",
        data = dir.path().join("data"),
    );
    let udi = "[udi]\nproduct_id = \"CPAR\"\nserial = \"BAD1\"\n";
    for (name, text, names) in [
        (
            "unknown-key",
            format!("{good}colour = \"blue\"\n{udi}"),
            "colour",
        ),
        ("missing-udi", good.clone(), "udi"),
        (
            "bad-url",
            format!("{good}callhome_url = \"ftp://authority.example\"\n{udi}"),
            "ftp://authority.example",
        ),
        (
            "bad-serial",
            format!("{good}[udi]\nproduct_id = \"CPAR\"\nserial = \"has space\"\n"),
            "udi.serial",
        ),
        ("not-toml", format!("{good}{udi}[agent\n"), "not-toml.toml"),
        (
            "no-such-group",
            format!("{good}socket_group = \"no-such-group-e2e\"\n{udi}"),
            "socket_group: there is no group \"no-such-group-e2e\"",
        ),
        (
            "long-socket",
            format!("{good}socket = \"/{}/e.sock\"\n{udi}", "s".repeat(120)),
            "a Unix socket's path can be at most 107",
        ),
    ] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(ENTITLED)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{name}: {message}");
        assert_eq!(stdout(&out), "", "{name}");
        assert_eq!(message.lines().count(), 1, "{name}: {message}");
        assert!(
            message.starts_with("error: bad configuration: "),
            "{name}: {message}"
        );
        assert!(message.contains(names), "{name}: {message}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused configuration writes nothing"
    );

    // A configuration file that is not there.
    let out = Command::new(ENTITLED)
        .arg("--config")
        .arg(dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
