//! The packet path: one thread owns the clients, the upstreams, the outstanding requests
//! and the reply cache, reads each socket its loop finds readable (a batch at a time,
//! [`crate::batch`]) and handles each datagram to completion. No locks, no queues; one gate
//! worker.
//!
//! A request from a client, in order:
//! 1. its source address must be a client's ([`Reason::UnknownClient`]);
//! 2. it must decode strictly ([`Reason::Malformed`]) and be a request
//!    ([`Reason::UnexpectedCode`]);
//! 3. its authenticators must verify with the client's secret, and an Access-Request carry a
//!    Message-Authenticator if the client must send one ([`Reason::BadAuthenticator`],
//!    [`Reason::MissingMessageAuthenticator`]);
//! 4. a Status-Server is answered by the proxy itself, never counted;
//! 5. a retransmission (same address, port, Identifier, authenticator) is answered from the
//!    cache, sent on again, or dropped again, never counted twice;
//! 6. one check on the gate per counted request; beyond the licence an Access-Request is
//!    dropped (or rejected), an Accounting-Request is forwarded in `count` mode;
//! 7. forwarded to the first upstream that is up, with a fresh Identifier, a random Request
//!    Authenticator, the User-Password hidden again, our own Proxy-State last, and a
//!    Message-Authenticator computed with the upstream's secret (in Accounting-Requests
//!    too). A CHAP-Password without CHAP-Challenge gets the client's authenticator as
//!    CHAP-Challenge, since the authenticator changes.
//!
//! An answer from an upstream must come from its address, match an outstanding request by
//! socket, Identifier and our Proxy-State, and verify against what was sent with the
//! upstream's secret. Then our Proxy-State comes off, the client's Identifier goes back,
//! and it is signed for the client (Message-Authenticator included) against the client's
//! request, sent, and cached. A request is answered at most once: the outstanding entry is
//! removed as its answer goes.
//!
//! Without an answer in the upstream's timeout, the request goes to the next upstream, each
//! tried once; after the last, it is given up ([`Reason::UpstreamFailed`]) and a
//! retransmission from the client starts again, uncounted.
//!
//! Not handled: attributes a reply hides with the request's authenticator
//! (Tunnel-Password, MS-MPPE-Send/Recv-Key) are relayed as they are, so they reach the
//! client hidden with the wrong authenticator; EAP methods that need them (PEAP, TTLS key
//! material) do not work through the proxy yet.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entitle_engine::{CoarseClock, Entitlement, Worker};
use entitle_radius::attribute::{
    Attribute, CHAP_CHALLENGE, CHAP_PASSWORD, MESSAGE_AUTHENTICATOR, REPLY_MESSAGE,
};
use entitle_radius::{Code, Error as CodecError, Packet, Policy, RequestContext};
use mio::{Interest, Registry, Token};

use crate::batch::Batch;
use crate::cache::{Key, ReplyCache, Seen};
use crate::config::{Client, CountMode, Counting, OverLicence};
use crate::metrics::{Metrics, Reason};
use crate::ratelog::RateLog;
use crate::socket::UdpSocket;
use crate::upstream::{MAX_SOCKETS, Place, UpstreamState};

/// The tokens the sockets are registered with: a listener's is its index, an upstream
/// socket's [`upstream_token`]; [`WAKER`] is the stop signal's.
pub(crate) const WAKER: Token = Token(usize::MAX);
const FIRST_UPSTREAM_TOKEN: usize = 1 << 20;

/// The token of socket `number` to upstream `upstream`.
fn upstream_token(upstream: usize, number: usize) -> Token {
    Token(FIRST_UPSTREAM_TOKEN + upstream * MAX_SOCKETS + number)
}

/// A request forwarded and waiting for its answer.
struct Pending {
    key: Key,
    listener: usize,
    client: usize,
    from: SocketAddr,
    original: RequestContext,
    /// The client's request without its Message-Authenticator, ready to be re-signed.
    packet: Packet,
    password: Option<Vec<u8>>,
    /// Where it waits now, and what was sent there.
    place: Option<Place>,
    sent: RequestContext,
    datagram: Vec<u8>,
    state: Vec<u8>,
    attempt: u32,
    tried: u64,
}

