//! The packet path: one datagram in, at most one reply out, and one gate check for each
//! transaction.
//!
//! In order: the source address must be a listed client (else it is dropped as an unknown
//! client); the datagram must decode, be a request the server serves, and carry a
//! well-formed User-Password if any (else malformed); it must verify with the client's
//! secret under the client's Message-Authenticator policy (else a bad authenticator). Only
//! then, so that nothing forged or broken spends the licence, an Access-Request or an
//! Accounting-Request is one `check()` on the gate: refused, it is dropped or answered
//! Access-Reject (`--over-limit`); admitted, it is answered (Access-Accept for a listed
//! user with the right password, else Access-Reject; Accounting-Response). Status-Server is
//! answered Access-Accept and never counted by the gate (RFC 5997).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use entitle_engine::{CoarseClock, Entitlement, Gate};
use entitle_radius::attribute::{REPLY_MESSAGE, USER_NAME};
use entitle_radius::{Attribute, Code, Packet};

use super::clients::{Client, Clients};
use super::counters::{Count, Stats};
use super::users::Users;

/// What the Reply-Message of an over-licence Access-Reject says.
pub const OVER_LIMIT_MESSAGE: &str = "over the licensed rate; try again later";

/// What happens to a transaction the gate refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverLimit {
    /// Dropped silently, as FreeRADIUS's `max_pps` does: the client retries or fails over.
    #[default]
    Drop,
    /// An Access-Request is answered Access-Reject with a Reply-Message; an
    /// Accounting-Request is still dropped (RFC 2866 §2: no answer unless recorded).
    Reject,
}

impl FromStr for OverLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<OverLimit, String> {
        match s {
            "drop" => Ok(OverLimit::Drop),
            "reject" => Ok(OverLimit::Reject),
            _ => Err(format!("{s:?} is neither drop nor reject")),
        }
    }
}

/// The gate the packet path checks, and the entitlement each transaction spends.
#[derive(Clone)]
pub struct Licence {
    /// The gate: the process's own (standalone or attached) or the embedded sidecar's.
    pub gate: Arc<Gate<CoarseClock>>,
    /// The entitlement, such as `PAR-TPS`.
    pub entitlement: Entitlement,
}

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) clients: Clients,
    pub(crate) users: Users,
    pub(crate) over_limit: OverLimit,
    pub(crate) stats: Arc<Stats>,
}

/// A packet task's gate worker, the entitlement it checks, and the gate's clock, which it
/// brings up to the time of each check.
type Checker = (
    entitle_engine::Worker<CoarseClock>,
    Entitlement,
    CoarseClock,
);

/// One packet task's handler: its own gate worker (the gate's per-thread handle) and its
/// own counters.
pub struct Worker {
    shared: Arc<Shared>,
    gate: Option<Checker>,
    index: usize,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, licence: Option<&Licence>, index: usize) -> Worker {
        Worker {
            shared,
            gate: licence.map(|l| (l.gate.worker(), l.entitlement, l.gate.clock().clone())),
            index,
        }
    }

    /// Counts a reply as sent, or as failed to send.
    pub(crate) fn sent(&self, ok: bool) {
        let count = if ok { Count::Answered } else { Count::Failed };
        self.shared.stats.bump(self.index, count);
    }

    /// Handles one datagram from `from`; the reply to send back, if any.
    pub fn handle(&mut self, datagram: &[u8], from: IpAddr) -> Option<Vec<u8>> {
        Path {
            shared: &self.shared,
            gate: &mut self.gate,
            index: self.index,
        }
        .handle(datagram, from)
    }
}

/// One datagram's way through a worker (borrowing the shared state, so that the packet
/// path touches no reference count).
struct Path<'a> {
    shared: &'a Shared,
    gate: &'a mut Option<Checker>,
    index: usize,
}

