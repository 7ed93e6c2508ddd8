//! The `entitle` binary as an operator uses it, against a fake `Sidecar` with canned
//! answers on 127.0.0.1:0: one command per process, a piped shell script, malformed words,
//! a refusal, and a sidecar that is not there.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use entitle_proto::pb;
use entitle_proto::pb::sidecar_server::{Sidecar, SidecarServer};
use tonic::{Request, Response, Status};

const BIN: &str = env!("CARGO_BIN_EXE_entitle");

/// Nov 27 23:40:01 2026 UTC.
const T0: i64 = 1_795_822_801;
const DAY: i64 = 86_400;

const NOT_REGISTERED: &str = "The device is not registered; there is nothing to deregister.";

/// What the fake was asked, in order, and the selection it keeps.
#[derive(Default)]
struct State {
    calls: Vec<String>,
    selection: Vec<pb::LicenseCount>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn record(&self, call: String) {
        self.0.lock().unwrap().calls.push(call);
    }

    fn reply(&self, call: String, message: &str) -> Result<Response<pb::CommandReply>, Status> {
        self.record(call);
        Ok(Response::new(pb::CommandReply {
            message: message.into(),
        }))
    }
}

#[tonic::async_trait]
impl Sidecar for Fake {
    async fn register(
        &self,
        request: Request<pb::RegisterCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let token = request.into_inner().id_token;
        self.reply(
            format!("Register {token}"),
            "Registered with Example Corp / RADIUS and authorized.",
        )
    }

    async fn deregister(
        &self,
        _: Request<pb::DeregisterCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        self.record("Deregister".into());
        Err(Status::failed_precondition(NOT_REGISTERED))
    }

    async fn renew_id(
        &self,
        _: Request<pb::RenewIdCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        self.reply("RenewId".into(), "ID certificate renewed.")
    }

    async fn renew_authorization(
        &self,
        _: Request<pb::RenewAuthorizationCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        self.reply("RenewAuthorization".into(), "Authorization renewed.")
    }

    async fn set_call_home_proxy(
        &self,
        request: Request<pb::SetCallHomeProxyCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let url = request.into_inner().url;
        self.reply(format!("SetCallHomeProxy {url}"), "Proxy set.")
    }

    async fn renew_trust(
        &self,
        _: Request<pb::RenewTrustCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        self.reply("RenewTrust".into(), "Trust renewed: authority key a -> b.")
    }

    async fn set_call_home(
        &self,
        request: Request<pb::SetCallHomeCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let url = request.into_inner().url;
        self.reply(format!("SetCallHome {url}"), "Call home destination set.")
    }

