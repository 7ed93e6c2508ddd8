//! The running sidecar: the agent's driver, the snapshot taker and the usage uploader, as
//! tokio tasks around one shared state.
//!
//! - The **driver** owns the agent behind an async mutex. It polls the agent at its next
//!   wakeup (and at least every minute, to watch the wall clock), performs the actions it
//!   asks for (register, renew, authorise, deregister) against the authority, reports their
//!   outcomes, saves the agent's state, and applies changed limits to the gate and to every
//!   attached engine. Operator commands take the same mutex and run the same step, so a
//!   command answers with the outcome of the calls it caused.
//! - The **snapshot taker** drains the sidecar's own gate into the spool every local
//!   interval (1 s), summing into the report being made, and closes that report every
//!   report interval. At capacity it takes nothing: the counts stay in the gate (push back,
//!   never drop); a snapshot whose write failed is kept and written with the next.
//! - The **uploader** streams the spool, signed, to the authority and deletes each report
//!   only once the authority acknowledged it; on failure it backs off and tries again.

mod commands;
mod driver;
mod record;
mod retry;
mod sharing;
mod usage;

pub(crate) use sharing::{LEASE, Outbound};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use entitle_engine::{Clock, CoarseClock, Gate, Sampler, Worker};
use entitle_licensing::{
    Action, Agent, IdCertificate, IdToken, Limits, State, Status, apply_limits,
};
use entitle_proto::pb;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;

use crate::config::SidecarConfig;
use crate::convert::{WallAnchor, unix_millis, usage_to_pb};
use crate::device::{DeviceClient, DeviceError};
use crate::metrics::{Metrics, Reading};
use crate::store::{LocalStore, Spooled};
use crate::trust::Trust;
use crate::{Result, SidecarError};

/// The longest the driver sleeps: the agent watches the wall clock at each poll.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Reports per upload stream.
const UPLOAD_BATCH: usize = 256;
/// The longest wait between upload attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A running sidecar. Dropping it does not stop its tasks; they end with the runtime.
#[derive(Clone)]
pub struct Sidecar {
    pub(crate) shared: Arc<Shared>,
}

/// What the tasks and the gRPC service share.
pub(crate) struct Shared {
    pub(crate) config: SidecarConfig,
    pub(crate) store: LocalStore,
    pub(crate) gate: Arc<Gate<CoarseClock>>,
    anchor: WallAnchor,
    key: SigningKey,
    /// The keys answers and codes are checked against (pinned at registration).
    pub(crate) trust: Mutex<Trust>,
    origin: Instant,
    core: tokio::sync::Mutex<Core>,
    /// The licence's limits as the agent decided them last; shared among the gates.
    pub(crate) limits: watch::Sender<Limits>,
    /// The licence shared among the own gate and every attached engine.
    sharing: Mutex<sharing::Sharing>,
    /// The agent's status as of its last step, for readers that must not wait on calls.
    status: Mutex<Status>,
    pub(crate) stats: Stats,
    /// A worker for remote checks.
    pub(crate) checker: Mutex<Worker<CoarseClock>>,
    wake_driver: Notify,
    wake_uploader: Notify,
    /// One delivery at a time (the uploader's and a flush's), so no report goes twice.
    delivering: tokio::sync::Mutex<()>,
    /// One snapshot of the gate at a time, from drain to spool, so a flush never passes a
    /// snapshot the timer took a moment before and has yet to store.
    spooling: Mutex<()>,
    /// A gate snapshot drained but not yet stored (its write failed).
    unspooled: Mutex<Option<pb::UsageReport>>,
    pub(crate) metrics: Metrics,
    /// Syslog and SNMP traps for the event log's entries.
    notifier: crate::notify::Notifier,
    _sampler: Option<Sampler>,
}

/// Counters for status and metrics.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) attached: AtomicU32,
    pub(crate) delivered: AtomicU64,
    pub(crate) last_success_unix: Mutex<Option<i64>>,
    pub(crate) last_delivery_failure: Mutex<Option<String>>,
    /// Per gate entitlement: admitted and rejected since start.
    pub(crate) totals: Mutex<BTreeMap<String, (u64, u64)>>,
}

