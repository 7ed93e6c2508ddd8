//! A packet server's side of `Attach`: its engine runs in its own process, streams its
//! snapshots to the sidecar and takes the sidecar's limit tables through the hot swap.
//!
//! Each snapshot gets a sequence (1, 2, 3...) and stays in memory until the sidecar
//! acknowledges it as durable in its spool; after a reconnect every unacknowledged snapshot
//! is sent again, in order, and the sidecar stores each sequence once. With too many
//! unacknowledged (the sidecar away, or its spool full), no new snapshot is taken: the
//! counts wait in the gate. So the sidecar being killed loses nothing and counts nothing
//! twice.
//!
//! The sidecar shares its licence among its gates by demand (see the sidecar's `share`
//! module): every report interval the attachment reports what the gate was offered per
//! second and which of the sidecar's tables it applied last, and it applies each table the
//! sidecar sends and reports at once, which acknowledges it. The sidecar answers each report
//! with a lease; when no report of the attachment's was acknowledged within the lease (the
//! sidecar away, or the stream stuck), the attachment closes the share it was given
//! ([`entitle_engine::Limit::closed`] for every counted rate) before the sidecar frees it,
//! so a lost sidecar never leaves a share counted twice. It tells the sidecar it reconnects
//! to which share it still enforces.
//!
//! ```no_run
//! # async fn run(gate: std::sync::Arc<entitle_engine::Gate<entitle_engine::CoarseClock>>) {
//! use entitle_sidecar::{AttachOptions, Attachment};
//!
//! // The sidecar's socket; `http://host:port` with `AttachOptions::credential` on TCP.
//! let address = "unix:/var/lib/entitled/entitled.sock";
//! let attachment = Attachment::start(gate, address, AttachOptions::default())
//!     .expect("a valid sidecar address");
//! // ... the packet path checks against `gate`; limits follow the licence ...
//! attachment.flush(std::time::Duration::from_secs(10)).await.expect("delivered");
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use entitle_engine::{Clock, Gate, Limit, Policy};
use entitle_licensing::apply_limits;
use entitle_proto::local::{Credential, LocalEndpoint};
use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::convert::{WallAnchor, table_from_pb, table_to_pb, usage_to_pb};
use super::{Result, SidecarError};

/// How an engine attaches.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// How often a snapshot is taken and sent (1 s by default): what a crash of the packet
    /// server can lose. The sidecar sums them into one report per its report interval.
    pub snapshot_interval: Duration,
    /// How often the gate's demand is reported (which also keeps its lease).
    pub report_interval: Duration,
    /// The most snapshots kept unacknowledged before taking no more (push back).
    pub max_unacked: usize,
    /// The engine's id, unique per process start (random by default).
    pub engine_id: String,
    /// The sidecar's TCP credential (its `api.credential`), for an `http://` address; not
    /// needed on its Unix socket.
    pub credential: Option<Credential>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        let id = entitle_proto::signing::random_bytes::<8>().unwrap_or_default();
        Self {
            snapshot_interval: Duration::from_secs(1),
            report_interval: Duration::from_secs(1),
            max_unacked: 1024,
            engine_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            credential: None,
        }
    }
}

/// What the attachment shows its owner.
#[derive(Default)]
struct Shown {
    connected: AtomicBool,
    limit_tables: AtomicU64,
    acked: AtomicU64,
    /// Per tag, admitted in every snapshot taken.
    admitted: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<String>>,
}

/// A running attachment of a gate to a sidecar.
pub struct Attachment {
    flushes: mpsc::Sender<oneshot::Sender<()>>,
    shown: Arc<Shown>,
    task: tokio::task::JoinHandle<()>,
}

