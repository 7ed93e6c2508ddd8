//! The UDP side: one socket (its buffers sized with socket2 before tokio takes it), and one
//! tokio task per [`Worker`] receiving from it, handling and answering.
//!
//! Authentication and accounting share the socket: the Code tells them apart.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::clients::Clients;
use super::counters::Stats;
use super::error::{Error, Result};
use super::users::Users;
use super::worker::{Licence, OverLimit, Shared, Worker};

/// The receive and send buffers asked of the kernel by default: several MB, so a burst
/// waits in the socket rather than being lost (Linux caps them at `net.core.rmem_max` and
/// `wmem_max`).
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

/// A datagram one octet longer than RADIUS allows reads as too long, not cut to fit.
const RECEIVE_BUFFER: usize = 4097;

/// How many receive errors in a row end a worker (a socket that keeps failing).
const MAX_RECEIVE_ERRORS: u32 = 1000;

/// How the server is set up.
pub struct ServerConfig {
    /// Where to listen (authentication and accounting on the one socket).
    pub listen: SocketAddr,
    /// Who may send requests, and their secrets.
    pub clients: Clients,
    /// Who may log in with PAP.
    pub users: Users,
    /// The gate each transaction is checked against; `None` checks nothing (`--no-gate`:
    /// the same packet path without the gate, for benchmarks).
    pub licence: Option<Licence>,
    /// What happens to transactions over the licence.
    pub over_limit: OverLimit,
    /// Packet tasks, each with its own gate worker.
    pub workers: usize,
    /// The socket's receive and send buffers to ask for, in octets.
    pub socket_buffer: usize,
}

/// A bound RADIUS server, ready to serve.
pub struct Server {
    socket: Arc<UdpSocket>,
    workers: Vec<Worker>,
    stats: Arc<Stats>,
    buffers: (usize, usize),
}

impl Server {
    /// Binds the socket and makes the workers. Call it inside a tokio runtime.
    pub fn bind(config: ServerConfig) -> Result<Server> {
        if config.workers == 0 {
            return Err(Error::NoWorkers);
        }
        let addr = config.listen;
        let bind_error = |source| Error::Bind { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(bind_error)?;
        // The kernel may give less than asked; what it gave is reported, not an error.
        let _ = socket.set_recv_buffer_size(config.socket_buffer);
        let _ = socket.set_send_buffer_size(config.socket_buffer);
        socket.set_nonblocking(true).map_err(bind_error)?;
        socket.bind(&addr.into()).map_err(bind_error)?;
        let buffers = (
            socket.recv_buffer_size().unwrap_or(0),
            socket.send_buffer_size().unwrap_or(0),
        );
        let socket = UdpSocket::from_std(socket.into()).map_err(bind_error)?;
        let stats = Arc::new(Stats::new(config.workers));
        let shared = Arc::new(Shared {
            clients: config.clients,
            users: config.users,
            over_limit: config.over_limit,
            stats: Arc::clone(&stats),
        });
        let workers = (0..config.workers)
            .map(|index| Worker::new(Arc::clone(&shared), config.licence.as_ref(), index))
            .collect();
        Ok(Server {
            socket: Arc::new(socket),
            workers,
            stats,
            buffers,
        })
    }

    /// The address the socket is bound to (the port the system chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.socket.local_addr().map_err(Error::Socket)
    }

    /// The receive and send buffer sizes the kernel reports for the socket.
    pub fn socket_buffers(&self) -> (usize, usize) {
        self.buffers
    }

    /// The counters, to read while the server runs.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown` completes (or a worker's socket fails for good).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut tasks = JoinSet::new();
        for worker in self.workers {
            tasks.spawn(receive(Arc::clone(&self.socket), worker));
        }
        let ended = tokio::select! {
            () = shutdown => Ok(()),
            Some(ended) = tasks.join_next() => match ended {
                Ok(result) => result,
                Err(e) => Err(Error::Socket(std::io::Error::other(e))),
            },
        };
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        ended
    }
}

/// One worker's loop: receive, handle, answer.
async fn receive(socket: Arc<UdpSocket>, mut worker: Worker) -> Result<()> {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut errors = 0;
    loop {
        let (length, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => {
                errors = 0;
                received
            }
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, "receive failed");
                if errors >= MAX_RECEIVE_ERRORS {
                    return Err(Error::Socket(e));
                }
                continue;
            }
        };
        let Some(reply) = worker.handle(&buffer[..length], from.ip()) else {
            continue;
        };
        let sent = socket.send_to(&reply, from).await;
        if let Err(error) = &sent {
            tracing::debug!(%from, %error, "reply not sent");
        }
        worker.sent(sent.is_ok());
    }
}
