//! Where the proxy's gate gets its limits and where its usage goes: an **embedded** licence
//! agent ([`entitle_sidecar::Sidecar`] running inside the proxy, serving the local API that
//! the `entitle` CLI talks to on the agent's Unix socket, and on TCP with its credential when
//! configured), or an **attachment** to a running `entitled` ([`entitle_sidecar::Attachment`]).
//!
//! Either way the gate holds the entitlements the licence defines; the packet path resolves
//! the counted one once, at start, and checks it once per counted request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use entitle_engine::{CoarseClock, Entitlement, Gate, Limit, Sampler};
use entitle_sidecar::{AttachOptions, Attachment, Sidecar};

use crate::config::Licence;
use crate::{Error, Result};

/// How often the gate's clock ticks. The packet path brings the clock up to each
/// datagram's time before its check (`CoarseClock::catch_up`), so the ticker serves only
/// the other readers (the sampler, the agent), for which 10 ms is plenty. The engine's
/// default (100 us) woke the ticker thousands of times a second, idle or not: on a virtual
/// machine a third of the proxy's CPU at 3,000 requests/s; at 1 ms it was still about a
/// twentieth.
const CLOCK_PERIOD: Duration = Duration::from_millis(10);

/// The running licence side of the proxy.
pub struct LicenceRuntime {
    gate: Arc<Gate<CoarseClock>>,
    source: Source,
    _sampler: Sampler,
}

enum Source {
    Embedded {
        sidecar: Sidecar,
        /// `unix:PATH` of the local API's socket.
        address: String,
        /// Its TCP address, when configured.
        tcp: Option<SocketAddr>,
        stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    },
    Attached(Attachment),
}

impl LicenceRuntime {
    /// Builds the gate and starts the licence agent or the attachment, on the current tokio
    /// runtime. `tag` must be one of the licence's entitlements.
    pub async fn start(licence: Licence, tag: &str) -> Result<(Self, Entitlement)> {
        let clock = CoarseClock::with_period(CLOCK_PERIOD).map_err(engine)?;
        let mut builder = Gate::builder(clock);
        // Fail closed until the licence's limits are applied (at once when embedded).
        let placeholder = Limit::hard(1).map_err(engine)?;
        let source = match licence {
            Licence::Embedded(config) => {
                for spec in &config.agent.product.entitlements {
                    builder.register(&spec.tag, placeholder).map_err(engine)?;
                }
                let gate = builder.build();
                let metrics_listen = config.metrics_listen;
                // The socket first: a second agent on it stops here, before the data.
                let api = entitle_sidecar::LocalApi::bind(&config)
                    .await
                    .map_err(|e| Error::Licence(e.to_string()))?;
                let (address, tcp) = (api.address(), api.tcp_address());
                let sidecar = Sidecar::start(*config, Some(Arc::clone(&gate)))
                    .await
                    .map_err(|e| Error::Licence(e.to_string()))?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let serving = sidecar.clone();
                tokio::spawn(async move {
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    if let Err(e) = serving.serve_local(api, shutdown).await {
                        tracing::error!(error = %e, "the licence agent's service stopped");
                    }
                });
                if let Some(address) = metrics_listen {
                    let metrics = tokio::net::TcpListener::bind(address)
                        .await
                        .map_err(|e| Error::Io(format!("cannot listen on {address}"), e))?;
                    let serving = sidecar.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serving.serve_metrics(metrics).await {
                            tracing::error!(error = %e, "the licence agent's metrics stopped");
                        }
                    });
                }
                (
                    gate,
                    Source::Embedded {
                        sidecar,
                        address,
                        tcp,
                        stop: std::sync::Mutex::new(Some(stop)),
                    },
                )
            }
            Licence::Attached {
                url,
                credential,
                snapshot_interval,
                wait,
            } => {
                builder.register(tag, placeholder).map_err(engine)?;
                let gate = builder.build();
                let options = AttachOptions {
                    snapshot_interval,
                    credential,
                    ..AttachOptions::default()
                };
                let attachment = Attachment::start(Arc::clone(&gate), &url, options)
                    .map_err(|e| Error::Licence(e.to_string()))?;
                let deadline = Instant::now() + wait;
                while attachment.limit_tables() == 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if attachment.limit_tables() == 0 {
                    tracing::warn!(
                        %url,
                        last_error = attachment.last_error().unwrap_or_default(),
                        "no limits from the sidecar yet: serving at 1 TPS until they come"
                    );
                }
                (gate, Source::Attached(attachment))
            }
        };
        let (gate, source) = source;
        let handle = gate.entitlement(tag).ok_or_else(|| {
            Error::Config(format!(
                "counting.tag {tag:?} is not an entitlement of the licence"
            ))
        })?;
        let sampler = gate.start_sampler(Duration::from_secs(1)).map_err(engine)?;
        Ok((
            Self {
                gate,
                source,
                _sampler: sampler,
            },
            handle,
        ))
    }

    /// The gate the packet path checks.
    pub fn gate(&self) -> &Arc<Gate<CoarseClock>> {
        &self.gate
    }

    /// The embedded agent, if the licence runs in-process.
    pub fn sidecar(&self) -> Option<&Sidecar> {
        match &self.source {
            Source::Embedded { sidecar, .. } => Some(sidecar),
            Source::Attached(_) => None,
        }
    }

    /// Where the embedded agent serves the `entitle` CLI: `unix:PATH` of its socket.
    pub fn sidecar_address(&self) -> Option<&str> {
        match &self.source {
            Source::Embedded { address, .. } => Some(address),
            Source::Attached(_) => None,
        }
    }

    /// The embedded agent's TCP address, when its configuration has `listen`.
    pub fn sidecar_tcp(&self) -> Option<SocketAddr> {
        match &self.source {
            Source::Embedded { tcp, .. } => *tcp,
            Source::Attached(_) => None,
        }
    }

    /// Delivers every count so far: embedded, into the spool and on to the authority;
    /// attached, to the sidecar's spool.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        match &self.source {
            Source::Embedded { sidecar, .. } => {
                let waiting = tokio::time::timeout(timeout, sidecar.flush())
                    .await
                    .map_err(|_| Error::Licence(format!("no flush within {timeout:?}")))?
                    .map_err(|e| Error::Licence(e.to_string()))?;
                match waiting {
                    0 => Ok(()),
                    n => Err(Error::Licence(format!(
                        "{n} usage reports are still waiting for the authority"
                    ))),
                }
            }
            Source::Attached(attachment) => attachment
                .flush(timeout)
                .await
                .map_err(|e| Error::Licence(e.to_string())),
        }
    }

    /// The agent's metrics text (embedded only), without its `# EOF`.
    pub fn metrics_body(&self) -> String {
        match &self.source {
            Source::Embedded { sidecar, .. } => crate::metrics::strip_eof(sidecar.metrics_text()),
            Source::Attached(_) => String::new(),
        }
    }

    /// Stops serving the CLI (embedded).
    pub fn stop(&self) {
        if let Source::Embedded { stop, .. } = &self.source
            && let Some(stop) = stop.lock().ok().and_then(|mut s| s.take())
        {
            let _ = stop.send(());
        }
    }
}

fn engine(e: entitle_engine::Error) -> Error {
    Error::Licence(e.to_string())
}
