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
//! ```no_run
//! # async fn run(gate: std::sync::Arc<entitle_engine::Gate<entitle_engine::CoarseClock>>) {
//! use entitle_sidecar::{AttachOptions, Attachment};
//!
//! let attachment = Attachment::start(gate, "http://127.0.0.1:7070", AttachOptions::default())
//!     .expect("a valid sidecar URL");
//! // ... the packet path checks against `gate`; limits follow the licence ...
//! attachment.flush(std::time::Duration::from_secs(10)).await.expect("delivered");
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use entitle_engine::{Clock, Gate};
use entitle_licensing::apply_limits;
use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Endpoint;

use super::convert::{WallAnchor, table_from_pb, usage_to_pb};
use super::{Result, SidecarError};

/// How an engine attaches.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// How often a snapshot is taken and sent.
    pub snapshot_interval: Duration,
    /// The most snapshots kept unacknowledged before taking no more (push back).
    pub max_unacked: usize,
    /// The engine's id, unique per process start (random by default).
    pub engine_id: String,
}

impl Default for AttachOptions {
    fn default() -> Self {
        let id = entitle_proto::signing::random_bytes::<8>().unwrap_or_default();
        Self {
            snapshot_interval: Duration::from_secs(5),
            max_unacked: 1024,
            engine_id: id.iter().map(|b| format!("{b:02x}")).collect(),
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
    /// Attaches `gate` to the sidecar at `url` on the current tokio runtime, reconnecting
    /// as needed until dropped.
    pub fn start<C: Clock>(gate: Arc<Gate<C>>, url: &str, options: AttachOptions) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| SidecarError::InvalidArgument(format!("{url:?} is not a URL: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
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
}

impl<C: Clock> Runner<C> {
    async fn run(mut self, endpoint: Endpoint, mut flushes: mpsc::Receiver<oneshot::Sender<()>>) {
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
        endpoint: &Endpoint,
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
            }),
        );
        for snapshot in &self.queue {
            send(&tx, pb::attach_request::Kind::Snapshot(snapshot.clone()));
        }
        let mut inbound = client
            .attach(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        self.shown.connected.store(true, Ordering::Relaxed);
        let mut tick = tokio::time::interval(self.options.snapshot_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(s) = self.take() {
                        send(&tx, pb::attach_request::Kind::Snapshot(s));
                    }
                }
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
                    Ok(Some(pb::AttachResponse { kind: Some(kind) })) => self.handle(kind)?,
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

    /// Answers `done` once everything taken so far is acknowledged.
    fn flush(&mut self, done: oneshot::Sender<()>) {
        match self.queue.back() {
            None => {
                let _ = done.send(());
            }
            Some(last) => self.waiters.push((last.sequence, done)),
        }
    }

    fn handle(&mut self, kind: pb::attach_response::Kind) -> std::result::Result<(), String> {
        match kind {
            pb::attach_response::Kind::Limits(table) => {
                let limits = table_from_pb(&table).map_err(|e| e.to_string())?;
                apply_limits(&self.gate, &limits).map_err(|e| e.to_string())?;
                self.shown.limit_tables.fetch_add(1, Ordering::Relaxed);
                tracing::info!(?limits, "limits from the sidecar applied");
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
        Ok(())
    }
}
