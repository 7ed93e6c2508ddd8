//! UDP sockets with receive and send buffers sized for bursts: the kernel's defaults (about
//! 200 KiB) overflow with a few hundred requests in flight, and an overflow is a silent
//! drop. The kernel may cap the size (`net.core.rmem_max`); what it grants is logged.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A UDP socket of the packet path, registered with the runtime for reading only. tokio's
/// `UdpSocket` registers for writing too, and then every datagram sent on loopback (whose
/// buffer frees at once) brought an `EPOLLOUT` event of no use: at 3,000 requests/s the
/// packet path made 3.5 `epoll_wait` calls a request where its two sleeps need 2.
pub type UdpSocket = AsyncFd<std::net::UdpSocket>;

/// Binds a non-blocking UDP socket on `address` with `buffer` octets each way, registered
/// with the current runtime for reading.
pub fn bind(address: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: a smaller buffer than asked still works.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    if address.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    tracing::debug!(
        %address,
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "socket bound"
    );
    // Deprecated in tokio 1.54 because it cannot be sure that `T`'s descriptor stays open
    // and the same; the replacement is `unsafe`, which this crate forbids. A
    // `std::net::UdpSocket` owns its descriptor until it is dropped, with the `AsyncFd`.
    #[allow(deprecated)]
    AsyncFd::with_interest(socket.into(), Interest::READABLE)
}

/// The unspecified address of `peer`'s family, port 0: where a socket to `peer` binds.
pub fn any_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// Sends `bytes` to `to` at once, one system call. (tokio's `UdpSocket::try_send_to`
/// refused without trying until its driver had seen the socket writable, so on a socket
/// opened a moment ago, the next 256 Identifiers to an upstream, it dropped the first
/// datagrams sent.) A full buffer fails with `WouldBlock`, and the datagram is then as lost
/// as one dropped on the way.
pub fn send_now(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    socket.get_ref().send_to(bytes, to)
}
