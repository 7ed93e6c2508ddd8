//! The satellite role: an authority on the customer's network that serves devices for the
//! virtual accounts the cloud delegated to it, signs what it issues with its own key and
//! attaches its delegation, so that devices trusting the cloud's key accept it.
//!
//! It syncs with the cloud over the network ([`network_sync`]) or by files carried across
//! an air gap (`sync export` / `sync import`); [`sync`] holds the store's side of both.
//! Past its sync deadline without a sync it refuses devices' calls, so their licences run
//! out by their own deadline rules.
//!
//! A satellite's data directory is an authority's (`entitle-authority init`) plus
//! `delegation.bin` (the cloud's Signed(Delegation) for this satellite's key) and
//! `cloud.pub` (the cloud's public key), both put there by [`install`].

pub mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use entitle_proto::pb;
use entitle_proto::{delegation, signing};
use parking_lot::RwLock;
use prost::Message as _;

use crate::error::{Error, Result};
use crate::{AuthorityState, DataDir};

/// How long a satellite may go without a sync by default: the product's "at least once a
/// month".
pub const DEFAULT_SYNC_DEADLINE: i64 = 30 * 86_400;

/// The satellite's own state beside the authority's.
pub struct Satellite {
    /// Its name in its delegation.
    pub(crate) name: String,
    /// The cloud's key: answers and delegations are checked with it.
    pub(crate) cloud_key: VerifyingKey,
    delegation: RwLock<(pb::Signed, pb::Delegation)>,
    /// Seconds without a sync after which devices' calls are refused.
    pub(crate) deadline: i64,
    files: DataDir,
}

impl Satellite {
    /// The satellite of `files`, whose signing key's public half is `own`.
    pub(crate) fn open(files: &DataDir, own: &VerifyingKey, deadline: i64) -> Result<Self> {
        let cloud_key = std::fs::read(files.cloud_key()).map_err(|e| {
            Error::FailedPrecondition(format!(
                "cannot read the cloud's key {}: {e}",
                files.cloud_key().display()
            ))
        })?;
        let cloud_key = signing::verifying_key(&cloud_key).map_err(|_| {
            Error::FailedPrecondition("the cloud's key file does not hold a key".into())
        })?;
        let bytes = std::fs::read(files.delegation()).map_err(|e| {
            Error::FailedPrecondition(format!(
                "no delegation installed ({e}): run `entitle-authority satellite install` first"
            ))
        })?;
        let signed = pb::Signed::decode(bytes.as_slice())
            .map_err(|_| Error::FailedPrecondition("the delegation file is corrupt".into()))?;
        let decoded = check(&cloud_key, own, &signed)?;
        Ok(Self {
            name: decoded.satellite.clone(),
            cloud_key,
            delegation: RwLock::new((signed, decoded)),
            deadline,
            files: DataDir::new(files.path()),
        })
    }

    /// The signed delegation, to attach to what the satellite signs.
    pub(crate) fn signed_delegation(&self) -> pb::Signed {
        self.delegation.read().0.clone()
    }

    /// The delegation.
    pub(crate) fn delegation(&self) -> pb::Delegation {
        self.delegation.read().1.clone()
    }

    /// Takes a renewed delegation from the cloud's answer when it is newer and for this
    /// satellite's key; keeps it in the data directory.
    fn renew(&self, own: &VerifyingKey, offered: Option<&pb::Signed>) -> Result<bool> {
        let Some(offered) = offered else {
            return Ok(false);
        };
        let decoded = check(&self.cloud_key, own, offered)?;
        if decoded.serial <= self.delegation.read().1.serial {
            return Ok(false);
        }
        signing::write_atomic(&self.files.delegation(), &offered.encode_to_vec())
            .map_err(|e| Error::Internal(format!("cannot keep the renewed delegation: {e}")))?;
        tracing::info!(
            serial = decoded.serial,
            expires_at = decoded.expires_at,
            "the cloud renewed this satellite's delegation"
        );
        *self.delegation.write() = (offered.clone(), decoded);
        Ok(true)
    }
}

/// Checks that `signed` is a delegation by the cloud for the key `own`.
fn check(cloud: &VerifyingKey, own: &VerifyingKey, signed: &pb::Signed) -> Result<pb::Delegation> {
    let delegation: pb::Delegation = signing::open(cloud, "Delegation", signed).map_err(|_| {
        Error::FailedPrecondition(
            "the delegation is not signed by the cloud key given (another cloud, or altered)"
                .into(),
        )
    })?;
    if delegation.satellite_public_key != own.as_bytes() {
        return Err(Error::FailedPrecondition(format!(
            "the delegation is for another satellite's key (satellite {:?}), not this one's",
            delegation.satellite
        )));
    }
    Ok(delegation)
}

