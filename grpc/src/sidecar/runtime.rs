//! The running sidecar: the agent's driver, the snapshot taker and the usage uploader, as
//! tokio tasks around one shared state.
//!
//! - The **driver** owns the agent behind an async mutex. It polls the agent at its next
//!   wakeup (and at least every minute, to watch the wall clock), performs the actions it
//!   asks for (register, renew, authorise, deregister) against the authority, reports their
//!   outcomes, saves the agent's state, and applies changed limits to the gate and to every
//!   attached engine. Operator commands take the same mutex and run the same step, so a
//!   command answers with the outcome of the calls it caused.
//! - The **snapshot taker** drains the sidecar's own gate into the spool every interval.
//!   At capacity it takes nothing: the counts stay in the gate (push back, never drop).
//! - The **uploader** streams the spool, signed, to the authority and deletes each report
//!   only once the authority acknowledged it; on failure it backs off and tries again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use entitle_engine::licensing::{
    Action, Agent, Counts, IdCertificate, IdToken, Limits, State, Status, apply_limits,
};
use entitle_engine::{Clock, CoarseClock, Gate, Sampler, Worker};
use entitle_proto::pb;
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tonic::transport::{Channel, Endpoint};

use super::config::SidecarConfig;
use super::convert::{WallAnchor, unix_millis, usage_to_pb};
use super::metrics::Metrics;
use super::store::{LocalStore, Spooled};
use super::{Result, SidecarError};
use crate::device::{DeviceClient, DeviceError};

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
    origin: Instant,
    core: tokio::sync::Mutex<Core>,
    /// The limits applied last, for attached engines to follow.
    pub(crate) limits: watch::Sender<Limits>,
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
    pub(crate) metrics: Metrics,
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
        let key = device_key(&config)?;
        let store = LocalStore::open(&config.data_dir.join("entitled.db"))?;
        let origin = Instant::now();
        let agent = restore_agent(&config, &store, 1)?;
        let limits = agent.limits();
        let (gate, sampler) = match gate {
            Some(gate) => (gate, None),
            None => {
                let clock = CoarseClock::new()
                    .map_err(|e| SidecarError::Internal(format!("cannot start the clock: {e}")))?;
                let mut builder = Gate::builder(clock);
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
                channel(&url, &config)?,
                key.clone(),
                config.authority_public_key,
            );
            c.resume(instance, 0);
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
            origin,
            core: tokio::sync::Mutex::new(Core { agent, client }),
            limits: watch::Sender::new(limits),
            status: Mutex::new(status),
            stats: Stats::default(),
            wake_driver: Notify::new(),
            wake_uploader: Notify::new(),
            delivering: tokio::sync::Mutex::new(()),
            spooling: Mutex::new(()),
            _sampler: sampler,
        });
        shared.refresh_metrics();
        tokio::spawn(Arc::clone(&shared).drive());
        tokio::spawn(Arc::clone(&shared).take_snapshots());
        tokio::spawn(Arc::clone(&shared).upload());
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

/// The device key: made at first start (mode 0600), read after.
fn device_key(config: &SidecarConfig) -> Result<SigningKey> {
    let path = config.data_dir.join("device.key");
    if !path.exists() {
        let key = crate::crypto::generate_key()
            .map_err(|e| SidecarError::Internal(format!("cannot make a device key: {e}")))?;
        crate::crypto::write_secret(&path, &key.to_bytes())
            .map_err(|e| SidecarError::Config(format!("cannot write {}: {e}", path.display())))?;
        return Ok(key);
    }
    let bytes = crate::crypto::read_secret(&path)
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

fn current_url(config: &SidecarConfig, store: &LocalStore) -> Result<Option<String>> {
    Ok(store
        .callhome_url()?
        .or_else(|| config.callhome_url.clone()))
}

/// A lazily connecting channel to `url`.
fn channel(url: &str, config: &SidecarConfig) -> Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| SidecarError::InvalidArgument(format!("{url:?} is not a URL: {e}")))?
        .connect_timeout(config.call_timeout)
        .timeout(config.call_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
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

/// The innermost cause of a transport failure ("Connection refused (os error 111)").
fn transport_reason(status: &tonic::Status) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    let mut reason = status.message().to_owned();
    while let Some(e) = source {
        reason = e.to_string();
        source = e.source();
    }
    reason
}