/// The packet path's state.
pub(crate) struct Relay {
    pub(crate) clients: Vec<Client>,
    pub(crate) listeners: Vec<Arc<UdpSocket>>,
    pub(crate) upstreams: Vec<UpstreamState>,
    /// Where the sockets opened later are registered.
    registry: Registry,
    /// Keyed by our own serials, so the fast hasher.
    pending: HashMap<u64, Pending, foldhash::fast::RandomState>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    cache: ReplyCache,
    worker: Worker<CoarseClock>,
    /// The gate's clock, brought up to each datagram's time before its check.
    clock: CoarseClock,
    entitlement: Entitlement,
    counting: Counting,
    over_licence: OverLicence,
    metrics: Arc<Metrics>,
    log: RateLog,
    random: Random,
    next_serial: u64,
    instance: [u8; 4],
    socket_buffer: usize,
}

/// What [`Relay::new`] needs.
pub(crate) struct Parts {
    pub(crate) clients: Vec<Client>,
    pub(crate) listeners: Vec<Arc<UdpSocket>>,
    pub(crate) upstreams: Vec<UpstreamState>,
    pub(crate) registry: Registry,
    pub(crate) reply_cache: Duration,
    pub(crate) worker: Worker<CoarseClock>,
    pub(crate) clock: CoarseClock,
    pub(crate) entitlement: Entitlement,
    pub(crate) counting: Counting,
    pub(crate) over_licence: OverLicence,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) socket_buffer: usize,
}