struct Core {
    agent: Agent,
    /// The client for the current call-home destination, made on first use.
    client: Option<DeviceClient>,
    /// Calls home waiting for a jittered retry.
    retry: retry::CallRetry,
}

/// The outcome of one action performed for the agent.
pub(crate) struct Performed {
    kind: &'static str,
    result: std::result::Result<(), SidecarError>,
}

impl Sidecar {
    /// Opens the device's state in the configured data directory (creating the device key
    /// and the store at first start), restores the agent, applies its limits, and starts the
    /// driver, snapshot and upload tasks on the current tokio runtime. With `gate`, the
    /// sidecar runs embedded: it applies limits to and takes snapshots from that gate, which
    /// must have every gate entitlement of the product. Without, it makes its own.
    pub async fn start(
        config: SidecarConfig,
        gate: Option<Arc<Gate<CoarseClock>>>,
    ) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            SidecarError::Config(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = LocalStore::open(&config.data_dir.join("entitled.db"))?;
        let key = device_key(&config, store.instance()?.as_deref())?;
        let origin = Instant::now();
        let agent = restore_agent(&config, &store, 1)?;
        let trust = Trust::open(&config, &store)?;
        let engines_before = store.knows_engines()?;
        let differences = trust.differences();
        let limits = agent.limits();
        let notifier = crate::notify::Notifier::open(
            &config.notify,
            format!("{}:{}", config.udi.product_id, config.udi.serial),
        )?;
        // The own gate's usage events go to the event log (an embedding process's gate
        // sends its events where its builder said).
        let (usage_events, usage_queue) = tokio::sync::mpsc::unbounded_channel();
        let (gate, sampler) = match gate {
            Some(gate) => (gate, None),
            None => {
                let clock = CoarseClock::new()
                    .map_err(|e| SidecarError::Internal(format!("cannot start the clock: {e}")))?;
                let mut builder = Gate::builder(clock);
                builder.on_event(move |event| {
                    // Closed only when the sidecar is gone.
                    let _ = usage_events.send(event);
                });
                for (tag, limit) in &limits {
                    builder
                        .register(tag, *limit)
                        .map_err(|e| SidecarError::Config(e.to_string()))?;
                }
                let gate = builder.build();
                let sampler = gate.start_sampler(Duration::from_secs(1)).map_err(|e| {
                    SidecarError::Internal(format!("cannot start the sampler: {e}"))
                })?;
                (gate, Some(sampler))
            }
        };
        apply_limits(&gate, &limits)
            .map_err(|e| SidecarError::Config(format!("the gate does not fit the product: {e}")))?;
        let mut client = None;
        if let (Some(instance), Some(url)) = (store.instance()?, current_url(&config, &store)?) {
            let mut c = DeviceClient::new(
                channel(&url, &config, &store)?,
                key.clone(),
                trust.authority(),
            );
            keep_counter(&mut c, &config)?;
            c.resume(instance, 0);
            resume_account(&mut c, &agent.status());
            client = Some(c);
        }
        let status = agent.status();
        let shared = Arc::new(Shared {
            anchor: WallAnchor::now(gate.clock().now()),
            checker: Mutex::new(gate.worker()),
            metrics: Metrics::new(&limits),
            config,
            store,
            gate,
            key,
            trust: Mutex::new(trust),
            origin,
            core: tokio::sync::Mutex::new(Core {
                agent,
                client,
                retry: Default::default(),
            }),
            sharing: Mutex::new(sharing::Sharing::new(&limits, engines_before)),
            limits: watch::Sender::new(limits),
            status: Mutex::new(status),
            stats: Stats::default(),
            wake_driver: Notify::new(),
            wake_uploader: Notify::new(),
            delivering: tokio::sync::Mutex::new(()),
            spooling: Mutex::new(()),
            unspooled: Mutex::new(None),
            notifier,
            _sampler: sampler,
        });
        for difference in differences {
            tracing::warn!("{difference}");
            shared.record(&[crate::events::Recorded::Trust {
                message: difference,
                warning: true,
            }]);
        }
        shared.refresh_metrics();
        tokio::spawn(Arc::clone(&shared).drive());
        tokio::spawn(Arc::clone(&shared).take_snapshots());
        tokio::spawn(Arc::clone(&shared).upload());
        tokio::spawn(Arc::clone(&shared).record_usage(usage_queue));
        tokio::spawn(Arc::clone(&shared).share_ticks());
        Ok(Self { shared })
    }