/// Installs a delegation in the satellite data directory `dir`: checks that the cloud key
/// in `cloud_key` signed it for this satellite's key, and keeps both. Answers a line
/// naming what was installed.
pub fn install(
    dir: &std::path::Path,
    delegation_file: &std::path::Path,
    cloud_key: &std::path::Path,
) -> Result<String> {
    let files = DataDir::new(dir);
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))
    };
    let own = std::fs::read(files.public_key()).map_err(|e| {
        Error::FailedPrecondition(format!(
            "{} holds no authority ({e}); run `entitle-authority init` there first",
            dir.display()
        ))
    })?;
    let own = signing::verifying_key(&own).map_err(|_| {
        Error::FailedPrecondition("the satellite's public key file is corrupt".into())
    })?;
    let cloud = signing::verifying_key(&read(cloud_key)?).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} does not hold a public key",
            cloud_key.display()
        ))
    })?;
    let bytes = read(delegation_file)?;
    let signed = pb::Signed::decode(bytes.as_slice()).map_err(|_| {
        Error::InvalidArgument(format!(
            "{} is not a delegation file",
            delegation_file.display()
        ))
    })?;
    let delegation = check(&cloud, &own, &signed)?;
    let io = |e: std::io::Error| Error::Internal(e.to_string());
    std::fs::write(files.cloud_key(), cloud.as_bytes()).map_err(io)?;
    signing::write_atomic(&files.delegation(), &signed.encode_to_vec()).map_err(io)?;
    let accounts: Vec<String> = delegation
        .accounts
        .iter()
        .map(|a| format!("{}/{}", a.smart_account, a.virtual_account))
        .collect();
    Ok(format!(
        "installed delegation {} for satellite {:?}: {}, until unix {}",
        delegation.serial,
        delegation.satellite,
        accounts.join(", "),
        delegation.expires_at
    ))
}

impl AuthorityState {
    /// The satellite role, or the error for a call only a satellite takes.
    pub(crate) fn as_satellite(&self) -> Result<&Satellite> {
        self.satellite.as_ref().ok_or_else(|| {
            Error::FailedPrecondition("this authority is the cloud, not a satellite".into())
        })
    }

    /// Refuses a call only the cloud takes.
    pub(crate) fn not_on_satellite(&self, what: &str) -> Result<()> {
        match &self.satellite {
            None => Ok(()),
            Some(s) => Err(Error::FailedPrecondition(format!(
                "this authority is satellite {:?}: {what} is done on the cloud and arrives here at the next sync",
                s.name
            ))),
        }
    }

    /// On a satellite past its sync deadline, refuses devices' calls.
    pub(crate) async fn check_sync_deadline(&self) -> Result<()> {
        let Some(satellite) = &self.satellite else {
            return Ok(());
        };
        let last = self
            .store
            .run(|conn| sync::meta_i64(conn, "last_sync_at"))
            .await?
            .max(satellite.delegation().issued_at);
        let now = self.now();
        if now >= last + satellite.deadline {
            return Err(Error::Unavailable(format!(
                "satellite {:?} has not synced with the cloud for {} (its deadline is {}): ask its operator to sync it",
                satellite.name,
                days_hours(now - last),
                days_hours(satellite.deadline)
            )));
        }
        Ok(())
    }

    /// On the cloud: takes a satellite's sync request, from the network or a file (see
    /// [`crate::ledger::satellites::take_sync`]).
    pub async fn take_sync(
        &self,
        signed: pb::Signed,
    ) -> Result<crate::ledger::satellites::SyncOutcome> {
        self.not_on_satellite("taking satellites' syncs")?;
        let (now, key, codes_key) = (self.now(), self.key.clone(), self.codes_key.clone());
        let revocations = self.revocations.read().clone();
        let outcome = self
            .store
            .run(move |conn| {
                let keys = crate::ledger::satellites::CloudKeys {
                    signing: &key,
                    codes: &codes_key,
                };
                crate::ledger::satellites::take_sync(
                    conn,
                    now,
                    &keys,
                    revocations.as_ref(),
                    &signed,
                )
            })
            .await?;
        tracing::info!(summary = %outcome.summary, "satellite synced");
        Ok(outcome)
    }

