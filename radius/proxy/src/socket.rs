//! UDP sockets with receive and send buffers sized for bursts: the kernel's defaults (about
//! 200 KiB) overflow with a few hundred requests in flight, and an overflow is a silent
//! drop. The kernel may cap the size (`net.core.rmem_max`); what it grants is logged.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A UDP socket of the packet path, non-blocking, for the packet path's own loop over
/// `epoll` (mio) to register for reading only.
pub type UdpSocket = mio::net::UdpSocket;

/// Binds a non-blocking UDP socket on `address` with `buffer` octets each way.
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
    Ok(UdpSocket::from_std(socket.into()))
}

/// The unspecified address of `peer`'s family, port 0: where a socket to `peer` binds.
pub fn any_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// Sends `bytes` to `to` at once, one system call. A full buffer fails with `WouldBlock`,
/// and the datagram is then as lost as one dropped on the way.
pub fn send_now(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    socket.send_to(bytes, to)
}