    /// The gate the sidecar enforces on (its own, or the embedding process's).
    pub fn gate(&self) -> &Arc<Gate<CoarseClock>> {
        &self.shared.gate
    }

    /// Snapshots the gate into the spool now and delivers everything spooled for the
    /// current registration; answers how many reports are still waiting.
    pub async fn flush(&self) -> Result<u64> {
        self.shared.flush().await
    }

    /// The status as of the agent's last step.
    pub fn status(&self) -> Status {
        self.shared.status.lock().clone()
    }
}

/// The device key: made at first start (mode 0600, written atomically), read after.
///
/// A key file that is missing, empty or cut short (a crash while it was first written, or
/// a damaged disk) is made anew while the device has never registered (`instance` none):
/// nothing depends on it yet. Once registered, the authority knows the device by that key,
/// so start-up stops and says what to do.
fn device_key(config: &SidecarConfig, instance: Option<&str>) -> Result<SigningKey> {
    let path = config.data_dir.join("device.key");
    let damaged = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_owned()),
        Err(e) => {
            return Err(SidecarError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
        Ok(m) if m.len() != 32 => Some(format!("{} bytes long, not 32", m.len())),
        Ok(_) => None,
    };
    if let Some(why) = damaged {
        if let Some(instance) = instance {
            return Err(SidecarError::Config(format!(
                "the device key {} is {why}, but this device is registered (instance {instance}) \
                 with the key it held: restore device.key from a backup, or have the authority's \
                 operator run `instance remove` (or `instance allow-replace`) and register again",
                path.display()
            )));
        }
        if why != "missing" {
            tracing::warn!(path = %path.display(), %why, "the device key is damaged and the device never registered: making a new one");
        }
        let key = entitle_proto::signing::generate_key()
            .map_err(|e| SidecarError::Internal(format!("cannot make a device key: {e}")))?;
        entitle_proto::signing::write_atomic(&path, &key.to_bytes())
            .map_err(|e| SidecarError::Config(format!("cannot write {}: {e}", path.display())))?;
        return Ok(key);
    }
    let bytes = entitle_proto::signing::read_secret(&path)
        .map_err(|e| SidecarError::Config(format!("cannot read {}: {e}", path.display())))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SidecarError::Config(format!("{} is not a device key", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The agent as saved, with the time it was down taken from the wall clock; or a new one.
fn restore_agent(config: &SidecarConfig, store: &LocalStore, now: u64) -> Result<Agent> {
    match store.agent_state()? {
        Some((json, saved_at)) => {
            let state: State = serde_json::from_slice(&json).map_err(|e| {
                SidecarError::Config(format!("the saved licence state does not read: {e}"))
            })?;
            let behind = saved_at.saturating_sub(unix_millis());
            if behind > 1000 {
                // The agent's first poll raises the clock-jump event against its anchor; this
                // says when it happened. The downtime counts as none: no timer moves back.
                tracing::warn!(
                    behind_secs = behind / 1000,
                    "clock event: the wall clock is behind the moment the licence state was saved; it was set back while the sidecar was down"
                );
            }
            let down = u64::try_from(unix_millis().saturating_sub(saved_at)).unwrap_or(0);
            Ok(Agent::restore(
                config.agent.clone(),
                state,
                now,
                Duration::from_millis(down),
            )?)
        }
        None => Ok(Agent::new(config.agent.clone(), now)?),
    }
}

/// Keeps the client's request counter in the data directory, above every counter it sent,
/// and the newest revocation list of satellite delegations beside it.
fn keep_counter(client: &mut DeviceClient, config: &SidecarConfig) -> Result<()> {
    client.persist_revocations(config.data_dir.join("revocations.bin"));
    let path = config.data_dir.join("request.counter");
    client.persist_counter(path.clone()).map_err(|e| {
        SidecarError::Config(format!(
            "cannot read the request counter {}: {e}",
            path.display()
        ))
    })
}

/// Tells the client the account of the saved registration, which a satellite's answers
/// must be delegated.
fn resume_account(client: &mut DeviceClient, status: &entitle_licensing::Status) {
    let registration = &status.registration;
    if let (Some(sa), Some(va)) = (&registration.smart_account, &registration.virtual_account) {
        client.resume_account(sa.clone(), va.clone());
    }
}

fn current_url(config: &SidecarConfig, store: &LocalStore) -> Result<Option<String>> {
    Ok(store
        .callhome_url()?
        .or_else(|| config.callhome_url.clone()))
}

/// The HTTP proxy call home goes through: the operator's choice, else the configuration's.
fn current_proxy(config: &SidecarConfig, store: &LocalStore) -> Result<Option<String>> {
    Ok(match store.callhome_proxy()? {
        Some(chosen) => Some(chosen).filter(|p| !p.is_empty()),
        None => config.callhome_proxy.clone(),
    })
}

/// A lazily connecting channel to `url`: TLS for `https://`, through the HTTP proxy when
/// one is set (see [`entitle_proto::tls`]).
fn channel(url: &str, config: &SidecarConfig, store: &LocalStore) -> Result<Channel> {
    entitle_proto::tls::channel(
        url,
        config.authority_ca.as_deref(),
        config.allow_plaintext,
        config.call_timeout,
        current_proxy(config, store)?.as_deref(),
    )
    .map_err(|e| SidecarError::InvalidArgument(e.to_string()))
}

/// One sentence for a failed call to the authority.
///
/// A status the authority sent has no source; one tonic made here from a broken connection
/// keeps the error it came from (a stream cut by the authority's death is `Unknown`
/// "transport error"): that is an unreachable authority, not a wrong one.
fn describe(url: &str, e: DeviceError) -> SidecarError {
    match e {
        DeviceError::Refused(status) => match status.code() {
            code if std::error::Error::source(&status).is_some()
                || matches!(
                    code,
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ) =>
            {
                SidecarError::Unavailable(format!(
                    "cannot reach the authority at {url}: {}",
                    transport_reason(&status)
                ))
            }
            tonic::Code::Unimplemented | tonic::Code::Unknown | tonic::Code::Internal => {
                SidecarError::Unavailable(format!(
                    "{url} does not answer as an entitle authority: {}",
                    status.message()
                ))
            }
            _ => SidecarError::Refused(format!("the authority refused: {}", status.message())),
        },
        other => SidecarError::Refused(other.to_string()),
    }
}

/// The cause of a transport failure: a TLS reason, or the innermost error ("Connection
/// refused (os error 111)").
fn transport_reason(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => entitle_proto::tls::failure_reason(source),
        None => status.message().to_owned(),
    }
}

impl Sidecar {
    /// The metrics text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.shared.refresh_metrics();
        self.shared.metrics.encode()
    }

    /// Serves `/metrics` on `listener` until the process ends.
    pub async fn serve_metrics(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let shared: Arc<Shared> = Arc::clone(&self.shared);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shared = Arc::clone(&shared);
                async move {
                    shared.refresh_metrics();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared.metrics.encode(),
                    )
                }
            }),
        );
        axum::serve(listener, app).await
    }
}

fn certificate(cert: &pb::IdCertificate) -> IdCertificate {
    IdCertificate {
        smart_account: cert.smart_account.clone(),
        virtual_account: cert.virtual_account.clone(),
        export_controlled: cert.export_controlled,
    }
}

fn no_destination() -> SidecarError {
    SidecarError::FailedPrecondition(
        "no call-home destination is set; first run `callhome destination address http <url>`"
            .into(),
    )
}

/// The first failure of an action of `kind`, as the command's error.
fn first_failure(performed: &[Performed], kind: &str) -> Result<()> {
    match performed
        .iter()
        .filter(|p| p.kind == kind)
        .find_map(|p| p.result.as_ref().err())
    {
        None => Ok(()),
        Some(e) => Err(match e {
            SidecarError::Unavailable(m) => SidecarError::Unavailable(m.clone()),
            SidecarError::Refused(m) => SidecarError::Refused(m.clone()),
            other => SidecarError::FailedPrecondition(other.to_string()),
        }),
    }
}