    /// On a satellite: makes the next sync request, signed, with the delegation attached.
    pub async fn export_sync(&self) -> Result<pb::Signed> {
        let satellite = self.as_satellite()?;
        let (name, serial) = (satellite.name.clone(), satellite.delegation().serial);
        let now = self.now();
        let request = self
            .store
            .run(move |conn| sync::request(conn, now, &name, serial))
            .await?;
        tracing::info!(
            sequence = request.sequence,
            instances = request.instances.len(),
            reports = request.reports.len(),
            "sync request made"
        );
        Ok(self.sign("SyncRequest", &request))
    }

    /// Applies the cloud's signed answer.
    pub async fn import_answer(&self, signed: &pb::Signed) -> Result<sync::Applied> {
        let satellite = self.as_satellite()?;
        let answer: pb::SyncAnswer = signing::open(&satellite.cloud_key, "SyncAnswer", signed)
            .map_err(|_| {
                Error::Unauthenticated(
                    "the answer does not verify with the cloud's key: it was altered, or is from another cloud".into(),
                )
            })?;
        if answer.satellite != satellite.name {
            return Err(Error::FailedPrecondition(format!(
                "the answer is for satellite {:?}, not this one ({:?})",
                answer.satellite, satellite.name
            )));
        }
        let now = self.now();
        let taken = answer.clone();
        let applied = self
            .store
            .run(move |conn| sync::apply(conn, now, &taken))
            .await?;
        if applied.changed {
            satellite.renew(&self.public_key(), answer.delegation.as_ref())?;
            self.learn_revocations(answer.revocations.as_ref()).await?;
        }
        tracing::info!(summary = %applied.summary, "sync answer imported");
        Ok(applied)
    }

    /// Keeps a newer revocation list from the cloud, and passes it on to devices.
    async fn learn_revocations(&self, offered: Option<&pb::Signed>) -> Result<()> {
        let Some(satellite) = &self.satellite else {
            return Ok(());
        };
        let mut held = match self.revocations.read().as_ref() {
            Some(signed) => delegation::Revocations::from_signed(&satellite.cloud_key, signed)
                .unwrap_or_default(),
            None => delegation::Revocations::default(),
        };
        if !held.learn(&satellite.cloud_key, offered) {
            return Ok(());
        }
        let signed = held.signed().cloned();
        let bytes = signed
            .as_ref()
            .map(|s| s.encode_to_vec())
            .unwrap_or_default();
        self.store
            .run(move |conn| sync::set_meta(conn, "revocations", &bytes))
            .await?;
        let own = satellite.delegation().serial;
        if held.is_revoked(own) {
            tracing::error!(
                serial = own,
                "the cloud revoked this satellite's delegation: devices will refuse what it signs"
            );
        }
        *self.revocations.write() = signed;
        Ok(())
    }

    /// On a satellite: queues a reservation for the cloud to authorise at the next sync
    /// (the codes devices trust are the cloud's). Answers it without its codes.
    pub(crate) async fn queue_reservation_request(
        &self,
        r: pb::AuthorizeReservationRequest,
    ) -> Result<pb::Reservation> {
        self.as_satellite()?;
        let parsed = entitle_codes::parse_request(&r.request_code)
            .map_err(crate::reservations::code_error)?;
        let udi = pb::Udi {
            product_id: parsed.udi.product_id().to_owned(),
            serial: parsed.udi.serial().to_owned(),
        };
        let now = self.now();
        let queued = r.clone();
        self.store
            .run(move |conn| {
                crate::ledger::virtual_account_id(
                    conn,
                    &queued.smart_account,
                    &queued.virtual_account,
                )?;
                sync::queue_reservation(
                    conn,
                    now,
                    &pb::QueuedReservation {
                        authorize: Some(queued.clone()),
                        ..Default::default()
                    },
                )
            })
            .await?;
        Ok(pb::Reservation {
            kind: r.kind,
            smart_account: r.smart_account,
            virtual_account: r.virtual_account,
            udi: Some(udi),
            request_sequence: parsed.sequence,
            licenses: r.licenses,
            created_at: now,
            ..Default::default()
        })
    }

    /// On a satellite: queues a return code for the cloud to take at the next sync.
    pub(crate) async fn queue_reservation_return(
        &self,
        r: pb::ReturnReservationRequest,
    ) -> Result<pb::ReturnReservationResponse> {
        self.as_satellite()?;
        let parsed =
            entitle_codes::parse_return(&r.return_code).map_err(crate::reservations::code_error)?;
        let udi = pb::Udi {
            product_id: parsed.udi.product_id().to_owned(),
            serial: parsed.udi.serial().to_owned(),
        };
        let now = self.now();
        self.store
            .run(move |conn| {
                sync::queue_reservation(
                    conn,
                    now,
                    &pb::QueuedReservation {
                        return_code: r.return_code.clone(),
                        ..Default::default()
                    },
                )
            })
            .await?;
        Ok(pb::ReturnReservationResponse {
            reservation: Some(pb::Reservation {
                udi: Some(udi),
                request_sequence: parsed.sequence,
                ..Default::default()
            }),
            already_returned: false,
        })
    }

