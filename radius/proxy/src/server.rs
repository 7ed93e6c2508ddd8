//! The running proxy: the licence side, the sockets, the packet path's thread and the
//! metrics endpoint, started by [`Proxy::start`] on the current tokio runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tokio::sync::oneshot;

use crate::batch::Batch;
use crate::config::Config;
use crate::licence::LicenceRuntime;
use crate::metrics::Metrics;
use crate::relay::{Parts, Relay, WAKER};
use crate::upstream::UpstreamState;
use crate::{Error, Result};

/// How often timeouts and the cache are looked at.
const TICK: Duration = Duration::from_millis(20);

/// A running proxy.
pub struct Proxy {
    listen: Vec<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    licence: Arc<LicenceRuntime>,
    stop: Option<Stop>,
    task: Option<std::thread::JoinHandle<()>>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts the licence side, binds every listen address, opens a socket to each upstream
    /// and serves until [`Proxy::stop`].
    pub async fn start(config: Config) -> Result<Proxy> {
        let (licence, entitlement) =
            LicenceRuntime::start(config.licence, &config.counting.tag).await?;
        let metrics = Arc::new(Metrics::new(
            config.upstreams.iter().map(|u| u.name.as_str()),
        ));
        // The packet path runs on a thread of its own: the embedded licence agent writes
        // its spool to SQLite with a flush to disk every second on the caller's runtime,
        // and a flush that takes long (a busy disk) must not hold up the packets
        // meanwhile. Held up, they would reach the gate all at once afterwards, to a bucket
        // that had stopped filling at its burst: most would be refused, and less than the
        // licence admitted.
        let poll = Poll::new().map_err(|e| Error::Io("cannot start the packet path".into(), e))?;
        let stop = Stop {
            asked: Arc::new(AtomicBool::new(false)),
            waker: Waker::new(poll.registry(), WAKER)
                .map_err(|e| Error::Io("cannot start the packet path".into(), e))?,
        };
        let (ready, started) = oneshot::channel::<Result<Vec<SocketAddr>>>();
        let path = PacketPath {
            listen: config.listen,
            clients: config.clients,
            upstreams: config.upstreams,
            reply_cache: config.reply_cache,
            worker: licence.gate().worker(),
            clock: licence.gate().clock().clone(),
            entitlement,
            counting: config.counting,
            over_licence: config.over_licence,
            metrics: Arc::clone(&metrics),
            socket_buffer: config.socket_buffer_bytes,
        };
        // A plain loop over epoll on a thread of its own, no runtime: the relay reads its
        // sockets itself, and a tokio runtime around it was a sixth of the packet path's
        // instructions (at 3,000 requests/s a multi-thread one cost 1.8x the CPU a request).
        let asked = Arc::clone(&stop.asked);
        let task = std::thread::Builder::new()
            .name("radius-packet-path".into())
            .spawn(move || path.serve(poll, ready, &asked))
            .map_err(|e| Error::Io("cannot start the packet path's thread".into(), e))?;
        let listen = match started.await {
            Ok(Ok(listen)) => listen,
            Ok(Err(e)) => {
                let _ = task.join();
                return Err(e);
            }
            Err(_) => {
                let _ = task.join();
                return Err(Error::Io(
                    "the packet path".into(),
                    std::io::Error::other("it stopped before it started"),
                ));
            }
        };
        let licence = Arc::new(licence);
        let metrics_listen = match config.metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|e| Error::Io(format!("cannot listen on {address}"), e))?;
                Some(listener)
            }
            None => None,
        };
        let (metrics_listen, metrics_task) = match metrics_listen {
            Some(listener) => {
                let address = listener
                    .local_addr()
                    .map_err(|e| Error::Io("the metrics address".into(), e))?;
                let (m, l) = (Arc::clone(&metrics), Arc::clone(&licence));
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let text = metrics_text(&m, &l);
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )],
                                text,
                            )
                        }
                    }),
                );
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "the metrics endpoint stopped");
                    }
                });
                (Some(address), Some(task))
            }
            None => (None, None),
        };
        Ok(Proxy {
            listen,
            metrics_listen,
            metrics,
            licence,
            stop: Some(stop),
            task: Some(task),
            metrics_task,
        })
    }

    /// The addresses it listens on, in the configuration's order (ports resolved).
    pub fn listen(&self) -> &[SocketAddr] {
        &self.listen
    }

    /// The metrics endpoint's address.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics_listen
    }

    /// Where the embedded licence agent serves the `entitle` CLI: `unix:PATH`.
    pub fn sidecar_address(&self) -> Option<&str> {
        self.licence.sidecar_address()
    }

    /// The embedded licence agent's TCP address (with its credential), if configured.
    pub fn sidecar_tcp(&self) -> Option<SocketAddr> {
        self.licence.sidecar_tcp()
    }

    /// The embedded licence agent.
    pub fn sidecar(&self) -> Option<&entitle_sidecar::Sidecar> {
        self.licence.sidecar()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The text `/metrics` serves.
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.metrics, &self.licence)
    }

    /// Delivers the usage counted so far (see [`LicenceRuntime::flush`]).
    pub async fn flush_usage(&self, timeout: Duration) -> Result<()> {
        self.licence.flush(timeout).await
    }

    /// Stops the packet path and the endpoints, delivering what usage it can on the way.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.ask();
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::task::spawn_blocking(move || task.join()).await;
        }
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
        if let Err(e) = self.licence.flush(Duration::from_secs(10)).await {
            tracing::warn!(error = %e, "usage not all delivered at stop; it stays spooled");
        }
        self.licence.stop();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.ask();
        }
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
    }
}

