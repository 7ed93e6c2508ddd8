//! The operator's commands (`license smart register`, `renew`, selection, call-home
//! destination...): each changes the agent, runs a driver step and answers its outcome.

use super::*;

impl Shared {
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
        crate::config::check_url(url)?;
        crate::config::check_destination(
            url,
            self.config.authority_ca.as_deref(),
            self.config.allow_plaintext,
        )?;
        let mut core = self.core.lock().await;
        self.store.set_callhome_url(url)?;
        core.client = None;
        drop(core);
        self.wake_uploader.notify_one();
        Ok(format!("Call-home destination set to {url}."))
    }

    /// `callhome destination proxy <url>` (`""`: none, call home directly).
    pub(crate) async fn set_callhome_proxy(&self, proxy: &str) -> Result<String> {
        let proxy = proxy.trim();
        if !proxy.is_empty() {
            crate::config::check_proxy(proxy)?;
        }
        let mut core = self.core.lock().await;
        self.store.set_callhome_proxy(proxy)?;
        core.client = None;
        drop(core);
        self.wake_uploader.notify_one();
        Ok(if proxy.is_empty() {
            "Call home goes directly to the authority.".into()
        } else {
            format!(
                "Call home goes through the HTTP proxy {}.",
                entitle_proto::tls::proxy_shown(proxy)
            )
        })
    }

    /// `license smart trust renew`: trusts the configured keys instead of the pinned ones
    /// (see [`crate::trust`]); logged as a trust event.
    pub(crate) async fn renew_trust(&self) -> Result<String> {
        let mut core = self.core.lock().await;
        let renewed = self.trust.lock().renew(&self.store)?;
        let Some(message) = renewed else {
            let trust = self.trust.lock().to_pb();
            return Ok(if trust.authority_pinned {
                format!(
                    "The configured keys are the trusted ones already (authority key {}).",
                    trust.authority_key
                )
            } else {
                "Nothing is pinned yet: the device trusts the configured keys, and pins them at its first registration.".into()
            });
        };
        // The next call checks answers against the new key.
        core.client = None;
        drop(core);
        tracing::warn!("{message}");
        self.record(&[crate::events::Recorded::Trust {
            message: message.clone(),
            warning: false,
        }]);
        self.wake_driver.notify_one();
        self.wake_uploader.notify_one();
        Ok(format!("{}.", upper_first(&message)))
    }
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