    /// The satellite's delegation and how it stands with the cloud.
    pub async fn satellite_status(&self) -> Result<pb::SatelliteInfo> {
        let satellite = self.as_satellite()?;
        let (last_sequence, last_sync_at, waiting) = self
            .store
            .run(|conn| {
                Ok((
                    sync::meta_i64(conn, "answer_sequence")?,
                    sync::meta_i64(conn, "last_sync_at")?,
                    sync::waiting(conn)?,
                ))
            })
            .await?;
        let delegation = satellite.delegation();
        let now = self.now();
        // Before the first sync, the deadline counts from the delegation.
        let deadline_at = last_sync_at.max(delegation.issued_at) + satellite.deadline;
        let left = deadline_at - now;
        let warning = if left <= 0 {
            format!(
                "the sync deadline passed {} ago: devices' calls are refused until the satellite syncs",
                days_hours(-left)
            )
        } else if left < (satellite.deadline / 4).max(1) {
            format!(
                "{} since the last sync; devices' calls will be refused in {} unless it syncs",
                days_hours(now - last_sync_at.max(delegation.issued_at)),
                days_hours(left)
            )
        } else {
            String::new()
        };
        Ok(pb::SatelliteInfo {
            name: delegation.satellite,
            serial: delegation.serial,
            accounts: delegation.accounts,
            issued_at: delegation.issued_at,
            expires_at: delegation.expires_at,
            revoked_at: 0,
            last_sequence: last_sequence as u64,
            last_sync_at,
            sync_deadline_at: deadline_at,
            reports_waiting: waiting,
            warning,
        })
    }
}

fn days_hours(secs: i64) -> String {
    if secs < 3_600 {
        return format!("{}m {}s", secs / 60, secs % 60);
    }
    format!("{}d {}h", secs / 86_400, secs % 86_400 / 3_600)
}

/// Where the satellite's network sync calls the cloud.
#[derive(Clone, Debug)]
pub struct CloudLink {
    /// The cloud's device address (`https://...`).
    pub url: String,
    /// The CA file its TLS certificate is checked against; the system's roots when absent.
    pub ca: Option<std::path::PathBuf>,
    /// How often to sync.
    pub interval: Duration,
}

/// Syncs with the cloud now, then every `link.interval`; at once again while reports are
/// still waiting. Failures are logged and retried at the next interval; the deadline
/// warning is logged at each sync.
pub async fn network_sync(state: Arc<AuthorityState>, link: CloudLink) {
    loop {
        for _ in 0..100 {
            match sync_once(&state, &link).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(cloud = %link.url, error = %e, "sync with the cloud failed; retrying at the next interval");
                    break;
                }
            }
        }
        if let Ok(status) = state.satellite_status().await
            && !status.warning.is_empty()
        {
            tracing::warn!(warning = %status.warning, "satellite sync deadline");
        }
        tokio::time::sleep(link.interval).await;
    }
}

/// One network sync now; answers whether reports are still waiting (more than one request
/// carries).
pub async fn sync_once(state: &AuthorityState, link: &CloudLink) -> anyhow::Result<bool> {
    let channel = entitle_proto::tls::endpoint(
        &link.url,
        link.ca.as_deref(),
        false,
        Duration::from_secs(30),
    )?
    .connect()
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the cloud at {}: {}",
            link.url,
            entitle_proto::tls::failure_reason(&e)
        )
    })?;
    let mut client = pb::satellite_sync_client::SatelliteSyncClient::new(channel)
        .max_decoding_message_size(SYNC_MESSAGE_BYTES)
        .max_encoding_message_size(SYNC_MESSAGE_BYTES);
    let request = state.export_sync().await?;
    let answer = client
        .sync(request)
        .await
        .map_err(|s| anyhow::anyhow!("the cloud refused the sync: {}", s.message()))?
        .into_inner();
    let applied = state.import_answer(&answer).await?;
    tracing::info!(summary = %applied.summary, "synced with the cloud");
    let waiting = state.store.run(sync::waiting).await?;
    Ok(waiting > 0)
}

/// The largest sync message either side takes: a request of [`sync::REPORTS_PER_SYNC`]
/// reports and a busy satellite's instances fit well within it.
pub const SYNC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