    async fn set_selection(
        &self,
        request: Request<pb::SetSelectionCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let counts = request.into_inner().counts;
        let mut state = self.0.lock().unwrap();
        for c in &counts {
            state
                .calls
                .push(format!("SetSelection {}={}", c.tag, c.count));
            state.selection.retain(|s| s.tag != c.tag);
            if c.count > 0 {
                state.selection.push(c.clone());
            }
        }
        Ok(Response::new(pb::CommandReply {
            message: "Selection changed; the next authorization asks for it.".into(),
        }))
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::LicenseStatus>, Status> {
        self.record("GetStatus".into());
        let selection = self.0.lock().unwrap().selection.clone();
        Ok(Response::new(status(selection)))
    }

    async fn get_recent_usage(
        &self,
        _: Request<pb::GetRecentUsageRequest>,
    ) -> Result<Response<pb::UsageHistory>, Status> {
        self.record("GetRecentUsage".into());
        Ok(Response::new(pb::UsageHistory {
            snapshots: vec![pb::SpooledSnapshot {
                sequence: 12,
                window_start: T0 * 1000,
                window_end: T0 * 1000 + 60_000,
                usage: vec![pb::EntitlementUsage {
                    tag: "PAR-TPS".into(),
                    admitted: 1000,
                    rejected: 3,
                    peak_tps: 30,
                    tps_histogram: vec![],
                }],
                delivered: true,
            }],
        }))
    }

    async fn get_event_log(
        &self,
        request: Request<pb::GetEventLogRequest>,
    ) -> Result<Response<pb::EventLog>, Status> {
        self.record(format!("GetEventLog {}", request.into_inner().limit));
        Ok(Response::new(pb::EventLog {
            events: vec![
                pb::LicenseEvent {
                    at: T0 + 1,
                    kind: "registration".into(),
                    severity: "NOTICE".into(),
                    message: "registration REGISTERING -> REGISTERED".into(),
                    trap: "entitleRegistrationStateChanged".into(),
                },
                pb::LicenseEvent {
                    at: T0,
                    kind: "call".into(),
                    severity: "INFO".into(),
                    message: "registration succeeded".into(),
                    trap: String::new(),
                },
            ],
        }))
    }

    type AttachStream = tokio_stream::Empty<Result<pb::AttachResponse, Status>>;

    async fn attach(
        &self,
        _: Request<tonic::Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn check(
        &self,
        _: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_enable(
        &self,
        _: Request<pb::ReservationEnableCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_disable(
        &self,
        _: Request<pb::ReservationDisableCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_request(
        &self,
        _: Request<pb::ReservationRequestCommand>,
    ) -> Result<Response<pb::ReservationCodeReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_install(
        &self,
        _: Request<pb::ReservationInstallCommand>,
    ) -> Result<Response<pb::ReservationCodeReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_return(
        &self,
        _: Request<pb::ReservationReturnCommand>,
    ) -> Result<Response<pb::ReservationCodeReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reservation_cancel(
        &self,
        _: Request<pb::ReservationCancelCommand>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

fn status(selection: Vec<pb::LicenseCount>) -> pb::LicenseStatus {
    pb::LicenseStatus {
        udi: Some(pb::Udi {
            product_id: "CPAR".into(),
            serial: "A1".into(),
        }),
        callhome_url: "http://127.0.0.1:7171".into(),
        registration: Some(pb::RegistrationInfo {
            status: "REGISTERED".into(),
            smart_account: Some("Example Corp".into()),
            virtual_account: Some("RADIUS".into()),
            export_controlled: Some(false),
            initial_registration: Some(T0),
            next_renewal_attempt: Some(T0 + 180 * DAY),
            expires: Some(T0 + 365 * DAY),
            ..Default::default()
        }),
        authorization: Some(pb::AuthorizationInfo {
            status: "AUTHORIZED".into(),
            grants: vec![pb::Grant {
                tag: "PAR-TPS".into(),
                requested: 1,
                granted: 1,
                status: pb::GrantStatus::Authorized.into(),
                ..Default::default()
            }],
            last_communication_attempt: Some(T0 + 1),
            next_communication_attempt: Some(T0 + 1 + 30 * DAY),
            communication_deadline: Some(T0 + 1 + 90 * DAY),
            ..Default::default()
        }),
        reservation: Some(pb::ReservationInfo {
            status: "DISABLED".into(),
            ..Default::default()
        }),
        enforcement: "AUTHORIZED".into(),
        selection,
        entitlements: vec![pb::EntitlementState {
            tag: "PAR-TPS".into(),
            limit: Some(pb::EntitlementLimit {
                unlimited: false,
                rate: 300,
                burst: 30,
                policy: pb::PolicyKind::Hard.into(),
            }),
            admitted: 123_456,
            rejected: 7,
        }],
        spool: Some(pb::SpoolInfo {
            depth: 0,
            capacity: 100_000,
            delivered: 12,
            last_failure: None,
        }),
        last_callhome_success: Some(T0 + 1),
        attached_engines: 1,
        callhome_proxy: String::new(),
        trust: Some(pb::TrustInfo {
            authority_key: "0123456789abcdef".into(),
            authority_pinned: true,
            codes_key: String::new(),
            codes_pinned: false,
            differences: vec![],
        }),
    }
}

/// The fake served on its own runtime, so the tests can block on the CLI process.
struct FakeSidecar {
    url: String,
    fake: Fake,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeSidecar {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Fake::default();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = SidecarServer::new(fake.clone());
        // Bound before the CLI starts, so the first connection is accepted: no sleep.
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        Self {
            url,
            fake,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.fake.0.lock().unwrap().calls.clone()
    }

    /// Runs `entitle --sidecar <url> <args>`.
    fn entitle(&self, args: &[&str]) -> Output {
        run(
            Command::new(BIN).arg("--sidecar").arg(&self.url).args(args),
            None,
        )
    }

    /// Runs the shell with `script` on its stdin.
    fn shell(&self, script: &str) -> Output {
        run(
            Command::new(BIN).arg("--sidecar").arg(&self.url),
            Some(script),
        )
    }
}

impl Drop for FakeSidecar {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .env_remove("ENTITLE_SIDECAR")
        .env_remove("ENTITLE_SIDECAR_CREDENTIAL_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(script) = stdin {
        input.write_all(script.as_bytes()).unwrap();
    }
    drop(input); // EOF
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn show_license_status_prints_the_sidecars_state_in_the_cpar_layout() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.entitle(&["show", "license", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    for line in [
        "Smart Licensing is ENABLED\n",
        "  Status: REGISTERED\n",
        "  Smart Account: Example Corp\n",
        "  Export-Controlled Functionality: Not Allowed\n",
        "  Initial Registration: SUCCEEDED on Nov 27 23:40:01 2026 UTC\n",
        "  Status: AUTHORIZED on Nov 27 23:40:02 2026 UTC\n",
        "  Communication Deadline: Feb 25 23:40:02 2027 UTC\n",
        "Call Home: http://127.0.0.1:7171\n",
        "Usage spool: 0 pending, 12 delivered (capacity 100000)\n",
        "  PAR-TPS  300 TPS burst 30 hard  123456    7\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    assert_eq!(sidecar.calls(), ["GetStatus"]);
}

#[test]
fn show_license_eventlog_prints_each_event_with_its_time() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.entitle(&["show", "license", "eventlog"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("Time") && lines[0].contains("Event"),
        "{text}"
    );
    assert!(
        lines[1].contains("Nov 27 23:40:02 2026 UTC")
            && lines[1].contains("registration REGISTERING -> REGISTERED")
            && lines[1].contains("[trap entitleRegistrationStateChanged]"),
        "{text}"
    );
    assert!(lines[2].contains("Nov 27 23:40:01 2026 UTC"), "{text}");
    assert_eq!(sidecar.calls(), ["GetEventLog 0"]);
}

#[test]
fn commands_send_their_arguments_and_print_the_reply() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.entitle(&["license", "smart", "register", "tok.EN-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Registered with Example Corp / RADIUS and authorized.\n"
    );
    let out = sidecar.entitle(&[
        "callhome",
        "destination",
        "address",
        "http",
        "https://cssm.example/its",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = sidecar.entitle(&["license", "smart", "renew", "auth"]);
    assert_eq!(stdout(&out), "Authorization renewed.\n");
    let out = sidecar.entitle(&["license", "smart", "trust", "renew"]);
    assert_eq!(stdout(&out), "Trust renewed: authority key a -> b.\n");
    assert_eq!(
        sidecar.calls(),
        [
            "Register tok.EN-1",
            "SetCallHome https://cssm.example/its",
            "RenewAuthorization",
            "RenewTrust"
        ]
    );
}

#[test]
fn a_refused_command_prints_the_sidecars_sentence_and_exits_1() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.entitle(&["license", "smart", "deregister"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("{NOT_REGISTERED}\n"));
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_malformed_command_exits_2_and_sends_nothing() {
    let sidecar = FakeSidecar::start();
    for (args, sentence) in [
        (
            &["license", "smart", "renew"][..],
            "`license smart renew` needs `id` or `auth`",
        ),
        (
            &["license", "selection", "PAR-TPS"],
            "`license selection PAR-TPS` needs a count",
        ),
        (
            &["license", "selection", "PAR-TPS", "x"],
            "count must be a whole number, got `x`",
        ),
        (&["foo"], "unknown command `foo`; try `help`"),
        (
            &["license", "smart", "reservation", "install"],
            "`license smart reservation install` needs an authorization code",
        ),
        (&["exit"], "`exit` only works in the interactive shell"),
    ] {
        let out = sidecar.entitle(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out), format!("{sentence}\n"), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert!(sidecar.calls().is_empty(), "{:?}", sidecar.calls());
}

#[test]
fn the_shell_runs_a_piped_script_survives_errors_and_exits_0_at_eof() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.shell(
        "# set up the licences\n\
         \n\
         license selection PAR-TPS 2\n\
         license selection PAR-ADD-TPS 3   # more later\n\
         foo\n\
         license smart deregister\n\
         no license selection PAR-ADD-TPS\n\
         show license selection\n\
         show license usage\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("unknown command `foo`; try `help`\n{NOT_REGISTERED}\n")
    );
    let text = stdout(&out);
    assert!(!text.contains("entitle> "), "no prompt off a terminal");
    assert!(
        text.contains(
            "License Selection (asked for at the next authorization):\n  \
             License  Count\n  PAR-TPS  2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  12        Nov 27 23:40:01 2026 UTC  60 s    PAR-TPS  1000      3"),
        "{text}"
    );
    assert_eq!(
        sidecar.calls(),
        [
            "SetSelection PAR-TPS=2",
            "SetSelection PAR-ADD-TPS=3",
            "Deregister",
            "SetSelection PAR-ADD-TPS=0",
            "GetStatus",
            "GetRecentUsage"
        ]
    );
}

/// Output of a process read as it comes, for a bounded wait on what it prints.
struct Reader(Arc<Mutex<String>>);

impl Reader {
    fn start(mut from: impl std::io::Read + Send + 'static) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self(text)
    }

    fn wait_for(&self, needle: &str) {
        let start = std::time::Instant::now();
        while !self.0.lock().unwrap().contains(needle) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "{needle:?} not printed within 30 s; the terminal showed:\n{}",
                self.0.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn on_a_terminal_the_shell_completes_with_tab_quotes_words_and_keeps_history() {
    let sidecar = FakeSidecar::start();
    let history = std::env::temp_dir().join(format!(
        "entitle-history-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    // `script` (util-linux) gives the shell a terminal; what is typed goes through it.
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("{BIN} --sidecar {}", sidecar.url))
        .arg("/dev/null")
        .env("TERM", "xterm")
        .env("ENTITLE_HISTORY", &history)
        .env_remove("ENTITLE_SIDECAR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the terminal test needs `script` from util-linux");
    let mut keys = child.stdin.take().unwrap();
    let screen = Reader::start(child.stdout.take().unwrap());
    screen.wait_for("entitle> ");
    // Tab completes each keyword: "sh" -> "show ", "lic" -> "license ", "st" -> "status ".
    keys.write_all(b"sh\tlic\tst\t\r").unwrap();
    screen.wait_for("Smart Licensing is ENABLED");
    keys.write_all(b"license smart register \"tok EN-1\"\r")
        .unwrap();
    screen.wait_for("Registered with Example Corp");
    keys.write_all(b"exit\r").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(sidecar.calls(), ["GetStatus", "Register tok EN-1"]);
    let kept = std::fs::read_to_string(&history).unwrap_or_default();
    let _ = std::fs::remove_file(&history);
    assert!(
        kept.contains("show license status"),
        "the history holds the commands typed: {kept:?}"
    );
    assert!(!kept.contains("tok EN-1"), "never an ID token: {kept:?}");
}

#[test]
fn the_shell_stops_at_exit_or_quit() {
    let sidecar = FakeSidecar::start();
    let out = sidecar.shell("license smart renew id\nquit\nlicense smart renew auth\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ID certificate renewed.\n");
    let out = sidecar.shell("exit\nlicense smart renew auth\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sidecar.calls(), ["RenewId"]);
}

#[test]
fn the_sidecar_address_can_come_from_the_environment() {
    let sidecar = FakeSidecar::start();
    let out = Command::new(BIN)
        .args(["show", "license", "summary"])
        .env("ENTITLE_SIDECAR", &sidecar.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Registration: REGISTERED (Example Corp / RADIUS)\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sidecar.calls(), ["GetStatus"]);
}

#[test]
fn an_unreachable_sidecar_is_named_with_the_reason() {
    // A port that was free a moment ago: nothing listens on it now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(
        Command::new(BIN)
            .args(["--sidecar", &url])
            .args(["show", "license", "status"]),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let sentence = stderr(&out);
    assert!(
        sentence.starts_with(&format!("cannot reach the sidecar at {url}: ")),
        "{sentence}"
    );
    assert_eq!(sentence.lines().count(), 1, "{sentence}");

    // The shell says the same and goes on.
    let out = run(
        Command::new(BIN).args(["--sidecar", &url]),
        Some("license smart renew id\nhelp\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).starts_with("cannot reach the sidecar at "));
    assert!(stdout(&out).starts_with("Commands:\n"), "{}", stdout(&out));
}
