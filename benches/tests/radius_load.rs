//! The load generator against small responders of the test's own on 127.0.0.1: every
//! request is sent and accounted for once (answered or dropped), answers are checked
//! against their requests, and a forged answer is not counted as answered.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use entitle_benches::radius_load::{self, Kind, LoadSpec};
use entitle_radius::{Code, Packet, Policy};

const SECRET: &[u8] = b"testing123";

/// How the responder treats request number `n`.
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    /// Answers only the even ones.
    EveryOther,
    /// Answers with a Response Authenticator made with the wrong secret.
    Forged,
}

struct Responder {
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Responder {
    fn start(answer: Answer) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let address = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut seen = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let request = Packet::decode(&buf[..n]).unwrap();
                request
                    .verify_request(SECRET, Policy::RequireMessageAuthenticator)
                    .unwrap();
                seen += 1;
                let code = if request.code == Code::AccessRequest {
                    assert_eq!(
                        request.user_password(SECRET).unwrap().as_deref(),
                        Some(&b"hello"[..])
                    );
                    Code::AccessAccept
                } else {
                    Code::AccountingResponse
                };
                let secret: &[u8] = match answer {
                    Answer::EveryOther if seen % 2 == 1 => continue,
                    Answer::Forged => b"not the secret",
                    _ => SECRET,
                };
                let reply = request
                    .reply(code)
                    .encode_response(secret, &request)
                    .unwrap();
                socket.send_to(&reply, from).unwrap();
            }
            seen
        });
        Responder {
            address,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it and returns how many requests it saw.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn spec(responder: &Responder, rate: u64) -> LoadSpec {
    let mut spec = LoadSpec::new(responder.address, SECRET, rate, Duration::from_millis(500));
    spec.timeout = Duration::from_millis(300);
    spec
}

#[test]
fn every_request_is_sent_once_and_every_answer_counted() {
    let responder = Responder::start(Answer::Accept);
    let report = radius_load::run(&spec(&responder, 2_000)).unwrap();
    let seen = responder.stop();
    assert_eq!(report.offered, 1_000, "rate x duration requests");
    assert_eq!(seen, report.offered, "the responder saw each request once");
    assert_eq!(report.answered + report.dropped, report.offered);
    assert_eq!(report.accepts, report.answered);
    assert_eq!(report.invalid, 0);
    assert_eq!(
        report.seconds.iter().map(|s| s.offered).sum::<u64>(),
        report.offered
    );
    assert_eq!(report.latency.len(), report.answered);
}

#[test]
fn unanswered_requests_count_as_dropped() {
    let responder = Responder::start(Answer::EveryOther);
    let report = radius_load::run(&spec(&responder, 1_000)).unwrap();
    responder.stop();
    assert_eq!(report.offered, 500);
    assert_eq!(report.answered, 250, "the even ones");
    assert_eq!(report.dropped, 250, "the odd ones, after the timeout");
    assert!(!report.held());
}

#[test]
fn forged_answers_are_not_counted_as_answered() {
    let responder = Responder::start(Answer::Forged);
    let report = radius_load::run(&spec(&responder, 1_000)).unwrap();
    responder.stop();
    assert_eq!(report.answered, 0);
    assert_eq!(report.invalid, report.offered);
    assert_eq!(report.dropped, report.offered);
}

#[test]
fn accounting_requests_are_answered_and_checked() {
    let responder = Responder::start(Answer::Accept);
    let mut spec = spec(&responder, 1_000);
    spec.kind = Kind::Accounting;
    let report = radius_load::run(&spec).unwrap();
    responder.stop();
    assert_eq!(report.offered, 500);
    assert_eq!(report.answered + report.dropped, 500);
    assert_eq!(report.invalid, 0);
    assert!(report.answered > 0);
}

#[test]
fn bad_specs_are_refused() {
    let responder = Responder::start(Answer::Accept);
    for bad in [
        LoadSpec {
            rate: 0,
            ..spec(&responder, 1)
        },
        LoadSpec {
            sockets: 0,
            ..spec(&responder, 1)
        },
        LoadSpec {
            secret: Vec::new(),
            ..spec(&responder, 1)
        },
    ] {
        assert!(radius_load::run(&bad).is_err());
    }
    responder.stop();
}

#[test]
fn the_picture_is_an_svg_of_the_run() {
    let responder = Responder::start(Answer::Accept);
    let report = radius_load::run(&spec(&responder, 1_000)).unwrap();
    responder.stop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.svg");
    radius_load::write_svg(&report, "test run", &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("offered") && svg.contains("p99"));
}
