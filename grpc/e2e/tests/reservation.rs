//! Licence reservation end to end through the real binaries: the request on the device
//! (`entitle` against `entitled`), the authorisation on the authority (`entitle-authority`),
//! the install on the device with the gate enforcing the new limits at once under load (no
//! restart), the return, and the pool restored. Then every refusal: a code for another
//! device, a tampered code, a code from another authority, an SLR beyond the pool, an
//! install after cancel, a return code used twice, a request code with a typo.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use entitle_codes as codes;
use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_proto::pb;
use entitle_sidecar::{AttachOptions, Attachment};
use harness::{Authority, Entitled, rate, registration};
use tonic::Code;

const ENTITLE: &str = env!("CARGO_BIN_EXE_e2e-entitle");
const AUTHORITY: &str = env!("CARGO_BIN_EXE_e2e-entitle-authority");

/// Runs `entitle --sidecar <url> args`; answers (success, stdout, stderr).
fn entitle(sidecar: &Entitled, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ENTITLE)
        .arg("--sidecar")
        .arg(&sidecar.url)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs an `entitle-authority` admin command; answers (success, stdout, stderr).
fn admin(authority: &Authority, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(AUTHORITY)
        .arg("--authority")
        .arg(&authority.admin_url)
        .arg("--data")
        .arg(&authority.data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last non-empty line: where the CLIs print a code.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_owned()
}

fn ok(result: (bool, String, String)) -> String {
    let (success, out, err) = result;
    assert!(success, "failed: {err}\n{out}");
    out
}

/// A packet server's gate attached to `sidecar`, and a thread offering ~5,000 TPS to it.
struct Load {
    gate: Arc<Gate<CoarseClock>>,
    _attachment: Attachment,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    offered: Arc<std::sync::atomic::AtomicU64>,
    admitted: Arc<std::sync::atomic::AtomicU64>,
}

impl Load {
    fn start(sidecar: &Entitled) -> Self {
        let mut builder = Gate::builder(CoarseClock::new().unwrap());
        builder
            .register("PAR-TPS", Limit::hard(10).unwrap())
            .unwrap();
        let gate = builder.build();
        let options = AttachOptions {
            snapshot_interval: Duration::from_millis(100),
            ..AttachOptions::default()
        };
        let attachment = Attachment::start(Arc::clone(&gate), &sidecar.url, options).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let offered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let admitted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (gate, stop, offered, admitted) = (
                Arc::clone(&gate),
                Arc::clone(&stop),
                Arc::clone(&offered),
                Arc::clone(&admitted),
            );
            std::thread::spawn(move || {
                let mut worker = gate.worker();
                let tps = gate.entitlement("PAR-TPS").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..5 {
                        offered.fetch_add(1, Ordering::Relaxed);
                        if worker.check(tps).is_admit() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self {
            gate,
            _attachment: attachment,
            stop,
            thread: Some(thread),
            offered,
            admitted,
        }
    }

    fn limit(&self) -> Limit {
        let limits = self.gate.limits();
        limits.limit(limits.entitlement("PAR-TPS").unwrap())
    }

    async fn wait_limit(&self, want: Limit) {
        for _ in 0..200 {
            if self.limit() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gate never got {want:?}: {:?}", self.limit());
    }

    /// Offered and admitted over `seconds` of load from now.
    async fn measure(&self, seconds: f64) -> (u64, u64) {
        let (o0, a0) = (
            self.offered.load(Ordering::Relaxed),
            self.admitted.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        (
            self.offered.load(Ordering::Relaxed) - o0,
            self.admitted.load(Ordering::Relaxed) - a0,
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn pool(authority: &Authority, tag: &str) -> pb::Pool {
    authority
        .admin()
        .await
        .list_pools(pb::ListPoolsRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pools
        .into_iter()
        .find(|p| p.tag == tag)
        .unwrap()
}

async fn add_plr_licence(authority: &Authority) {
    authority
        .admin()
        .await
        .add_licenses(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-PLR".into(),
            quantity: 1,
            term_end: 0,
            plr_capable: true,
        })
        .await
        .unwrap();
}

fn request_code(sidecar: &Entitled) -> String {
    ok(entitle(sidecar, &["license", "smart", "reservation"]));
    let out = ok(entitle(
        sidecar,
        &["license", "smart", "reservation", "request"],
    ));
    let code = last_line(&out);
    assert!(code.len() <= 32, "{code}");
    // The same pending request prints the same code.
    let again = ok(entitle(
        sidecar,
        &["license", "smart", "reservation", "request"],
    ));
    assert_eq!(last_line(&again), code);
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plr_end_to_end_unlimits_the_gate_live_and_the_return_restores_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    authority.acme(&[("PAR-TPS", 1)]).await;
    add_plr_licence(&authority).await;
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "PLR1",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    let load = Load::start(&sidecar);
    load.wait_limit(Limit::new(100, 10, entitle_engine::Policy::Hard).unwrap())
        .await;

    let request = request_code(&sidecar);
    let (success, code, err) = admin(
        &authority,
        &["reservation", "plr", "Acme", "Radius", &request],
    );
    assert!(success, "{err}");
    let code = code.trim().to_owned();
    assert!(
        code.len() <= 64,
        "PLR code of {} characters: {code}",
        code.len()
    );
    assert_eq!(pool(&authority, "PAR-PLR").await.in_use, 1);

    let installed = ok(entitle(
        &sidecar,
        &["license", "smart", "reservation", "install", &code],
    ));
    let confirmation = last_line(&installed);
    assert_eq!(confirmation.len(), 8);
    assert!(confirmation.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(err.contains(&confirmation), "the authority expects {err}");

    // At once, no restart: everything unlimited, in the sidecar and in the attached gate.
    let status = sidecar.status().await;
    assert_eq!(
        registration(&status),
        "REGISTERED - UNIVERSAL LICENSE RESERVATION"
    );
    assert_eq!(rate(&status, "PAR-TPS"), None);
    load.wait_limit(Limit::Unlimited).await;
    let (offered, admitted) = load.measure(0.5).await;
    assert!(
        offered > 500 && admitted == offered,
        "{admitted} of {offered}"
    );
    let shown = ok(entitle(&sidecar, &["show", "license", "reservation"]));
    for words in [
        "INSTALLED",
        "PERMANENT",
        &confirmation,
        "PID:CPAR,SN:PLR1",
        "Not Allowed",
    ] {
        assert!(shown.contains(words), "{words} missing from\n{shown}");
    }

    // Return: the device is unregistered again and back on its evaluation limit.
    let returned = ok(entitle(
        &sidecar,
        &["license", "smart", "reservation", "return"],
    ));
    let return_code = last_line(&returned);
    let status = sidecar.status().await;
    assert_eq!(registration(&status), "UNREGISTERED");
    assert_eq!(rate(&status, "PAR-TPS"), Some(100));
    load.wait_limit(Limit::new(100, 10, entitle_engine::Policy::Hard).unwrap())
        .await;

    let first = ok(admin(&authority, &["reservation", "return", &return_code]));
    assert!(first.contains("returned;"), "{first}");
    assert_eq!(pool(&authority, "PAR-PLR").await.in_use, 0);
    let second = ok(admin(&authority, &["reservation", "return", &return_code]));
    assert!(second.contains("nothing changed"), "{second}");
    assert_eq!(pool(&authority, "PAR-PLR").await.in_use, 0);
    let audit = ok(admin(&authority, &["audit", "list"]));
    assert!(audit.contains("reservation.permanent") && audit.contains("reservation.return"));

    // And back to smart licensing with a token.
    let token = authority
        .admin()
        .await
        .create_token(pb::CreateTokenRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            validity_days: 1,
            max_uses: 1,
            export_controlled: false,
            description: "after PLR".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    ok(entitle(
        &sidecar,
        &["no", "license", "smart", "reservation"],
    ));
    ok(entitle(&sidecar, &["license", "smart", "register", &token]));
    assert_eq!(registration(&sidecar.status().await), "REGISTERED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slr_end_to_end_reserves_exact_counts_enforced_live_and_returned_to_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 3)]).await;
    let sidecar = Entitled::start(dir.path(), &authority, "SLR1", "");
    let load = Load::start(&sidecar);

    let request = request_code(&sidecar);
    // More than the pool holds: refused, naming what is missing, nothing reserved.
    let (success, _, err) = admin(
        &authority,
        &[
            "reservation",
            "slr",
            "Acme",
            "Radius",
            &request,
            "PAR-TPS=1",
            "PAR-ADD-TPS=4",
        ],
    );
    assert!(!success);
    assert!(err.contains("PAR-ADD-TPS: 4 asked, 3 available"), "{err}");
    assert_eq!(pool(&authority, "PAR-ADD-TPS").await.in_use, 0);

    let code = ok(admin(
        &authority,
        &[
            "reservation",
            "slr",
            "Acme",
            "Radius",
            &request,
            "PAR-TPS=1",
            "PAR-ADD-TPS=2",
        ],
    ));
    let code = code.trim().to_owned();
    assert_eq!(pool(&authority, "PAR-TPS").await.in_use, 1);
    assert_eq!(pool(&authority, "PAR-ADD-TPS").await.in_use, 2);

    ok(entitle(
        &sidecar,
        &["license", "smart", "reservation", "install", &code],
    ));
    let status = sidecar.status().await;
    assert_eq!(
        registration(&status),
        "REGISTERED - SPECIFIC LICENSE RESERVATION"
    );
    assert_eq!(rate(&status, "PAR-TPS"), Some(300));
    load.wait_limit(Limit::new(300, 30, entitle_engine::Policy::Hard).unwrap())
        .await;
    // Under ~5,000 offered TPS the gate admits the reserved 300 (plus at most a burst).
    let (offered, admitted) = load.measure(2.0).await;
    assert!(offered > 4_000, "offered {offered}");
    assert!(
        (500..=700).contains(&admitted),
        "admitted {admitted} in 2 s"
    );
    let shown = ok(entitle(&sidecar, &["show", "license", "reservation"]));
    for words in ["SPECIFIC", "PAR-ADD-TPS", "Acme", "Radius"] {
        assert!(shown.contains(words), "{words} missing from\n{shown}");
    }

    let return_code = last_line(&ok(entitle(
        &sidecar,
        &["license", "smart", "reservation", "return"],
    )));
    ok(admin(&authority, &["reservation", "return", &return_code]));
    assert_eq!(pool(&authority, "PAR-TPS").await.in_use, 0);
    assert_eq!(pool(&authority, "PAR-ADD-TPS").await.in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_codes_are_refused_with_a_clear_message_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start(dir.path());
    authority.acme(&[("PAR-TPS", 1)]).await;
    add_plr_licence(&authority).await;
    let device = Entitled::start(dir.path(), &authority, "DEV1", "");
    let other = Entitled::start(dir.path(), &authority, "DEV2", "");
    let mut client = device.client().await;

    // A request code with a typo is refused by the authority.
    let request = request_code(&device);
    let mut typo: Vec<char> = request.chars().collect();
    let i = typo.len() / 2;
    typo[i] = if typo[i] == 'X' { 'Y' } else { 'X' };
    let typo: String = typo.into_iter().collect();
    let (success, _, err) = admin(&authority, &["reservation", "plr", "Acme", "Radius", &typo]);
    assert!(!success);
    assert!(err.starts_with("error: "), "{err}");

    // A code for another device.
    let other_request = request_code(&other);
    let for_other = ok(admin(
        &authority,
        &["reservation", "plr", "Acme", "Radius", &other_request],
    ));
    let refused = client
        .reservation_install(pb::ReservationInstallCommand {
            authorization_code: for_other.trim().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // (The other device's return puts its licence back for this test's own code.)
    ok(entitle(
        &other,
        &[
            "license",
            "smart",
            "reservation",
            "install",
            for_other.trim(),
        ],
    ));
    let back = last_line(&ok(entitle(
        &other,
        &["license", "smart", "reservation", "return"],
    )));
    ok(admin(&authority, &["reservation", "return", &back]));

    // A real code for this device, tampered at every position: every one refused.
    let code = ok(admin(
        &authority,
        &["reservation", "plr", "Acme", "Radius", &request],
    ));
    let code = code.trim().to_owned();
    let mut refusals = 0;
    for (i, c) in code.char_indices() {
        let replacement = if c == 'A' { 'B' } else { 'A' };
        let mut tampered = code.clone();
        tampered.replace_range(i..i + 1, &replacement.to_string());
        let e = client
            .reservation_install(pb::ReservationInstallCommand {
                authorization_code: tampered,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "position {i}: {e:?}");
        refusals += 1;
    }
    assert_eq!(refusals, code.len());

    // A code signed by another authority, for this very device and request.
    let sequence = device
        .status()
        .await
        .reservation
        .unwrap()
        .pending_sequence
        .unwrap();
    let forged = codes::make_plr(
        &codes::CodeSigningKey::from_seed(&[9; 32]),
        &codes::Request {
            udi: codes::Udi::new("CPAR", "DEV1").unwrap(),
            sequence,
        },
        &codes::PlrGrant {
            smart_account_ref: 1,
            export_controlled: true,
        },
    )
    .unwrap();
    let e = client
        .reservation_install(pb::ReservationInstallCommand {
            authorization_code: forged,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("does not verify"), "{}", e.message());

    // Nothing changed: the request is still pending, nothing is installed.
    let status = device.status().await;
    assert_eq!(
        status.reservation.as_ref().unwrap().status,
        "REQUEST PENDING"
    );
    assert_eq!(registration(&status), "UNREGISTERED");

    // Installing after cancel is refused; the return code of the never-installed code can
    // still be made, and used once.
    ok(entitle(
        &device,
        &["license", "smart", "reservation", "cancel"],
    ));
    let (success, _, err) = entitle(
        &device,
        &["license", "smart", "reservation", "install", &code],
    );
    assert!(!success);
    assert!(err.contains("no reservation request is pending"), "{err}");
    let return_code = last_line(&ok(entitle(
        &device,
        &[
            "license",
            "smart",
            "reservation",
            "return",
            "authorization",
            &code,
        ],
    )));
    assert!(ok(admin(&authority, &["reservation", "return", &return_code])).contains("returned;"));
    assert!(
        ok(admin(&authority, &["reservation", "return", &return_code])).contains("nothing changed")
    );
    assert_eq!(pool(&authority, "PAR-PLR").await.in_use, 0);

    // Disabling with a reservation installed is refused with the reason.
    let request = request_code(&device);
    let code = ok(admin(
        &authority,
        &["reservation", "plr", "Acme", "Radius", &request],
    ));
    ok(entitle(
        &device,
        &["license", "smart", "reservation", "install", code.trim()],
    ));
    let (success, _, err) = entitle(&device, &["no", "license", "smart", "reservation"]);
    assert!(!success);
    assert!(err.contains("return it before disabling"), "{err}");
    let e = client
        .reservation_install(pb::ReservationInstallCommand {
            authorization_code: code.trim().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn the_authority_checks_the_account_the_pool_and_the_kind_before_it_reserves() {
    let mut authority = common::TestAuthority::start().await;
    authority.acme(1).await; // Acme (PLR-authorised) / Radius: 1 PAR-TPS, 2 PAR-ADD-TPS
    let admin = &mut authority.admin;
    admin
        .create_smart_account(pb::CreateSmartAccountRequest {
            name: "NoPlr".into(),
            plr_authorized: false,
            export_controlled: false,
        })
        .await
        .unwrap();
    admin
        .create_virtual_account(pb::CreateVirtualAccountRequest {
            smart_account: "NoPlr".into(),
            name: "Radius".into(),
        })
        .await
        .unwrap();
    let request = codes::make_request(&codes::Udi::new("CPAR", "X1").unwrap(), 1).unwrap();
    let ask = |sa: &str, kind: pb::ReservationKind, licences: &[(&str, u64)]| {
        pb::AuthorizeReservationRequest {
            smart_account: sa.into(),
            virtual_account: "Radius".into(),
            request_code: request.clone(),
            kind: kind as i32,
            licenses: common::counts(licences),
        }
    };
    let audit_before = authority.audit_len().await;
    let admin = &mut authority.admin;
    let cases = [
        (
            ask("NoPlr", pb::ReservationKind::Permanent, &[]),
            Code::FailedPrecondition,
            "not authorised for permanent licence reservation",
        ),
        (
            ask("Acme", pb::ReservationKind::Permanent, &[]),
            Code::FailedPrecondition,
            "no unconsumed perpetual PLR-capable licence",
        ),
        (
            ask("Acme", pb::ReservationKind::Permanent, &[("PAR-TPS", 1)]),
            Code::InvalidArgument,
            "list no licences",
        ),
        (
            ask("Acme", pb::ReservationKind::Specific, &[]),
            Code::InvalidArgument,
            "lists the licences",
        ),
        (
            ask("Acme", pb::ReservationKind::Specific, &[("PAR-TPS", 2)]),
            Code::FailedPrecondition,
            "PAR-TPS: 2 asked, 1 available",
        ),
        (
            ask("Acme", pb::ReservationKind::Unspecified, &[]),
            Code::InvalidArgument,
            "which kind",
        ),
        (
            pb::AuthorizeReservationRequest {
                request_code: "not a request code".into(),
                ..ask("Acme", pb::ReservationKind::Specific, &[("PAR-TPS", 1)])
            },
            Code::InvalidArgument,
            "",
        ),
    ];
    for (request, code, words) in cases {
        let e = admin.authorize_reservation(request).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(words), "{}", e.message());
    }
    let e = admin
        .return_reservation(pb::ReturnReservationRequest {
            return_code: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        authority.audit_len().await,
        audit_before,
        "nothing was written"
    );

    // One reservation per device at a time; the same request again answers the same code.
    let admin = &mut authority.admin;
    let first = admin
        .authorize_reservation(ask(
            "Acme",
            pb::ReservationKind::Specific,
            &[("PAR-TPS", 1)],
        ))
        .await
        .unwrap()
        .into_inner();
    let again = admin
        .authorize_reservation(ask(
            "Acme",
            pb::ReservationKind::Specific,
            &[("PAR-TPS", 1)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.authorization_code, again.authorization_code);
    let next = codes::make_request(&codes::Udi::new("CPAR", "X1").unwrap(), 2).unwrap();
    let e = admin
        .authorize_reservation(pb::AuthorizeReservationRequest {
            request_code: next,
            ..ask("Acme", pb::ReservationKind::Specific, &[("PAR-ADD-TPS", 1)])
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("must return it first"),
        "{}",
        e.message()
    );
}
