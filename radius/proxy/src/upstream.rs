//! An upstream server as the proxy sees it: its sockets, each with a table of the 256
//! Identifiers and the request waiting on each, and its health.
//!
//! Identifiers are handed out round-robin from where the last one was taken, so that an
//! Identifier freed by a timeout is reused as late as possible (a late answer to it then
//! matches nothing). When every Identifier of every socket is taken, another socket is
//! opened, up to [`MAX_SOCKETS`].
//!
//! Health: each request it fails to answer in time is a timeout; `max_timeouts` in a row
//! and it is marked down for `down_for`, during which the next upstream takes its traffic.
//! After that it is tried again, and its first valid answer marks it up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::socket::UdpSocket;

use crate::config::Upstream;

/// The most sockets per upstream: 16 x 256 requests outstanding.
pub const MAX_SOCKETS: usize = 16;

/// One socket and its Identifier table.
pub(crate) struct Slots {
    pub(crate) socket: Arc<UdpSocket>,
    waiting: Box<[Option<u64>; 256]>,
    used: usize,
    cursor: u8,
}

impl Slots {
    pub(crate) fn new(socket: Arc<UdpSocket>) -> Self {
        Self {
            socket,
            waiting: Box::new([None; 256]),
            used: 0,
            cursor: 0,
        }
    }

    /// Takes a free Identifier for request `serial`.
    fn take(&mut self, serial: u64) -> Option<u8> {
        if self.used == 256 {
            return None;
        }
        for _ in 0..256 {
            let id = self.cursor;
            self.cursor = self.cursor.wrapping_add(1);
            let slot = &mut self.waiting[usize::from(id)];
            if slot.is_none() {
                *slot = Some(serial);
                self.used += 1;
                return Some(id);
            }
        }
        None
    }

    fn free(&mut self, id: u8, serial: u64) {
        let slot = &mut self.waiting[usize::from(id)];
        if *slot == Some(serial) {
            *slot = None;
            self.used -= 1;
        }
    }

    fn get(&self, id: u8) -> Option<u64> {
        self.waiting[usize::from(id)]
    }
}

/// An upstream's state.
pub(crate) struct UpstreamState {
    pub(crate) config: Upstream,
    pub(crate) sockets: Vec<Slots>,
    timeouts_in_a_row: u32,
    down_until: Option<Instant>,
    /// Whether the gauge shows it up.
    pub(crate) shown_up: bool,
}

/// Where a request waits: the upstream, its socket and the Identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) upstream: usize,
    pub(crate) socket: usize,
    pub(crate) identifier: u8,
}

impl UpstreamState {
    pub(crate) fn new(config: Upstream) -> Self {
        Self {
            config,
            sockets: Vec::new(),
            timeouts_in_a_row: 0,
            down_until: None,
            shown_up: true,
        }
    }

    /// Whether it takes traffic now.
    pub(crate) fn is_up(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|until| now >= until)
    }

    /// When it comes back, if down.
    pub(crate) fn down_until(&self) -> Option<Instant> {
        self.down_until
    }

    /// Takes an Identifier on an existing socket; `None` when all are taken (open another
    /// with [`UpstreamState::add_socket`]).
    pub(crate) fn take(&mut self, upstream: usize, serial: u64) -> Option<Place> {
        self.sockets
            .iter_mut()
            .enumerate()
            .find_map(|(socket, slots)| {
                slots.take(serial).map(|identifier| Place {
                    upstream,
                    socket,
                    identifier,
                })
            })
    }

    pub(crate) fn add_socket(&mut self, socket: Arc<UdpSocket>) -> usize {
        self.sockets.push(Slots::new(socket));
        self.sockets.len() - 1
    }

    pub(crate) fn free(&mut self, place: Place, serial: u64) {
        if let Some(slots) = self.sockets.get_mut(place.socket) {
            slots.free(place.identifier, serial);
        }
    }

    /// The request waiting on an Identifier of a socket.
    pub(crate) fn waiting(&self, socket: usize, identifier: u8) -> Option<u64> {
        self.sockets.get(socket)?.get(identifier)
    }

    /// Whether a datagram from `from` can be this upstream's.
    pub(crate) fn is_source(&self, from: SocketAddr) -> bool {
        from == self.config.auth || from == self.config.acct
    }

    /// A valid answer: up again, no timeouts in a row. Answers whether that changed its
    /// gauge.
    pub(crate) fn answered(&mut self) -> bool {
        self.timeouts_in_a_row = 0;
        self.down_until = None;
        !std::mem::replace(&mut self.shown_up, true)
    }

    /// A timeout: answers whether it was marked down by it.
    pub(crate) fn timed_out(&mut self, now: Instant) -> bool {
        self.timeouts_in_a_row += 1;
        if self.timeouts_in_a_row >= self.config.max_timeouts && self.is_up(now) {
            self.down_until = Some(now + self.config.down_for);
            self.timeouts_in_a_row = 0;
            self.shown_up = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_go_round_and_are_freed_only_by_their_request() {
        let socket =
            Arc::new(crate::socket::bind("127.0.0.1:0".parse().unwrap(), 1 << 16).expect("bind"));
        let mut slots = Slots::new(socket);
        let ids: Vec<u8> = (0..256).map(|s| slots.take(s).expect("free")).collect();
        assert_eq!(ids, (0..=255).collect::<Vec<u8>>());
        assert_eq!(slots.take(999), None, "all 256 taken");
        slots.free(5, 4); // not its request
        assert_eq!(slots.get(5), Some(5));
        slots.free(5, 5);
        assert_eq!(slots.take(1000), Some(5));
        slots.free(7, 7);
        slots.free(3, 3);
        // From the cursor on: 7 comes before 3 is reused.
        assert_eq!(slots.take(1001), Some(7));
        assert_eq!(slots.take(1002), Some(3));
    }
}
