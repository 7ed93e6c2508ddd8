//! Loopback ports: a free one for a new server, and whether a server still accepts on one.
//!
//! A free port is found by binding `127.0.0.1:0` and closing the socket again, so another
//! process may take it before the server binds it; the cluster retries with a new port when
//! the server cannot bind. Within this process no port is handed out twice, so clusters
//! started at once by parallel tests never race each other for one.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// Every port handed out by this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and that this process has not handed out.
pub(crate) fn pick() -> io::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        // A poisoned lock still holds a good set: the insert below cannot half-happen.
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::other("no unused loopback port in 100 tries"))
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_twice() {
        let ports: Vec<u16> = (0..50).map(|_| pick().expect("a port")).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn accepts_sees_a_listener() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(accepts(port));
        drop(listener);
        assert!(!accepts(port));
    }
}