/// Tells the packet path's loop to stop.
struct Stop {
    asked: Arc<AtomicBool>,
    waker: Waker,
}

impl Stop {
    fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            // It still stops, at its next tick.
            tracing::warn!(error = %e, "cannot wake the packet path");
        }
    }
}

/// What the packet path needs, moved to its own thread.
struct PacketPath {
    listen: Vec<SocketAddr>,
    clients: Vec<crate::config::Client>,
    upstreams: Vec<crate::config::Upstream>,
    reply_cache: Duration,
    worker: entitle_engine::Worker<entitle_engine::CoarseClock>,
    clock: entitle_engine::CoarseClock,
    entitlement: entitle_engine::Entitlement,
    counting: crate::config::Counting,
    over_licence: crate::config::OverLicence,
    metrics: Arc<Metrics>,
    socket_buffer: usize,
}

impl PacketPath {
    /// Binds the listeners and the upstream sockets, says where it listens through
    /// `ready`, and serves until `asked` to stop.
    fn serve(
        self,
        mut poll: Poll,
        ready: oneshot::Sender<Result<Vec<SocketAddr>>>,
        asked: &AtomicBool,
    ) {
        let (mut relay, listen) = match self.bind(poll.registry()) {
            Ok(bound) => bound,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(listen)).is_err() {
            return;
        }
        let mut events = Events::with_capacity(64);
        let mut batch = Batch::new();
        // Sockets whose last batch came back full, read again on the next turn.
        let (mut turn, mut again) = (Vec::<Token>::new(), Vec::<Token>::new());
        let mut next_tick = Instant::now() + TICK;
        while !asked.load(Ordering::Acquire) {
            let timeout = match again.is_empty() {
                true => next_tick.saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "the packet path cannot wait for its sockets");
                break;
            }
            std::mem::swap(&mut turn, &mut again);
            turn.extend(events.iter().map(|e| e.token()).filter(|&t| t != WAKER));
            for token in turn.drain(..) {
                if relay.receive(token, &mut batch) && !again.contains(&token) {
                    again.push(token);
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                relay.tick(now);
                next_tick = now + TICK;
            }
        }
        tracing::info!(outstanding = relay.outstanding(), "packet path stopped");
    }

    fn bind(self, registry: &Registry) -> Result<(Relay, Vec<SocketAddr>)> {
        let mut listeners = Vec::new();
        let mut listen = Vec::new();
        for address in &self.listen {
            let mut socket = crate::socket::bind(*address, self.socket_buffer)
                .map_err(|e| Error::Io(format!("cannot listen on {address}"), e))?;
            listen.push(
                socket
                    .local_addr()
                    .map_err(|e| Error::Io("a listener's address".into(), e))?,
            );
            registry
                .register(&mut socket, Token(listeners.len()), Interest::READABLE)
                .map_err(|e| Error::Io(format!("cannot listen on {address}"), e))?;
            listeners.push(Arc::new(socket));
        }
        let registry = registry
            .try_clone()
            .map_err(|e| Error::Io("cannot start the packet path".into(), e))?;
        let mut relay = Relay::new(Parts {
            clients: self.clients,
            listeners,
            upstreams: self.upstreams.into_iter().map(UpstreamState::new).collect(),
            registry,
            reply_cache: self.reply_cache,
            worker: self.worker,
            clock: self.clock,
            entitlement: self.entitlement,
            counting: self.counting,
            over_licence: self.over_licence,
            metrics: self.metrics,
            socket_buffer: self.socket_buffer,
        });
        for index in 0..relay.upstreams.len() {
            relay
                .open_socket(index)
                .map_err(|e| Error::Io("cannot open a socket to an upstream".into(), e))?;
        }
        Ok((relay, listen))
    }
}

fn metrics_text(metrics: &Metrics, licence: &LicenceRuntime) -> String {
    let mut text = metrics.encode_body();
    text.push_str(&licence.metrics_body());
    text.push_str("# EOF\n");
    text
}
