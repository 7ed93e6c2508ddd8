//! Duplicate detection and the reply cache (RFC 5080 §2.2.2): a request is the same as one
//! seen before when it comes from the same client address and source port with the same
//! Identifier and Request Authenticator. Such a retransmission is answered with the cached
//! reply, sent on again while the first is still waiting, or dropped again when the first
//! was dropped beyond the licence; it is never counted as a second transaction.
//!
//! Entries live for the cache's lifetime after their last change, except while a request is
//! outstanding, when they stay.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use entitle_radius_proxy::cache::{Key, ReplyCache, Seen};
//!
//! let mut cache = ReplyCache::new(Duration::from_secs(5));
//! let key = Key::new("127.0.0.1:4000".parse()?, 7, [1; 16]);
//! let now = Instant::now();
//! assert_eq!(cache.get(&key), None);
//! cache.set(key, Seen::Pending(1), now);
//! cache.set(key, Seen::Answered(b"reply".to_vec()), now);
//! assert_eq!(cache.get(&key), Some(&Seen::Answered(b"reply".to_vec())));
//! cache.expire(now + Duration::from_secs(6));
//! assert_eq!(cache.get(&key), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What identifies a request for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    from: SocketAddr,
    identifier: u8,
    authenticator: [u8; 16],
}

impl Key {
    /// The key of a request from `from`.
    pub fn new(from: SocketAddr, identifier: u8, authenticator: [u8; 16]) -> Self {
        Self {
            from,
            identifier,
            authenticator,
        }
    }
}

/// What became of a request seen before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Forwarded and waiting; the number is the outstanding request's.
    Pending(u64),
    /// Answered with these octets.
    Answered(Vec<u8>),
    /// Dropped beyond the licence.
    Dropped,
    /// No upstream answered; counted already, so a retransmission is forwarded uncounted.
    Failed,
}

struct Entry {
    seen: Seen,
    expires: Instant,
}

/// The cache.
pub struct ReplyCache {
    lifetime: Duration,
    /// foldhash's quality hasher, seeded per process: keys come from clients (after their
    /// authenticators verify), and SipHash was 8% of the packet path's instructions.
    entries: HashMap<Key, Entry, foldhash::quality::RandomState>,
    /// Keys in the order their entries last changed; every change pushes one.
    order: VecDeque<(Instant, Key)>,
}

impl ReplyCache {
    /// An empty cache keeping entries for `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            entries: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// What was seen of `key`.
    pub fn get(&self, key: &Key) -> Option<&Seen> {
        self.entries.get(key).map(|e| &e.seen)
    }

    /// Records what became of `key` at `now`.
    pub fn set(&mut self, key: Key, seen: Seen, now: Instant) {
        let expires = now + self.lifetime;
        self.entries.insert(key, Entry { seen, expires });
        self.order.push_back((expires, key));
    }

    /// Drops the entries whose lifetime ended by `now` (not those still pending).
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if let Some(entry) = self.entries.get(&key)
                && entry.expires <= now
                && !matches!(entry.seen, Seen::Pending(_))
            {
                self.entries.remove(&key);
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_entries_outlive_their_lifetime_and_changes_renew_it() {
        let mut cache = ReplyCache::new(Duration::from_secs(5));
        let now = Instant::now();
        let a = Key::new("127.0.0.1:1".parse().expect("address"), 1, [0; 16]);
        let b = Key::new("127.0.0.1:2".parse().expect("address"), 1, [0; 16]);
        cache.set(a, Seen::Pending(1), now);
        cache.set(b, Seen::Dropped, now);
        cache.expire(now + Duration::from_secs(10));
        assert_eq!(cache.get(&a), Some(&Seen::Pending(1)));
        assert_eq!(cache.get(&b), None);
        // Answered late: kept for a lifetime from then.
        cache.set(a, Seen::Answered(vec![1]), now + Duration::from_secs(10));
        cache.expire(now + Duration::from_secs(14));
        assert!(cache.get(&a).is_some());
        cache.expire(now + Duration::from_secs(15));
        assert!(cache.is_empty());
    }

    #[test]
    fn the_key_is_address_port_identifier_and_authenticator() {
        let from: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let key = Key::new(from, 1, [0; 16]);
        assert_ne!(
            key,
            Key::new("127.0.0.1:2".parse().expect("address"), 1, [0; 16])
        );
        assert_ne!(key, Key::new(from, 2, [0; 16]));
        assert_ne!(key, Key::new(from, 1, [1; 16]));
    }
}
