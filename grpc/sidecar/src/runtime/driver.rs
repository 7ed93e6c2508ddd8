//! The agent driver: one task that polls the licence agent at its next wakeup, performs
//! what it asks against the authority (register, renew, authorize, deregister), saves the
//! state and applies every change of limits through the hot swap.

use super::*;

impl Shared {
    /// Nanoseconds on the agent's clock (never 0).
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    pub(super) fn wall_secs() -> i64 {
        unix_millis() / 1000
    }

    pub(super) fn url(&self) -> Result<Option<String>> {
        current_url(&self.config, &self.store)
    }

    pub(super) fn client<'a>(&self, core: &'a mut Core) -> Result<&'a mut DeviceClient> {
        if core.client.is_none() {
            let url = self.url()?.ok_or_else(no_destination)?;
            let mut client = DeviceClient::new(
                channel(&url, &self.config, &self.store)?,
                self.key.clone(),
                self.trust.lock().authority(),
            );
            keep_counter(&mut client, &self.config)?;
            if let Some(instance) = self.store.instance()? {
                client.resume(instance, 0);
                resume_account(&mut client, &core.agent.status());
            }
            core.client = Some(client);
        }
        core.client
            .as_mut()
            .ok_or_else(|| SidecarError::Internal("no client".into()))
    }

    /// Pins the authority key a registration succeeded with (see [`crate::trust`]); a store
    /// failure is logged, and the key pinned at the next registration.
    fn pin_authority_key(&self) {
        let pinned = self.trust.lock().pin_authority(&self.store);
        match pinned {
            Ok(Some(message)) => self.record(&[crate::events::Recorded::Trust {
                message,
                warning: false,
            }]),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot pin the authority key"),
        }
    }

    pub(super) fn success(&self) {
        *self.stats.last_success_unix.lock() = Some(Self::wall_secs());
    }

    // ----- The driver -----

    pub(super) async fn drive(self: Arc<Self>) {
        loop {
            let next = {
                let mut core = self.core.lock().await;
                self.step(&mut core).await;
                match (core.agent.next_wakeup(), core.retry.due()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
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
    pub(super) async fn step(&self, core: &mut Core) -> Vec<Performed> {
        let mut performed = Vec::new();
        self.retry_due(core);
        for _ in 0..4 {
            let actions = core.agent.poll(self.now(), Self::wall_secs());
            if actions.is_empty() {
                break;
            }
            for action in actions {
                // The events that led to the call, then the call, then (at settling) its
                // consequences.
                self.record_agent_events(core);
                let done = self.perform(core, action).await;
                self.record(&[done.recorded()]);
                performed.push(done);
            }
        }
        self.note_calls(core, &performed);
        if let Err(e) = self.settle(core) {
            tracing::error!(error = %e, "cannot save the licence state");
        }
        performed
    }

    pub(super) async fn perform(&self, core: &mut Core, action: Action) -> Performed {
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
                            self.pin_authority_key();
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
                        // What each licence is worth and when to call again: as signed.
                        core.agent
                            .authorization_signed(now, crate::device::authorized(&authorization))
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
    pub(super) fn settle(&self, core: &mut Core) -> Result<()> {
        let now = self.now();
        self.record_agent_events(core);
        let state = serde_json::to_vec(&core.agent.save(now))
            .map_err(|e| SidecarError::Internal(format!("cannot encode the state: {e}")))?;
        self.store.save_agent_state(&state, unix_millis())?;
        let limits = core.agent.limits();
        if *self.limits.borrow() != limits {
            tracing::info!(?limits, "licence limits changed");
            self.limits.send_replace(limits);
            // Shared out among the gates: shrinks first, grows once they are applied.
            self.reshare();
        }
        *self.status.lock() = core.agent.status();
        self.refresh_metrics();
        Ok(())
    }

    pub(crate) fn status(&self) -> Status {
        self.status.lock().clone()
    }

    pub(crate) fn refresh_metrics(&self) {
        let limits = self.limits.borrow().clone();
        self.metrics.update(&Reading {
            limits: &limits,
            status: &self.status(),
            spool_depth: self.store.depth().unwrap_or(0),
            spool_capacity: self.config.spool_capacity,
            delivered: self.stats.delivered.load(Ordering::Relaxed),
            last_callhome_unix: *self.stats.last_success_unix.lock(),
            attached: self.stats.attached.load(Ordering::Relaxed),
        });
    }
}