impl Path<'_> {
    #[inline]
    fn count(&self, count: Count) {
        self.shared.stats.bump(self.index, count);
    }

    fn handle(mut self, datagram: &[u8], from: IpAddr) -> Option<Vec<u8>> {
        self.count(Count::Received);
        let shared = self.shared;
        let Some(client) = shared.clients.get(from) else {
            self.count(Count::UnknownClient);
            tracing::debug!(%from, "dropped: not a listed client");
            return None;
        };
        let request = match Packet::decode(datagram) {
            Ok(request) => request,
            Err(error) => {
                self.count(Count::Malformed);
                tracing::debug!(%from, %error, "dropped: malformed");
                return None;
            }
        };
        match request.code {
            Code::AccessRequest | Code::AccountingRequest | Code::StatusServer => {}
            code => {
                self.count(Count::Malformed);
                tracing::debug!(%from, code = code.name(), "dropped: not a request served here");
                return None;
            }
        }
        if let Err(error) = request.verify_request(client.secret(), client.policy()) {
            self.count(Count::BadAuthenticator);
            tracing::debug!(%from, %error, "dropped: does not verify with the client's secret");
            return None;
        }
        match request.code {
            Code::StatusServer => {
                self.count(Count::Status);
                self.answer(client, &request, Code::AccessAccept, None)
            }
            Code::AccessRequest => self.access(client, &request, from),
            _ => {
                if !self.admit() {
                    return None;
                }
                self.count(Count::Accounting);
                self.answer(client, &request, Code::AccountingResponse, None)
            }
        }
    }

    fn access(&mut self, client: &Client, request: &Packet, from: IpAddr) -> Option<Vec<u8>> {
        // Read the password before the gate, so a malformed one spends no licence.
        let password = match request.user_password(client.secret()) {
            Ok(password) => password,
            Err(error) => {
                self.count(Count::Malformed);
                tracing::debug!(%from, %error, "dropped: malformed User-Password");
                return None;
            }
        };
        if !self.admit() {
            return match self.shared.over_limit {
                OverLimit::Drop => None,
                OverLimit::Reject => self.answer(
                    client,
                    request,
                    Code::AccessReject,
                    Some(OVER_LIMIT_MESSAGE),
                ),
            };
        }
        let name = request.get(USER_NAME).map(|a| a.value.as_slice());
        let good = match (name, password) {
            (Some(name), Some(password)) => self.shared.users.check(name, &password),
            _ => false, // no User-Name, or not PAP (CHAP, EAP): not served here
        };
        if good {
            self.count(Count::Accepted);
            self.answer(client, request, Code::AccessAccept, None)
        } else {
            self.count(Count::Rejected);
            self.answer(client, request, Code::AccessReject, None)
        }
    }

    /// One check on the gate (none with `--no-gate`), counted.
    #[inline]
    fn admit(&mut self) -> bool {
        let admitted = match self.gate {
            Some((worker, entitlement, clock)) => {
                clock.catch_up(Instant::now());
                worker.check(*entitlement).is_admit()
            }
            None => true,
        };
        self.count(if admitted {
            Count::Admitted
        } else {
            Count::OverLimit
        });
        admitted
    }

    fn answer(
        &self,
        client: &Client,
        request: &Packet,
        code: Code,
        message: Option<&str>,
    ) -> Option<Vec<u8>> {
        let mut reply = request.reply(code);
        if let Some(message) = message {
            reply.push(Attribute::new(REPLY_MESSAGE, message));
        }
        match reply.encode_response(client.secret(), request) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                self.count(Count::Failed);
                tracing::debug!(%error, "no reply: it does not encode");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entitle_engine::Limit;
    use entitle_radius::Policy;
    use entitle_radius::attribute::ACCT_STATUS_TYPE;

    const SECRET: &[u8] = b"s3cret";

    fn worker(over_limit: OverLimit, licence: Option<&Licence>) -> (Worker, Arc<Stats>) {
        let stats = Arc::new(Stats::new(1));
        let shared = Arc::new(Shared {
            clients: Clients::parse(
                "127.0.0.1 s3cret\n127.0.0.2 s3cret require-message-authenticator",
            )
            .expect("clients"),
            users: Users::parse("alice:wonderland").expect("users"),
            over_limit,
            stats: Arc::clone(&stats),
        });
        (Worker::new(shared, licence, 0), stats)
    }

    fn access(id: u8, user: &str, password: &[u8], with_ma: bool) -> (Packet, Vec<u8>) {
        let mut request =
            Packet::new(Code::AccessRequest, id, [id; 16]).with(Attribute::new(USER_NAME, user));
        request
            .set_user_password(password, SECRET)
            .expect("password");
        let bytes = if with_ma {
            request.encode_request(SECRET).expect("encodes")
        } else {
            request.encode().expect("encodes")
        };
        (request, bytes)
    }

    fn reply_to(request: &Packet, bytes: &[u8]) -> Packet {
        let reply = Packet::decode(bytes).expect("decodes");
        reply
            .verify_response(SECRET, request, Policy::RequireMessageAuthenticator)
            .expect("a reply signed with the secret, with a Message-Authenticator");
        reply
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn pap_accept_reject_accounting_status() {
        let (mut w, stats) = worker(OverLimit::Drop, None);
        let (request, bytes) = access(1, "alice", b"wonderland", false);
        let reply = w.handle(&bytes, LOCAL).expect("answered");
        assert_eq!(reply_to(&request, &reply).code, Code::AccessAccept);
        let (request, bytes) = access(2, "alice", b"wonderlan", true);
        let reply = w.handle(&bytes, LOCAL).expect("answered");
        assert_eq!(reply_to(&request, &reply).code, Code::AccessReject);
        let (request, bytes) = access(3, "bob", b"wonderland", true);
        let reply = w.handle(&bytes, LOCAL).expect("answered");
        assert_eq!(reply_to(&request, &reply).code, Code::AccessReject);

        let mut acct = Packet::new(Code::AccountingRequest, 4, [0; 16])
            .with(Attribute::from_u32(ACCT_STATUS_TYPE, 1));
        let bytes = acct.encode_request(SECRET).expect("encodes");
        let reply = w.handle(&bytes, LOCAL).expect("answered");
        let reply = Packet::decode(&reply).expect("decodes");
        reply
            .verify_response(SECRET, &acct, Policy::default())
            .expect("verifies");
        assert_eq!(reply.code, Code::AccountingResponse);

        let mut status = Packet::new(Code::StatusServer, 5, [5; 16]);
        let bytes = status.encode_request(SECRET).expect("encodes");
        let reply = w.handle(&bytes, LOCAL).expect("answered");
        assert_eq!(reply_to(&status, &reply).code, Code::AccessAccept);

        let t = stats.totals();
        assert_eq!(
            (
                t.received,
                t.admitted,
                t.accepted,
                t.rejected,
                t.accounting,
                t.status
            ),
            (5, 4, 1, 2, 1, 1)
        );
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let (mut w, stats) = worker(OverLimit::Drop, None);
        let (_, good) = access(1, "alice", b"wonderland", false);
        assert!(w.handle(&good, "127.0.0.3".parse().expect("ip")).is_none());
        assert!(w.handle(&good[..19], LOCAL).is_none());
        assert!(
            w.handle(&good, "127.0.0.2".parse().expect("ip")).is_none(),
            "this client requires a Message-Authenticator"
        );
        let mut forged = good.clone();
        forged[0] = 2; // an Access-Accept sent to the server
        assert!(w.handle(&forged, LOCAL).is_none());
        let mut acct = Packet::new(Code::AccountingRequest, 4, [0; 16]);
        let mut bytes = acct.encode_request(SECRET).expect("encodes");
        bytes[4] ^= 1;
        assert!(w.handle(&bytes, LOCAL).is_none());
        let t = stats.totals();
        assert_eq!(
            (
                t.received,
                t.unknown_client,
                t.malformed,
                t.bad_authenticator,
                t.admitted
            ),
            (5, 1, 2, 2, 0)
        );
    }

    #[test]
    fn over_the_licence_drop_or_reject() {
        let mut builder = Gate::builder(CoarseClock::new().expect("clock"));
        let entitlement = builder
            .register(
                "PAR-TPS",
                Limit::new(1, 2, entitle_engine::Policy::Hard).expect("limit"),
            )
            .expect("registered");
        let licence = Licence {
            gate: builder.build(),
            entitlement,
        };
        let (mut w, stats) = worker(OverLimit::Reject, Some(&licence));
        let mut codes = Vec::new();
        for id in 0..10 {
            let (request, bytes) = access(id, "alice", b"wonderland", true);
            let reply = reply_to(&request, &w.handle(&bytes, LOCAL).expect("answered"));
            let message = reply.get(REPLY_MESSAGE).map(|a| a.value.clone());
            codes.push((reply.code, message));
        }
        let accepted = codes.iter().filter(|c| c.0 == Code::AccessAccept).count();
        assert!((2..=3).contains(&accepted), "the burst of 2: {codes:?}");
        assert!(codes.contains(&(
            Code::AccessReject,
            Some(OVER_LIMIT_MESSAGE.as_bytes().to_vec())
        )));
        let t = stats.totals();
        assert_eq!(t.admitted, accepted as u64);
        assert_eq!(t.admitted + t.over_limit, 10);
        let usage = licence.gate.snapshot();
        let usage = usage.usage("PAR-TPS").expect("registered");
        assert_eq!((usage.admitted, usage.rejected), (t.admitted, t.over_limit));

        let (mut w, _) = worker(OverLimit::Drop, Some(&licence));
        let (_, bytes) = access(1, "alice", b"wonderland", true);
        let answered = (0..20)
            .filter(|_| w.handle(&bytes, LOCAL).is_some())
            .count();
        assert!(answered < 20, "dropped over the licence");
    }

    #[test]
    fn each_check_sees_its_own_time_not_the_last_tick() {
        // 1,000/s with a burst of 1: one token a millisecond. The clock ticks every
        // 10 ms (`CLOCK_PERIOD`), so a check 2 ms after the last admit finds a token only
        // if it brought the clock up to its own time.
        let licensed = crate::radius_server::Licensed::standalone(1_000, 1).expect("licensed");
        let (mut w, stats) = worker(OverLimit::Reject, Some(&licensed.licence));
        let (request, bytes) = access(1, "alice", b"wonderland", true);
        for round in 0..5 {
            for _ in 0..3 {
                w.handle(&bytes, LOCAL).expect("answered");
            }
            let t = stats.totals();
            assert_eq!(t.admitted, round + 1, "the burst of 1, then refused");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let reply = reply_to(&request, &w.handle(&bytes, LOCAL).expect("answered"));
        assert_eq!(reply.code, Code::AccessAccept, "a token 2 ms later");
    }

    #[test]
    fn over_limit_parses() {
        assert_eq!("drop".parse(), Ok(OverLimit::Drop));
        assert_eq!("reject".parse(), Ok(OverLimit::Reject));
        assert!("Drop".parse::<OverLimit>().is_err());
    }
}
