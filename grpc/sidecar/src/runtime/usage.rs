//! The usage pipeline: gate snapshots and attached engines' snapshots into the durable
//! spool, and the spool delivered to the authority as signed reports, each row deleted only
//! after the authority's acknowledgement.

use super::*;

impl Shared {
    /// Snapshots the gate into the spool unless the spool is full.
    pub(super) fn spool_gate(&self) -> Result<()> {
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

    pub(super) fn count(&self, usage: &[pb::EntitlementUsage]) {
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

    pub(super) async fn take_snapshots(self: Arc<Self>) {
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

    pub(super) async fn upload(self: Arc<Self>) {
        // Full jitter, so that devices that lost the authority together come back apart.
        let backoff = crate::backoff::Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
        let mut failures = 0;
        loop {
            match self.deliver().await {
                Ok(_) => {
                    failures = 0;
                    tokio::select! {
                        () = self.wake_uploader.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "usage delivery failed");
                    *self.stats.last_delivery_failure.lock() = Some(e.to_string());
                    tokio::time::sleep(backoff.delay_now(failures)).await;
                    failures = failures.saturating_add(1);
                }
            }
        }
    }

    /// Delivers the spool of the current registration; answers how many reports wait.
    pub(super) async fn deliver(&self) -> Result<u64> {
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