impl Relay {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            clients: parts.clients,
            listeners: parts.listeners,
            upstreams: parts.upstreams,
            registry: parts.registry,
            pending: HashMap::default(),
            deadlines: BinaryHeap::new(),
            cache: ReplyCache::new(parts.reply_cache),
            clock: parts.clock,
            worker: parts.worker,
            entitlement: parts.entitlement,
            counting: parts.counting,
            over_licence: parts.over_licence,
            metrics: parts.metrics,
            log: RateLog::new(Duration::from_secs(1)),
            next_serial: 1,
            instance: Random::default()
                .take()
                .map_or([0x65, 0x6e, 0x74, 0x69], |r| [r[0], r[1], r[2], r[3]]),
            random: Random::default(),
            socket_buffer: parts.socket_buffer,
        }
    }

    /// Reads a batch from the socket registered as `token` and handles what came. `true`
    /// when the socket may have more (its batch came back full, or the read failed): the
    /// loop reads it again after the other sockets have had their turn.
    pub(crate) fn receive(&mut self, token: Token, batch: &mut Batch) -> bool {
        let Token(index) = token;
        if let Some(socket) = self.listeners.get(index) {
            let socket = Arc::clone(socket);
            return self.receive_from(&socket, batch, |relay, from, data, now| {
                relay.on_client(index, from, data, now)
            });
        }
        let Some(index) = index.checked_sub(FIRST_UPSTREAM_TOKEN) else {
            return false;
        };
        let (upstream, number) = (index / MAX_SOCKETS, index % MAX_SOCKETS);
        let Some(slots) = self
            .upstreams
            .get(upstream)
            .and_then(|u| u.sockets.get(number))
        else {
            return false;
        };
        let socket = Arc::clone(&slots.socket);
        self.receive_from(&socket, batch, |relay, from, data, now| {
            relay.on_upstream(upstream, number, from, data, now)
        })
    }

    /// One batch from `socket`, each datagram handled to completion.
    fn receive_from(
        &mut self,
        socket: &UdpSocket,
        batch: &mut Batch,
        mut handle: impl FnMut(&mut Self, SocketAddr, &[u8], Instant),
    ) -> bool {
        match batch.read(socket) {
            Ok(full) => {
                let now = Instant::now();
                for (data, from) in batch.datagrams() {
                    handle(self, from, data, now);
                }
                // A short batch means the queue was empty: the next datagram is a new event.
                full
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            // ICMP errors and the like: the socket goes on, read again after the others, so
            // an error that repeats cannot hold them up.
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                true
            }
        }
    }

    /// Opens one more socket to upstream `index`.
    pub(crate) fn open_socket(&mut self, index: usize) -> std::io::Result<usize> {
        let peer = self.upstreams[index].config.auth;
        let mut socket = crate::socket::bind(crate::socket::any_for(peer), self.socket_buffer)?;
        let number = self.upstreams[index].sockets.len();
        // Registered before anything is sent on it, so no answer comes before its event.
        self.registry.register(
            &mut socket,
            upstream_token(index, number),
            Interest::READABLE,
        )?;
        Ok(self.upstreams[index].add_socket(Arc::new(socket)))
    }

    fn drop_packet(&mut self, reason: Reason, now: Instant, detail: impl FnOnce() -> String) {
        self.metrics.count(reason);
        if let Some(left_out) = self.log.admit(reason, now) {
            tracing::warn!(reason = reason.as_str(), left_out, "dropped: {}", detail());
        }
    }

    fn on_client(&mut self, listener: usize, from: SocketAddr, data: &[u8], now: Instant) {
        let Some(client) = self
            .clients
            .iter()
            .position(|c| c.network.contains(from.ip()))
        else {
            return self.drop_packet(Reason::UnknownClient, now, || {
                format!("a packet from {from}, which is no client")
            });
        };
        let request = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => {
                return self.drop_packet(Reason::Malformed, now, || {
                    format!("a malformed packet from {from}: {e}")
                });
            }
        };
        if !matches!(
            request.code,
            Code::AccessRequest | Code::AccountingRequest | Code::StatusServer
        ) {
            return self.drop_packet(Reason::UnexpectedCode, now, || {
                format!("{} from client {from}", request.code)
            });
        }
        let secret = &self.clients[client].secret;
        let policy = match self.clients[client].require_message_authenticator {
            true => Policy::RequireMessageAuthenticator,
            false => Policy::AllowMissingMessageAuthenticator,
        };
        if let Err(e) = request.verify_request(secret, policy) {
            let reason = match e {
                CodecError::MissingMessageAuthenticator(_) => Reason::MissingMessageAuthenticator,
                CodecError::BadMessageAuthenticator | CodecError::BadAuthenticator(_) => {
                    Reason::BadAuthenticator
                }
                _ => Reason::Malformed,
            };
            return self.drop_packet(reason, now, || format!("{} from {from}: {e}", request.code));
        }
        if request.code == Code::StatusServer {
            // The proxy answers for itself (RFC 5997 §4): it is alive.
            let mut reply = request.reply(Code::AccessAccept);
            if let Ok(bytes) = reply.encode_response(secret, &request) {
                self.send_to_client(listener, from, &bytes);
            }
            self.metrics.count(Reason::StatusServer);
            return;
        }
        let password = match request.code {
            Code::AccessRequest => match request.user_password(secret.as_bytes()) {
                Ok(p) => p,
                Err(e) => {
                    return self.drop_packet(Reason::Malformed, now, || {
                        format!("User-Password from {from}: {e}")
                    });
                }
            },
            _ => None,
        };
        let key = Key::new(from, request.identifier, request.authenticator);
        match self.cache.get(&key) {
            Some(Seen::Answered(bytes)) => {
                let bytes = bytes.clone();
                self.send_to_client(listener, from, &bytes);
                self.metrics.count(Reason::DuplicateAnsweredFromCache);
                return;
            }
            Some(Seen::Pending(serial)) => {
                let serial = *serial;
                self.resend(serial);
                self.metrics.count(Reason::RetransmissionForwarded);
                return;
            }
            Some(Seen::Dropped) => {
                self.metrics.count(Reason::RetransmissionDropped);
                return;
            }
            // Counted before; forwarded again, uncounted.
            Some(Seen::Failed) => self.metrics.count(Reason::RetransmissionForwarded),
            None => {
                let mode = match request.code {
                    Code::AccessRequest => self.counting.access,
                    _ => self.counting.accounting,
                };
                let reason = match mode {
                    CountMode::Off => Reason::Uncounted,
                    _ if self.admit(now) => Reason::Admitted,
                    CountMode::Count => Reason::OverLicenceForwarded,
                    CountMode::Enforce => {
                        return self.over_licence(listener, client, from, key, &request, now);
                    }
                };
                self.metrics.count(reason);
            }
        }
        let original = RequestContext::from(&request);
        let mut packet = request;
        packet.remove_all(MESSAGE_AUTHENTICATOR);
        if packet.get(CHAP_PASSWORD).is_some() && packet.get(CHAP_CHALLENGE).is_none() {
            packet.push(Attribute::new(CHAP_CHALLENGE, original.authenticator));
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut state = Vec::with_capacity(12);
        state.extend_from_slice(&self.instance);
        state.extend_from_slice(&serial.to_be_bytes());
        let pending = Pending {
            key,
            listener,
            client,
            from,
            original,
            packet,
            password,
            place: None,
            sent: original,
            datagram: Vec::new(),
            state,
            attempt: 0,
            tried: 0,
        };
        self.pending.insert(serial, pending);
        self.cache.set(key, Seen::Pending(serial), now);
        self.dispatch(serial, now);
    }

    /// One check on the gate, at `now`: the clock ticks slowly (see `licence::CLOCK_PERIOD`)
    /// and is caught up here instead.
    fn admit(&mut self, now: Instant) -> bool {
        self.clock.catch_up(now);
        self.worker.check(self.entitlement).is_admit()
    }

    fn over_licence(
        &mut self,
        listener: usize,
        client: usize,
        from: SocketAddr,
        key: Key,
        request: &Packet,
        now: Instant,
    ) {
        match (&self.over_licence, request.code) {
            (OverLicence::Reject(message), Code::AccessRequest) => {
                let mut reply = request.reply(Code::AccessReject);
                if let Some(message) = message {
                    reply.push(Attribute::new(REPLY_MESSAGE, message.as_bytes()));
                }
                match reply.encode_response(&self.clients[client].secret, request) {
                    Ok(bytes) => {
                        self.send_to_client(listener, from, &bytes);
                        self.cache.set(key, Seen::Answered(bytes), now);
                    }
                    Err(_) => self.cache.set(key, Seen::Dropped, now),
                }
                self.metrics.count(Reason::OverLicenceRejected);
            }
            _ => {
                self.cache.set(key, Seen::Dropped, now);
                self.metrics.count(Reason::OverLicenceDropped);
            }
        }
    }

    /// Picks an upstream for `serial` and sends it there; gives up when there is no room or
    /// it cannot be encoded.
    fn dispatch(&mut self, serial: u64, now: Instant) {
        let Some(tried) = self.pending.get(&serial).map(|p| p.tried) else {
            return;
        };
        let untried = |i: usize| tried & (1u64 << (i % 64)) == 0;
        let upstream = (0..self.upstreams.len())
            .find(|&i| untried(i) && self.upstreams[i].is_up(now))
            .or_else(|| (0..self.upstreams.len()).find(|&i| self.upstreams[i].is_up(now)))
            .or_else(|| (0..self.upstreams.len()).min_by_key(|&i| self.upstreams[i].down_until()));
        let Some(upstream) = upstream else {
            return self.give_up(serial, Reason::ForwardFailed, now);
        };
        let place = match self.upstreams[upstream].take(upstream, serial) {
            Some(place) => Some(place),
            None if self.upstreams[upstream].sockets.len() < MAX_SOCKETS => {
                match self.open_socket(upstream) {
                    Ok(_) => self.upstreams[upstream].take(upstream, serial),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open a socket to an upstream");
                        None
                    }
                }
            }
            None => None,
        };
        let Some(place) = place else {
            return self.give_up(serial, Reason::ForwardFailed, now);
        };
        let config = &self.upstreams[upstream].config;
        let (secret, to, timeout) = (&config.secret, config.auth, config.timeout);
        let acct = config.acct;
        let Some(pending) = self.pending.get_mut(&serial) else {
            return;
        };
        let encoded = self
            .random
            .take()
            .ok_or(None::<CodecError>)
            .and_then(|authenticator| {
                // Made from the kept request in place and put back after, not from a copy
                // (the request's two copies were 7% of the packet path's instructions):
                // what stays changed (Identifier, authenticator, the password hidden for
                // this upstream) is set afresh by the next dispatch.
                let forward = &mut pending.packet;
                forward.identifier = place.identifier;
                forward.authenticator = authenticator;
                if let Some(password) = &pending.password {
                    forward
                        .set_user_password(password, secret.as_bytes())
                        .map_err(Some)?;
                }
                forward.push_proxy_state(pending.state.clone());
                if forward.code == Code::AccountingRequest {
                    // Computed by encode_request, before the Request Authenticator.
                    forward
                        .attributes
                        .insert(0, Attribute::new(MESSAGE_AUTHENTICATOR, [0; 16]));
                }
                let datagram = forward.encode_request(secret);
                let sent = RequestContext::from(&*forward);
                // The kept request has no Message-Authenticator and its Proxy-State last.
                forward.remove_all(MESSAGE_AUTHENTICATOR);
                forward.pop_proxy_state();
                Ok((sent, datagram.map_err(Some)?))
            });
        let (sent, datagram) = match encoded {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = ?e, "cannot sign a request for an upstream");
                self.upstreams[upstream].free(place, serial);
                return self.give_up(serial, Reason::ForwardFailed, now);
            }
        };
        let to = match sent.code {
            Code::AccountingRequest => acct,
            _ => to,
        };
        pending.place = Some(place);
        pending.sent = sent;
        pending.datagram = datagram;
        pending.attempt += 1;
        pending.tried |= 1u64 << (upstream % 64);
        self.deadlines
            .push(Reverse((now + timeout, serial, pending.attempt)));
        let socket = &self.upstreams[upstream].sockets[place.socket].socket;
        if let Err(e) = crate::socket::send_now(socket, &pending.datagram, to) {
            // Left to the timeout, as a lost datagram would be.
            tracing::debug!(error = %e, "send to an upstream failed");
        }
    }

    /// Sends an outstanding request again, where it waits.
    fn resend(&mut self, serial: u64) {
        let Some(pending) = self.pending.get(&serial) else {
            return;
        };
        let Some(place) = pending.place else { return };
        let upstream = &self.upstreams[place.upstream];
        let to = match pending.sent.code {
            Code::AccountingRequest => upstream.config.acct,
            _ => upstream.config.auth,
        };
        let _ = crate::socket::send_now(
            &upstream.sockets[place.socket].socket,
            &pending.datagram,
            to,
        );
    }

    fn give_up(&mut self, serial: u64, reason: Reason, now: Instant) {
        if let Some(pending) = self.pending.remove(&serial) {
            if let Some(place) = pending.place {
                self.upstreams[place.upstream].free(place, serial);
            }
            self.cache.set(pending.key, Seen::Failed, now);
            self.drop_packet(reason, now, || {
                format!(
                    "no upstream answered {} {} from {}",
                    pending.original.code, pending.original.identifier, pending.from
                )
            });
        }
    }

    fn on_upstream(
        &mut self,
        upstream: usize,
        socket: usize,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        if !self.upstreams[upstream].is_source(from) {
            return self.drop_packet(Reason::UpstreamUnknownSource, now, || {
                format!("a datagram from {from} on a socket to an upstream")
            });
        }
        let mut reply = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => {
                return self.drop_packet(Reason::UpstreamReplyBad, now, || {
                    format!("a malformed reply from upstream {from}: {e}")
                });
            }
        };
        let serial = self.upstreams[upstream].waiting(socket, reply.identifier);
        let matched = serial.and_then(|s| self.pending.get(&s).map(|p| (s, p)));
        let Some((serial, pending)) = matched.filter(|(_, p)| {
            p.place
                .is_some_and(|place| place.upstream == upstream && place.socket == socket)
                && reply.last_proxy_state() == Some(p.state.as_slice())
        }) else {
            return self.drop_packet(Reason::UpstreamReplyUnmatched, now, || {
                format!("a reply from {from} that matches no request (late?)")
            });
        };
        let config = &self.upstreams[upstream].config;
        let policy = match config.require_message_authenticator {
            true => Policy::RequireMessageAuthenticator,
            false => Policy::AllowMissingMessageAuthenticator,
        };
        if let Err(e) = reply.verify_response(&config.secret, pending.sent, policy) {
            let _ = serial;
            return self.drop_packet(Reason::UpstreamReplyBad, now, || {
                format!("a reply from upstream {from} that does not verify: {e}")
            });
        }
        let Some(pending) = self.pending.remove(&serial) else {
            return;
        };
        if let Some(place) = pending.place {
            self.upstreams[upstream].free(place, serial);
        }
        if self.upstreams[upstream].answered() {
            let name = self.upstreams[upstream].config.name.clone();
            self.metrics.set_up(&name, true);
            tracing::info!(upstream = %name, "upstream answers again: up");
        }
        reply.pop_proxy_state();
        reply.identifier = pending.original.identifier;
        reply.remove_all(MESSAGE_AUTHENTICATOR);
        if reply.code == Code::AccountingResponse {
            reply
                .attributes
                .insert(0, Attribute::new(MESSAGE_AUTHENTICATOR, [0; 16]));
        }
        match reply.encode_response(&self.clients[pending.client].secret, pending.original) {
            Ok(bytes) => {
                self.send_to_client(pending.listener, pending.from, &bytes);
                self.cache.set(pending.key, Seen::Answered(bytes), now);
                self.metrics.count(Reason::ReplyRelayed);
            }
            Err(e) => {
                self.cache.set(pending.key, Seen::Failed, now);
                self.drop_packet(Reason::ForwardFailed, now, || {
                    format!("cannot re-sign a reply for {}: {e}", pending.from)
                });
            }
        }
    }

    /// Timeouts and cache expiry; returns when the next deadline is due.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.cache.expire(now);
        while let Some(&Reverse((deadline, serial, attempt))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(pending) = self.pending.get(&serial) else {
                continue;
            };
            if pending.attempt != attempt {
                continue;
            }
            let Some(place) = pending.place else { continue };
            let upstream = &mut self.upstreams[place.upstream];
            upstream.free(place, serial);
            let name = upstream.config.name.clone();
            self.metrics.timeout(&name);
            if upstream.timed_out(now) {
                self.metrics.set_up(&name, false);
                tracing::warn!(upstream = %name, "upstream marked down after its timeouts");
            }
            if let Some(p) = self.pending.get_mut(&serial) {
                p.place = None;
            }
            let tries = u32::try_from(self.upstreams.len())
                .unwrap_or(u32::MAX)
                .max(1);
            if attempt < tries {
                self.dispatch(serial, now);
            } else {
                self.give_up(serial, Reason::UpstreamFailed, now);
            }
        }
    }

    fn send_to_client(&self, listener: usize, to: SocketAddr, bytes: &[u8]) {
        if let Err(e) = crate::socket::send_now(&self.listeners[listener], bytes, to) {
            tracing::debug!(error = %e, %to, "send to a client failed");
        }
    }

    /// Requests outstanding now.
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

/// Request Authenticators from the operating system's generator, 256 to a system call: one
/// call per forwarded request was a tenth of the packet path's system calls.
struct Random {
    pool: Box<[u8; RANDOM_POOL]>,
    /// Octets of `pool` already handed out.
    used: usize,
}

const RANDOM_POOL: usize = 4096;

impl Default for Random {
    fn default() -> Self {
        Random {
            pool: Box::new([0; RANDOM_POOL]),
            used: RANDOM_POOL,
        }
    }
}

impl Random {
    /// 16 random octets, each handed out once; `None` if the system has none to give.
    fn take(&mut self) -> Option<[u8; 16]> {
        if self.used == RANDOM_POOL {
            getrandom::fill(&mut self.pool[..]).ok()?;
            self.used = 0;
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.pool[self.used..self.used + 16]);
        // Wiped as it goes, so a later dump of the pool shows nothing already used.
        self.pool[self.used..self.used + 16].fill(0);
        self.used += 16;
        Some(bytes)
    }
}