impl Attachment {
    /// Attaches `gate` to the sidecar at `address` (`unix:PATH`, or `http://host:port`
    /// with [`AttachOptions::credential`]) on the current tokio runtime, reconnecting as
    /// needed until dropped.
    pub fn start<C: Clock>(
        gate: Arc<Gate<C>>,
        address: &str,
        options: AttachOptions,
    ) -> Result<Self> {
        let endpoint = LocalEndpoint::new(address, options.credential.as_ref())
            .map_err(|e| SidecarError::InvalidArgument(e.to_string()))?
            .connect_timeout(Duration::from_secs(5));
        let (flushes, requests) = mpsc::channel(16);
        let shown = Arc::new(Shown::default());
        let runner = Runner {
            anchor: WallAnchor::now(gate.clock().now()),
            tags: gate
                .limits()
                .iter()
                .map(|(_, tag, _)| tag.to_owned())
                .collect(),
            gate,
            options,
            shown: Arc::clone(&shown),
            queue: VecDeque::new(),
            next_sequence: 1,
            waiters: Vec::new(),
            share: None,
            applied: 0,
            reports: VecDeque::new(),
            next_report: 1,
            lease_ends: None,
            offered: None,
        };
        let task = tokio::spawn(runner.run(endpoint, requests));
        Ok(Self {
            flushes,
            shown,
            task,
        })
    }