impl Shared {
    /// Nanoseconds on the agent's clock (never 0).
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    fn wall_secs() -> i64 {
        unix_millis() / 1000
    }

    fn url(&self) -> Result<Option<String>> {
        current_url(&self.config, &self.store)
    }

    fn client<'a>(&self, core: &'a mut Core) -> Result<&'a mut DeviceClient> {
        if core.client.is_none() {
            let url = self.url()?.ok_or_else(no_destination)?;
            let mut client = DeviceClient::new(
                channel(&url, &self.config)?,
                self.key.clone(),
                self.config.authority_public_key,
            );
            if let Some(instance) = self.store.instance()? {
                client.resume(instance, 0);
            }
            core.client = Some(client);
        }
        core.client
            .as_mut()
            .ok_or_else(|| SidecarError::Internal("no client".into()))
    }

    fn success(&self) {
        *self.stats.last_success_unix.lock() = Some(Self::wall_secs());
    }

    // ----- The driver -----

    async fn drive(self: Arc<Self>) {
        loop {
            let next = {
                let mut core = self.core.lock().await;
                self.step(&mut core).await;
                core.agent.next_wakeup()
            };
            let sleep = next
                .map_or(MAX_SLEEP, |t| {
                    Duration::from_nanos(t.saturating_sub(self.now()))
                })
                .min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake_driver.notified() => {}
            }
        }
    }

    /// Polls the agent and performs what it asks until it asks nothing more (a few rounds at
    /// most: a registration is followed at once by its first authorisation), then saves and
    /// applies. Returns what was performed.
    async fn step(&self, core: &mut Core) -> Vec<Performed> {
        let mut performed = Vec::new();
        for _ in 0..4 {
            let actions = core.agent.poll(self.now(), Self::wall_secs());
            if actions.is_empty() {
                break;
            }
            for action in actions {
                performed.push(self.perform(core, action).await);
            }
        }
        if let Err(e) = self.settle(core) {
            tracing::error!(error = %e, "cannot save the licence state");
        }
        performed
    }

    async fn perform(&self, core: &mut Core, action: Action) -> Performed {
        let url = self.url().ok().flatten().unwrap_or_default();
        let udi = self.config.udi.clone();
        match action {
            Action::Register { token } => {
                let answer = match self.client(core) {
                    Ok(client) => client
                        .register(token.expose(), udi)
                        .await
                        .map_err(|e| describe(&url, e)),
                    Err(e) => Err(e),
                };
                let now = self.now();
                let result = match answer {
                    Ok(cert) => match self.store.set_instance(Some(&cert.instance_id)) {
                        Ok(()) => {
                            self.success();
                            tracing::info!(instance = %cert.instance_id, "registered");
                            core.agent
                                .registration_succeeded(now, certificate(&cert))
                                .map_err(SidecarError::from)
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "registration failed");
                    let _ = core.agent.registration_failed(now, e.to_string());
                }
                Performed {
                    kind: "register",
                    result,
                }
            }
            Action::RenewId => {
                let answer = match self.client(core) {
                    Ok(client) => client.renew_id().await.map_err(|e| describe(&url, e)),
                    Err(e) => Err(e),
                };
                let now = self.now();
                let result = match answer {
                    Ok(cert) => {
                        self.success();
                        core.agent
                            .id_renewed(now, certificate(&cert))
                            .map_err(SidecarError::from)
                    }
                    Err(e) => {
                        let _ = core.agent.id_renewal_failed(now, e.to_string());
                        Err(e)
                    }
                };
                Performed {
                    kind: "renew-id",
                    result,
                }
            }
            Action::Authorize { requests } => {
                let requested = requests
                    .iter()
                    .map(|(tag, count)| pb::LicenseCount {
                        tag: tag.clone(),
                        count: *count,
                    })
                    .collect();
                let answer = match self.client(core) {
                    Ok(client) => client
                        .authorize(requested)
                        .await
                        .map_err(|e| describe(&url, e)),
                    Err(e) => Err(e),
                };
                let now = self.now();
                let result = match answer {
                    Ok(authorization) => {
                        self.success();
                        let granted: Counts = authorization
                            .grants
                            .iter()
                            .map(|g| (g.tag.clone(), g.granted))
                            .collect();
                        core.agent
                            .authorization_received(now, granted)
                            .map_err(SidecarError::from)
                    }
                    Err(e) => {
                        let _ = core.agent.authorization_failed(now, e.to_string());
                        Err(e)
                    }
                };
                Performed {
                    kind: "authorize",
                    result,
                }
            }
            Action::Deregister => {
                // Best effort: the device is already unregistered.
                let result = match self.client(core) {
                    Ok(client) => client.deregister().await.map_err(|e| describe(&url, e)),
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    self.success();
                }
                let cleared = self.store.set_instance(None);
                core.client = None;
                Performed {
                    kind: "deregister",
                    result: result.and(cleared),
                }
            }
        }
    }

    /// Records events, saves the state, applies changed limits, refreshes the status.
    fn settle(&self, core: &mut Core) -> Result<()> {
        let now = self.now();
        let events: Vec<String> = core
            .agent
            .take_events()
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        for event in &events {
            tracing::info!(event = %event, "licence event");
        }
        self.store.append_events(Self::wall_secs(), &events)?;
        let state = serde_json::to_vec(&core.agent.save(now))
            .map_err(|e| SidecarError::Internal(format!("cannot encode the state: {e}")))?;
        self.store.save_agent_state(&state, unix_millis())?;
        let limits = core.agent.limits();
        if *self.limits.borrow() != limits {
            apply_limits(&self.gate, &limits)
                .map_err(|e| SidecarError::Internal(format!("cannot apply limits: {e}")))?;
            tracing::info!(?limits, "limits applied");
            self.limits.send_replace(limits);
        }
        *self.status.lock() = core.agent.status();
        self.refresh_metrics();
        Ok(())
    }

    pub(crate) fn status(&self) -> Status {
        self.status.lock().clone()
    }

    pub(crate) fn refresh_metrics(&self) {
        let depth = self.store.depth().unwrap_or(0);
        self.metrics.update(self, &self.status(), depth);
    }

    // ----- Commands -----

    /// Runs `change` on the agent, then a step; answers what the step performed.
    pub(crate) async fn command(
        &self,
        change: impl FnOnce(&mut Agent, u64) -> Result<()>,
    ) -> Result<(Vec<Performed>, Status)> {
        let mut core = self.core.lock().await;
        change(&mut core.agent, self.now())?;
        let performed = self.step(&mut core).await;
        // The agent's timers may have moved: the driver recomputes its sleep.
        self.wake_driver.notify_one();
        Ok((performed, core.agent.status()))
    }

    pub(crate) async fn register(&self, token: &str) -> Result<String> {
        let token = IdToken::new(token.trim())
            .map_err(|_| SidecarError::InvalidArgument("the ID token is empty".into()))?;
        if self.url()?.is_none() {
            return Err(no_destination());
        }
        let (performed, status) = self
            .command(|agent, now| Ok(agent.register(now, token)?))
            .await?;
        first_failure(&performed, "register")?;
        let registration = &status.registration;
        let (Some(smart_account), Some(virtual_account)) =
            (&registration.smart_account, &registration.virtual_account)
        else {
            // The agent did not ask for the call (it should always, right after a token).
            return Err(SidecarError::Internal(format!(
                "the registration did not complete; the device is {}",
                registration.status
            )));
        };
        let mut message = format!(
            "Registered to smart account {smart_account}, virtual account {virtual_account}."
        );
        match first_failure(&performed, "authorize") {
            Ok(()) => message.push_str(&format!(
                " License authorization: {}.",
                status.authorization.status
            )),
            Err(e) => message.push_str(&format!(" The first authorization failed: {e}")),
        }
        self.wake_uploader.notify_one();
        Ok(message)
    }

    pub(crate) async fn deregister(&self) -> Result<String> {
        if self.store.instance()?.is_none() {
            return Err(SidecarError::FailedPrecondition(
                "the device is not registered".into(),
            ));
        }
        // Deliver usage first: the authority takes no new reports for a deregistered
        // instance.
        let waiting = self.flush().await?;
        if waiting > 0 {
            return Err(SidecarError::FailedPrecondition(format!(
                "{waiting} usage reports are not delivered yet; deregistering now would lose them, so the device stays registered ({})",
                self.stats
                    .last_delivery_failure
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "try again".into())
            )));
        }
        let (performed, _) = self
            .command(|agent, now| Ok(agent.deregister(now)?))
            .await?;
        match first_failure(&performed, "deregister") {
            Ok(()) => Ok(
                "Deregistered; the device is back on its evaluation or unlicensed limits.".into(),
            ),
            Err(e) => Ok(format!(
                "Deregistered locally; telling the authority failed ({e}), so its licences stay in use there until it expires the instance."
            )),
        }
    }

    pub(crate) async fn renew_id(&self) -> Result<String> {
        let (performed, status) = self.command(|agent, now| Ok(agent.renew_id(now)?)).await?;
        first_failure(&performed, "renew-id")?;
        Ok(format!(
            "ID certificate renewed; registration: {}.",
            status.registration.status
        ))
    }

    pub(crate) async fn renew_authorization(&self) -> Result<String> {
        let (performed, status) = self
            .command(|agent, now| Ok(agent.renew_authorization(now)?))
            .await?;
        first_failure(&performed, "authorize")?;
        let grants: Vec<String> = status
            .authorization
            .entitlements
            .iter()
            .map(|e| format!("{} {}/{}", e.licence, e.granted, e.requested))
            .collect();
        Ok(format!(
            "Authorization renewed: {} ({}).",
            status.authorization.status,
            grants.join(", ")
        ))
    }

    pub(crate) async fn set_selection(&self, changes: Vec<(String, u64)>) -> Result<String> {
        if changes.is_empty() {
            return Err(SidecarError::InvalidArgument(
                "name at least one licence".into(),
            ));
        }
        let mut core = self.core.lock().await;
        let mut selection = core.agent.selection().clone();
        for (tag, count) in changes {
            if !core.agent.config().product.knows_licence(&tag) {
                return Err(SidecarError::InvalidArgument(format!(
                    "licence {tag:?} is not in the product catalogue"
                )));
            }
            selection.insert(tag, count);
        }
        let now = self.now();
        core.agent
            .set_selection(now, selection)
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?;
        let performed = self.step(&mut core).await;
        self.wake_driver.notify_one();
        let status = core.agent.status();
        let list: Vec<String> = status
            .selection
            .iter()
            .map(|(tag, n)| format!("{tag} x {n}"))
            .collect();
        let list = if list.is_empty() {
            "nothing".to_owned()
        } else {
            list.join(", ")
        };
        let mut message = format!("Selection: {list}.");
        if performed.iter().any(|p| p.kind == "authorize") {
            match first_failure(&performed, "authorize") {
                Ok(()) => message.push_str(&format!(
                    " Authorized at once: {}.",
                    status.authorization.status
                )),
                Err(e) => message.push_str(&format!(
                    " The authorization it asked for failed ({e}); it is retried."
                )),
            }
        }
        Ok(message)
    }

    pub(crate) async fn set_callhome(&self, url: &str) -> Result<String> {
        super::config::check_url(url)?;
        let mut core = self.core.lock().await;
        self.store.set_callhome_url(url)?;
        core.client = None;
        drop(core);
        self.wake_uploader.notify_one();
        Ok(format!("Call-home destination set to {url}."))
    }

    // ----- Usage -----

    /// Snapshots the gate into the spool unless the spool is full.
    fn spool_gate(&self) -> Result<()> {
        let _one_at_a_time = self.spooling.lock();
        if self.store.depth()? >= self.config.spool_capacity {
            // Push back: the counts stay in the gate until there is room.
            return Ok(());
        }
        let snapshot = self.gate.snapshot();
        let Some(usage) = usage_to_pb(&snapshot) else {
            return Ok(());
        };
        let report = pb::UsageReport {
            window_start: self.anchor.unix_millis(snapshot.window_start_nanos),
            window_end: self.anchor.unix_millis(snapshot.window_end_nanos),
            usage,
            ..Default::default()
        };
        // The snapshot is drained already: store it even if an engine filled the last slot.
        self.store.spool(&report, None, u64::MAX)?;
        self.count(&report.usage);
        self.wake_uploader.notify_one();
        Ok(())
    }

    /// Offers an attached engine's snapshot to the spool.
    pub(crate) fn spool_engine(
        &self,
        engine_id: &str,
        snapshot: &pb::EngineSnapshot,
    ) -> Result<Spooled> {
        let report = pb::UsageReport {
            window_start: snapshot.window_start,
            window_end: snapshot.window_end,
            usage: snapshot.usage.clone(),
            ..Default::default()
        };
        let spooled = self.store.spool(
            &report,
            Some((engine_id, snapshot.sequence)),
            self.config.spool_capacity,
        )?;
        if spooled == Spooled::Stored {
            self.count(&report.usage);
            self.wake_uploader.notify_one();
        }
        Ok(spooled)
    }

    fn count(&self, usage: &[pb::EntitlementUsage]) {
        let mut totals = self.stats.totals.lock();
        for u in usage {
            let t = totals.entry(u.tag.clone()).or_default();
            t.0 += u.admitted;
            t.1 += u.rejected;
            self.metrics.count(&u.tag, u.admitted, u.rejected);
        }
        drop(totals);
        self.refresh_metrics();
    }

    async fn take_snapshots(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.snapshot_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.spool_gate() {
                tracing::error!(error = %e, "cannot spool a snapshot");
            }
        }
    }

    async fn upload(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.deliver().await {
                Ok(_) => {
                    backoff = Duration::from_millis(500);
                    tokio::select! {
                        () = self.wake_uploader.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "usage delivery failed");
                    *self.stats.last_delivery_failure.lock() = Some(e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Delivers the spool of the current registration; answers how many reports wait.
    async fn deliver(&self) -> Result<u64> {
        let _one_at_a_time = self.delivering.lock().await;
        let Some(instance) = self.store.instance()? else {
            return self.store.depth();
        };
        let Some(url) = self.url()? else {
            return self.store.depth();
        };
        let mut client = DeviceClient::new(
            channel(&url, &self.config)?,
            self.key.clone(),
            self.config.authority_public_key,
        );
        client.resume(instance.clone(), 0);
        loop {
            let batch = self.store.pending(&instance, UPLOAD_BATCH)?;
            if batch.is_empty() {
                *self.stats.last_delivery_failure.lock() = None;
                self.refresh_metrics();
                return self.store.depth();
            }
            let signed = batch
                .iter()
                .map(|p| client.sign_report(&p.report))
                .collect();
            let limit = self.config.call_timeout * 3;
            let (acks, error) = match tokio::time::timeout(limit, client.report(signed)).await {
                Ok(answer) => answer,
                Err(_) => (
                    Vec::new(),
                    Some(DeviceError::Refused(tonic::Status::deadline_exceeded(
                        format!("no acknowledgement within {limit:?}"),
                    ))),
                ),
            };
            let ids: Vec<i64> = acks
                .iter()
                .filter(|ack| ack.instance_id == instance)
                .filter_map(|ack| {
                    batch
                        .iter()
                        .find(|p| p.report.sequence == ack.sequence)
                        .map(|p| p.id)
                })
                .collect();
            if !ids.is_empty() {
                self.store.delivered(&ids)?;
                self.stats
                    .delivered
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.success();
                self.refresh_metrics();
            }
            if let Some(e) = error {
                return Err(describe(&url, e));
            }
            if ids.len() < batch.len() {
                return Err(SidecarError::Unavailable(
                    "the authority closed the report stream early".into(),
                ));
            }
        }
    }

    /// Snapshots the gate and delivers what the current registration has spooled.
    pub(crate) async fn flush(&self) -> Result<u64> {
        self.spool_gate()?;
        match self.deliver().await {
            Ok(waiting) => Ok(waiting),
            Err(e) => {
                *self.stats.last_delivery_failure.lock() = Some(e.to_string());
                self.store.depth()
            }
        }
    }

    pub(crate) fn spool_depth(&self) -> u64 {
        self.store.depth().unwrap_or(0)
    }

    pub(crate) fn callhome_url(&self) -> Option<String> {
        self.url().ok().flatten()
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
