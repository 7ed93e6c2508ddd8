//! The usage pipeline: gate snapshots and attached engines' snapshots into the durable
//! spool (every second or so, summed into one report per report interval), and the spool
//! delivered to the authority as signed reports, each row deleted only after the
//! authority's acknowledgement.

use super::*;
use crate::store::{Pending, merge_report};

/// What the authority answered for one batch of reports.
#[derive(Default)]
struct Answered {
    /// Rows stored now or before: delete them.
    delivered: Vec<i64>,
    /// Rows whose instance retired without storing them.
    retired: Vec<i64>,
    error: Option<SidecarError>,
}

impl Shared {
    /// Snapshots the gate into the spool unless the spool is full. A snapshot drained but
    /// not stored (the store failed) is kept and stored with the next one, so a failed
    /// write loses nothing and counts nothing twice.
    pub(super) fn spool_gate(&self) -> Result<()> {
        let _one_at_a_time = self.spooling.lock();
        let mut unspooled = self.unspooled.lock();
        if unspooled.is_none() && !self.store.has_room(self.config.spool_capacity)? {
            // Push back: the counts stay in the gate until there is room.
            return Ok(());
        }
        let snapshot = self.gate.snapshot();
        let drained = usage_to_pb(&snapshot).map(|usage| pb::UsageReport {
            window_start: self.anchor.unix_millis(snapshot.window_start_nanos),
            window_end: self.anchor.unix_millis(snapshot.window_end_nanos),
            usage,
            ..Default::default()
        });
        let report = match (unspooled.take(), drained) {
            (None, None) => return Ok(()),
            (Some(report), None) | (None, Some(report)) => report,
            (Some(mut kept), Some(drained)) => {
                merge_report(&mut kept, &drained);
                kept
            }
        };
        // The snapshot is drained already: store it even if an engine filled the last slot.
        if let Err(e) = self.store.spool(&report, None, u64::MAX) {
            *unspooled = Some(report);
            return Err(e);
        }
        self.count(&report.usage);
        Ok(())
    }

