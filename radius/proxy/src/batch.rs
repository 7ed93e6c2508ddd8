//! Datagrams read a batch at a time with one system call (`recvmmsg`), straight into the
//! packet path.
//!
//! A batch shorter than [`BATCH`] means the socket's queue was empty when it was read, so
//! the caller waits for the socket's next event there and then, instead of after one more
//! read that fails with `EWOULDBLOCK`: at a licence-sized load, one datagram a wakeup, that
//! extra read was a fifth of the packet path's system calls. mio has no batched receive; nix wraps the
//! system call safely.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

/// The largest datagram read: RADIUS packets are at most 4096 octets; one more shows a
/// datagram that is too long.
pub(crate) const RECV_BUFFER: usize = 4097;

/// Datagrams read by one system call at most.
pub(crate) const BATCH: usize = 32;

/// Buffers for one batch, reused from one read to the next.
pub(crate) struct Batch {
    buffer: Box<[u8]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Each datagram of the last read: its place in the batch, its length and where it
    /// came from.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            buffer: vec![0; BATCH * RECV_BUFFER].into_boxed_slice(),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Reads what the non-blocking `socket` has queued, a batch at most. `Ok(true)` when
    /// the batch came back full: there may be more; `Ok(false)` when the queue is now
    /// empty. `Err` with `WouldBlock` when there was nothing.
    pub(crate) fn read(&mut self, socket: &impl AsRawFd) -> io::Result<bool> {
        self.got.clear();
        let mut chunks = self.buffer.chunks_exact_mut(RECV_BUFFER);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                chunks.next().expect("the buffer holds BATCH datagrams"),
            )]
        });
        let read = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let mut count = 0;
        for message in read {
            // A datagram from an address of no family we know is left out.
            if let Some(from) = message.address.as_ref().and_then(socket_addr) {
                self.got.push((count, message.bytes.min(RECV_BUFFER), from));
            }
            count += 1;
        }
        Ok(count == BATCH)
    }

    /// The datagrams of the last read, in the order they came.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.got
            .iter()
            .map(|&(i, len, from)| (&self.buffer[i * RECV_BUFFER..][..len], from))
    }
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    if let Some(v6) = address.as_sockaddr_in6() {
        return Some(SocketAddr::V6((*v6).into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket, SocketAddr) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let to = socket.local_addr().unwrap();
        (
            socket,
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            to,
        )
    }

    /// Reads until something came (bounded: loopback delivers at once).
    fn read_some(batch: &mut Batch, socket: &std::net::UdpSocket) -> bool {
        for _ in 0..1000 {
            match batch.read(socket) {
                Ok(full) => return full,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nothing came");
    }

    #[test]
    fn a_full_batch_says_there_may_be_more_and_a_short_one_drains() {
        let (socket, sender, to) = pair();
        let from = sender.local_addr().unwrap();
        for i in 0..BATCH + 5 {
            sender
                .send_to(format!("datagram {i}").as_bytes(), to)
                .unwrap();
        }
        let mut batch = Batch::new();
        assert!(read_some(&mut batch, &socket), "a full batch");
        let first: Vec<(Vec<u8>, SocketAddr)> =
            batch.datagrams().map(|(d, f)| (d.to_vec(), f)).collect();
        assert_eq!(first.len(), BATCH);
        assert_eq!(first[0], (b"datagram 0".to_vec(), from));
        assert_eq!(
            first[BATCH - 1].0,
            format!("datagram {}", BATCH - 1).into_bytes()
        );
        assert!(!batch.read(&socket).unwrap(), "the rest, a short batch");
        let rest: Vec<Vec<u8>> = batch.datagrams().map(|(d, _)| d.to_vec()).collect();
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[4], format!("datagram {}", BATCH + 4).into_bytes());
        // A short batch drained the queue.
        let nothing = batch.read(&socket).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_datagram_too_long_for_radius_is_read_one_octet_over() {
        let (socket, sender, to) = pair();
        sender.send_to(&vec![7u8; 6000], to).unwrap();
        sender.send_to(&[1, 2, 3], to).unwrap();
        let mut batch = Batch::new();
        let mut lengths = Vec::new();
        while lengths.len() < 2 {
            assert!(!read_some(&mut batch, &socket));
            lengths.extend(batch.datagrams().map(|(d, _)| d.len()));
        }
        assert_eq!(
            lengths,
            [RECV_BUFFER, 3],
            "truncated to the buffer, so seen as too long"
        );
    }
}