    /// Takes a snapshot now and waits until the sidecar acknowledged every snapshot taken.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.flushes
            .send(done)
            .await
            .map_err(|_| SidecarError::Internal("the attachment stopped".into()))?;
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SidecarError::Internal("the attachment stopped".into())),
            Err(_) => Err(SidecarError::Unavailable(format!(
                "the sidecar did not acknowledge every snapshot within {timeout:?}{}",
                self.last_error()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// Whether the stream to the sidecar is up.
    pub fn is_connected(&self) -> bool {
        self.shown.connected.load(Ordering::Relaxed)
    }

    /// How many limit tables the sidecar sent (and were applied).
    pub fn limit_tables(&self) -> u64 {
        self.shown.limit_tables.load(Ordering::Relaxed)
    }

    /// The highest snapshot sequence the sidecar acknowledged.
    pub fn acked(&self) -> u64 {
        self.shown.acked.load(Ordering::Relaxed)
    }

    /// Admitted by `tag` over every snapshot taken so far.
    pub fn admitted(&self, tag: &str) -> u64 {
        self.shown.admitted.lock().get(tag).copied().unwrap_or(0)
    }

    /// Why the stream last failed.
    pub fn last_error(&self) -> Option<String> {
        self.shown.last_error.lock().clone()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Runner<C: Clock> {
    gate: Arc<Gate<C>>,
    anchor: WallAnchor,
    tags: Vec<String>,
    options: AttachOptions,
    shown: Arc<Shown>,
    queue: VecDeque<pb::EngineSnapshot>,
    next_sequence: u64,
    /// Flushes waiting for the sequence they need acknowledged.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    /// The share from the sidecar in force, if any (for the hello after a reconnect).
    share: Option<Vec<(String, Limit)>>,
    /// The sequence of the last table applied on this stream.
    applied: u64,
    /// Reports sent and not yet acknowledged, with when they went.
    reports: VecDeque<(u64, tokio::time::Instant)>,
    next_report: u64,
    /// When the share must be closed unless a later report is acknowledged.
    lease_ends: Option<tokio::time::Instant>,
    /// The gate's offered counts at the last timed report.
    offered: Option<(tokio::time::Instant, Vec<u64>)>,
}

/// Sleeps until `deadline`, or forever.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<C: Clock> Runner<C> {
    async fn run(
        mut self,
        endpoint: LocalEndpoint,
        mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session(&endpoint, &mut flushes).await {
                Ok(()) => return,
                Err(e) => {
                    // A session that got through starts the backoff afresh.
                    if self.shown.connected.swap(false, Ordering::Relaxed) {
                        backoff = Duration::from_millis(100);
                    }
                    tracing::warn!(error = %e, "attachment to the sidecar lost");
                    *self.shown.last_error.lock() = Some(e);
                }
            }
            // Flushes keep waiting across reconnects; new ones are queued meanwhile.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    () = until(self.lease_ends) => self.close_share(),
                    request = flushes.recv() => match request {
                        Some(done) => self.flush(done),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One stream to the sidecar; `Ok` when the owner is gone.
    async fn session(
        &mut self,
        endpoint: &LocalEndpoint,
        flushes: &mut mpsc::Receiver<oneshot::Sender<()>>,
    ) -> std::result::Result<(), String> {
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = SidecarClient::new(channel);
        let (tx, rx) = mpsc::unbounded_channel();
        let send = |tx: &mpsc::UnboundedSender<pb::AttachRequest>, kind| {
            let _ = tx.send(pb::AttachRequest { kind: Some(kind) });
        };
        send(
            &tx,
            pb::attach_request::Kind::Hello(pb::AttachHello {
                engine_id: self.options.engine_id.clone(),
                tags: self.tags.clone(),
                applied: self.share.as_ref().map(|t| table_to_pb(t, None)),
            }),
        );
        for snapshot in &self.queue {
            send(&tx, pb::attach_request::Kind::Snapshot(snapshot.clone()));
        }
        // Sequences are per stream; an old stream's reports are not answered any more.
        self.applied = 0;
        self.reports.clear();
        send(&tx, pb::attach_request::Kind::Report(self.report()));
        let mut inbound = client
            .attach(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        self.shown.connected.store(true, Ordering::Relaxed);
        let mut tick = tokio::time::interval(self.options.snapshot_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut reporting = tokio::time::interval(self.options.report_interval);
        reporting.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reporting.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(s) = self.take() {
                        send(&tx, pb::attach_request::Kind::Snapshot(s));
                    }
                }
                _ = reporting.tick() => {
                    send(&tx, pb::attach_request::Kind::Report(self.report()));
                }
                () = until(self.lease_ends) => self.close_share(),
                request = flushes.recv() => match request {
                    Some(done) => {
                        let taken = self.take();
                        self.flush(done);
                        if let Some(s) = taken {
                            send(&tx, pb::attach_request::Kind::Snapshot(s));
                        }
                    }
                    None => return Ok(()),
                },
                message = inbound.message() => match message {
                    Ok(Some(pb::AttachResponse { kind: Some(kind) })) => {
                        if self.handle(kind)? {
                            // The table is applied: say so at once.
                            send(&tx, pb::attach_request::Kind::Report(self.report()));
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("the sidecar closed the stream".into()),
                    Err(status) => return Err(status.message().to_owned()),
                },
            }
        }
    }

    /// Takes a snapshot into the queue, unless the queue is full or nothing happened.
    fn take(&mut self) -> Option<pb::EngineSnapshot> {
        if self.queue.len() >= self.options.max_unacked {
            return None;
        }
        let snapshot = self.gate.snapshot();
        let usage = usage_to_pb(&snapshot)?;
        let mut admitted = self.shown.admitted.lock();
        for u in &usage {
            *admitted.entry(u.tag.clone()).or_default() += u.admitted;
        }
        drop(admitted);
        let taken = pb::EngineSnapshot {
            sequence: self.next_sequence,
            window_start: self.anchor.unix_millis(snapshot.window_start_nanos),
            window_end: self.anchor.unix_millis(snapshot.window_end_nanos),
            usage,
        };
        self.next_sequence += 1;
        self.queue.push_back(taken.clone());
        Some(taken)
    }

    /// A report: the table applied last on this stream and, in a timed report, the demand
    /// since the previous timed one.
    fn report(&mut self) -> pb::GateReport {
        let now = tokio::time::Instant::now();
        // A report right after a table carries no demand, so that its short window does not
        // read as a burst; the timed ones measure about one report interval each.
        let timed = self
            .offered
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= self.options.report_interval / 2);
        let mut demand = Vec::new();
        if timed {
            let offered = self.gate.offered();
            if let Some((at, before)) = &self.offered {
                let seconds = now.duration_since(*at).as_secs_f64().max(1e-3);
                demand = self
                    .tags
                    .iter()
                    .zip(offered.iter().zip(before.iter()))
                    .map(|(tag, (now, then))| pb::TagDemand {
                        tag: tag.clone(),
                        offered_tps: (now.saturating_sub(*then) as f64 / seconds).round() as u64,
                    })
                    .collect();
            }
            self.offered = Some((now, offered));
        }
        let sequence = self.next_report;
        self.next_report += 1;
        self.reports.push_back((sequence, now));
        // Only the oldest unacknowledged report matters for the lease; keep a bounded few.
        while self.reports.len() > 64 {
            self.reports.pop_front();
        }
        pb::GateReport {
            sequence,
            applied: self.applied,
            demand,
        }
    }

    /// The lease ran out: close every counted rate of the share before the sidecar frees it.
    fn close_share(&mut self) {
        self.lease_ends = None;
        let Some(share) = self.share.take() else {
            return;
        };
        let closed: Vec<(String, Limit)> = share
            .into_iter()
            .filter(|(_, l)| matches!(l.policy(), Some(Policy::Hard | Policy::SteadyState)))
            .map(|(tag, _)| (tag, Limit::closed()))
            .collect();
        match apply_limits(&self.gate, &closed) {
            Ok(()) => {
                tracing::warn!("no word from the sidecar within the lease: the share is closed")
            }
            Err(e) => tracing::error!(error = %e, "cannot close the share"),
        }
    }

    /// Answers `done` once everything taken so far is acknowledged.
    fn flush(&mut self, done: oneshot::Sender<()>) {
        match self.queue.back() {
            None => {
                let _ = done.send(());
            }
            Some(last) => self.waiters.push((last.sequence, done)),
        }
    }

    /// Handles one message; answers whether a table was applied (to report at once).
    fn handle(&mut self, kind: pb::attach_response::Kind) -> std::result::Result<bool, String> {
        match kind {
            pb::attach_response::Kind::Limits(table) => {
                let limits = table_from_pb(&table).map_err(|e| e.to_string())?;
                apply_limits(&self.gate, &limits).map_err(|e| e.to_string())?;
                self.shown.limit_tables.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    ?limits,
                    sequence = table.sequence,
                    "share from the sidecar applied"
                );
                if table.sequence > 0 {
                    self.applied = table.sequence;
                    let mut share = self.share.take().unwrap_or_default();
                    for (tag, limit) in limits {
                        match share.iter_mut().find(|(t, _)| *t == tag) {
                            Some(entry) => entry.1 = limit,
                            None => share.push((tag, limit)),
                        }
                    }
                    self.share = Some(share);
                    return Ok(true);
                }
            }
            pb::attach_response::Kind::ReportAck(ack) => {
                while self.reports.front().is_some_and(|(s, _)| *s < ack.sequence) {
                    self.reports.pop_front();
                }
                if let Some((_, sent)) = self.reports.front().filter(|(s, _)| *s == ack.sequence) {
                    // The sidecar heard it no earlier than it went: it counts the share
                    // until at least then plus the lease. Close a tenth before.
                    let lease = Duration::from_millis(ack.lease_millis);
                    self.lease_ends = Some(*sent + lease - lease / 10);
                    self.reports.pop_front();
                }
            }
            pb::attach_response::Kind::Ack(ack) => {
                while self
                    .queue
                    .front()
                    .is_some_and(|s| s.sequence <= ack.sequence)
                {
                    self.queue.pop_front();
                }
                self.shown.acked.fetch_max(ack.sequence, Ordering::Relaxed);
                let (ready, waiting) = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|(needed, _)| *needed <= ack.sequence);
                self.waiters = waiting;
                for (_, done) in ready {
                    let _ = done.send(());
                }
            }
        }
        Ok(false)
    }
}