    /// Closes the report being summed in the spool and wakes the uploader.
    pub(super) fn seal(&self) -> Result<()> {
        let _one_at_a_time = self.spooling.lock();
        if self.store.seal()? {
            self.wake_uploader.notify_one();
        }
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

    /// Every local interval the gate goes into the spool; every report interval the
    /// summed snapshots become one report.
    pub(super) async fn take_snapshots(self: Arc<Self>) {
        let local = self.config.local_snapshot_interval;
        let per_report =
            (self.config.snapshot_interval.as_millis() / local.as_millis().max(1)).max(1);
        let mut tick = tokio::time::interval(local);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut ticks = 0u128;
        loop {
            tick.tick().await;
            if let Err(e) = self.spool_gate() {
                tracing::error!(error = %e, "cannot spool a snapshot");
            }
            ticks += 1;
            if ticks.is_multiple_of(per_report)
                && let Err(e) = self.seal()
            {
                tracing::error!(error = %e, "cannot close a report in the spool");
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

    /// Delivers the spool: the current registration's reports, then those bound to an
    /// instance that has since retired (each stored before and acknowledged as such, or
    /// moved to the current instance and sent again). Answers how many closed reports wait
    /// (a report being summed meanwhile is not counted: it goes at the next interval).
    pub(super) async fn deliver(&self) -> Result<u64> {
        let _one_at_a_time = self.delivering.lock().await;
        let Some(instance) = self.store.instance()? else {
            return self.store.waiting();
        };
        let Some(url) = self.url()? else {
            return self.store.waiting();
        };
        let mut client = DeviceClient::new(
            channel(&url, &self.config, &self.store)?,
            self.key.clone(),
            self.trust.lock().authority(),
        );
        client.resume(instance.clone(), 0);
        loop {
            loop {
                let batch = self.store.pending(&instance, UPLOAD_BATCH)?;
                if batch.is_empty() {
                    break;
                }
                let answered = self.send(&mut client, &url, &batch).await?;
                if let Some(e) = answered.error {
                    return Err(e);
                }
                if !answered.retired.is_empty() {
                    return Err(SidecarError::Refused(format!(
                        "the authority retired product instance {instance} (registered again, or deregistered there); its usage waits for the next registration"
                    )));
                }
            }
            // After the current reports, so that these never hold them up.
            let stale = self.store.stale(&instance, UPLOAD_BATCH)?;
            if stale.is_empty() {
                break;
            }
            let answered = self.send(&mut client, &url, &stale).await?;
            if !answered.retired.is_empty() {
                tracing::info!(
                    reports = answered.retired.len(),
                    instance = %instance,
                    "reports of a retired instance move to the current one"
                );
                self.store.rebind(&answered.retired, &instance)?;
            }
            if let Some(e) = answered.error {
                return Err(e);
            }
        }
        *self.stats.last_delivery_failure.lock() = None;
        self.refresh_metrics();
        self.store.waiting()
    }

    /// Sends one batch, deletes what the authority stored, and answers the rest.
    async fn send(
        &self,
        client: &mut DeviceClient,
        url: &str,
        batch: &[Pending],
    ) -> Result<Answered> {
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
        let mut answered = Answered::default();
        for ack in &acks {
            let Some(p) = batch.iter().find(|p| {
                p.report.instance_id == ack.instance_id && p.report.sequence == ack.sequence
            }) else {
                continue;
            };
            if ack.retired {
                answered.retired.push(p.id);
            } else {
                answered.delivered.push(p.id);
            }
        }
        if !answered.delivered.is_empty() {
            self.store.delivered(&answered.delivered)?;
            self.stats
                .delivered
                .fetch_add(answered.delivered.len() as u64, Ordering::Relaxed);
            self.success();
            self.refresh_metrics();
        }
        answered.error = match error {
            Some(e) => Some(describe(url, e)),
            None if answered.delivered.len() + answered.retired.len() < batch.len() => Some(
                SidecarError::Unavailable("the authority closed the report stream early".into()),
            ),
            None => None,
        };
        Ok(answered)
    }

    /// Snapshots the gate and delivers what the current registration has spooled.
    pub(crate) async fn flush(&self) -> Result<u64> {
        self.spool_gate()?;
        self.seal()?;
        match self.deliver().await {
            Ok(waiting) => Ok(waiting),
            Err(e) => {
                *self.stats.last_delivery_failure.lock() = Some(e.to_string());
                self.store.waiting()
            }
        }
    }

    pub(crate) fn spool_depth(&self) -> u64 {
        self.store.depth().unwrap_or(0)
    }

    pub(crate) fn callhome_url(&self) -> Option<String> {
        self.url().ok().flatten()
    }

    /// The HTTP proxy call home goes through, if any (with its credentials: mask them
    /// before showing it).
    pub(crate) fn callhome_proxy(&self) -> Option<String> {
        current_proxy(&self.config, &self.store).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::RawConfig;
    use entitle_engine::Limit;

    /// A sidecar embedded around `gate`, with no authority and timers too long to tick.
    async fn embedded(dir: &std::path::Path, gate: &Arc<Gate<CoarseClock>>) -> Sidecar {
        let key = dir.join("authority.pub");
        let authority = entitle_proto::signing::generate_key().unwrap();
        std::fs::write(&key, authority.verifying_key().to_bytes()).unwrap();
        let text = format!(
            "data_dir = {:?}\nauthority_public_key = {key:?}\nsnapshot_interval_secs = 3600\n\
             local_snapshot_interval_secs = 3600\n[udi]\nproduct_id = \"CPAR\"\nserial = \"U1\"\n\
             [agent]\nselection = {{ \"PAR-TPS\" = 10 }}\n",
            dir.join("data"),
        );
        let config = toml::from_str::<RawConfig>(&text)
            .unwrap()
            .validate()
            .unwrap();
        Sidecar::start(config, Some(Arc::clone(gate)))
            .await
            .unwrap()
    }

    fn spooled_admitted(shared: &Shared) -> u64 {
        shared
            .store
            .history(100)
            .unwrap()
            .iter()
            .flat_map(|h| &h.usage)
            .filter(|u| u.tag == "PAR-TPS")
            .map(|u| u.admitted)
            .sum()
    }

    #[tokio::test]
    async fn a_failed_spool_write_keeps_the_drained_counts_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Gate::builder(CoarseClock::new().unwrap());
        builder
            .register("PAR-TPS", Limit::hard(1_000_000).unwrap())
            .unwrap();
        let gate = builder.build();
        let sidecar = embedded(dir.path(), &gate).await;
        let shared = &sidecar.shared;
        let tag = gate.entitlement("PAR-TPS").unwrap();
        let mut worker = gate.worker();
        let mut admitted = 0;
        // Checks `n` times; answers how many were admitted (the sidecar's limits apply).
        let mut check = |n: u64| {
            let before = admitted;
            for _ in 0..n {
                if worker.check(tag).is_admit() {
                    admitted += 1;
                }
            }
            admitted - before
        };

        let first = check(700);
        assert!(first > 0, "some admitted");
        shared.store.fail_spools.store(1, Ordering::SeqCst);
        assert!(shared.spool_gate().is_err(), "the write fails");
        assert_eq!(spooled_admitted(shared), 0);
        std::thread::sleep(Duration::from_millis(20));
        let second = check(300);
        shared.spool_gate().unwrap();
        assert_eq!(
            spooled_admitted(shared),
            first + second,
            "what was drained before the failed write is in the next one"
        );
        assert_eq!(shared.stats.totals.lock()["PAR-TPS"].0, first + second);

        // Two failures in a row, then the flush: still all of it, once.
        std::thread::sleep(Duration::from_millis(20));
        check(50);
        shared.store.fail_spools.store(2, Ordering::SeqCst);
        assert!(shared.spool_gate().is_err());
        std::thread::sleep(Duration::from_millis(20));
        check(25);
        assert!(shared.flush().await.is_err(), "the flush's write fails too");
        assert_eq!(shared.flush().await.unwrap(), 1, "one report waits");
        assert_eq!(spooled_admitted(shared), admitted);
        assert_eq!(shared.store.depth().unwrap(), 1, "summed into one report");
    }
}
