//! A device's client of the `Authority` service: registers with an ID token, renews, asks
//! for licences, deregisters and streams signed usage reports. It checks every answer's
//! signature with the authority's public key (the trust anchor): signed by that key, or by a
//! satellite through a delegation that key signed, unexpired, not revoked and naming the
//! device's account (see [`entitle_proto::delegation`]).
//!
//! The sidecar builds on it; the ingest benchmark and the tests drive it directly.

use ed25519_dalek::{SigningKey, VerifyingKey};
use entitle_proto::pb;
use entitle_proto::pb::authority_client::AuthorityClient;
use tonic::transport::Channel;

use entitle_proto::delegation::{self, Issuer, Revocations};
use entitle_proto::signing;
use entitle_proto::signing::registration_proof_bytes;

/// The agent's input for a verified authorisation: the counts granted, what each licence
/// is worth (TPS per unit and policy, where the authority signed them) and the authority's
/// renewal and deadline, counted from its `issued_at` (so the two clocks need not agree).
pub fn authorized(a: &pb::Authorization) -> entitle_licensing::Authorized {
    let period = |at: i64| {
        u64::try_from(at.saturating_sub(a.issued_at))
            .ok()
            .filter(|&secs| secs > 0)
            .map(std::time::Duration::from_secs)
    };
    entitle_licensing::Authorized {
        granted: a
            .grants
            .iter()
            .map(|g| (g.tag.clone(), g.granted))
            .collect(),
        worth: a
            .grants
            .iter()
            .filter(|g| g.tps_per_unit > 0)
            .map(|g| {
                let policy = match pb::GrantPolicy::try_from(g.policy) {
                    Ok(pb::GrantPolicy::SteadyState) => entitle_engine::Policy::SteadyState,
                    Ok(pb::GrantPolicy::Monitor) => entitle_engine::Policy::Monitor,
                    // Unknown or unspecified: the strictest.
                    _ => entitle_engine::Policy::Hard,
                };
                let worth = entitle_licensing::Worth {
                    tps_per_unit: g.tps_per_unit,
                    policy,
                };
                (g.tag.clone(), worth)
            })
            .collect(),
        renewal: period(a.next_renewal_at),
        deadline: period(a.deadline_at),
    }
}

/// Why a device call failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The authority refused the call.
    #[error("the authority refused: {}", .0.message())]
    Refused(#[from] tonic::Status),
    /// The answer is not signed by the trusted authority, or does not decode.
    #[error("the authority's answer does not verify: {0}")]
    Untrusted(#[from] signing::SignatureError),
    /// A call that needs a registration before it.
    #[error("the device is not registered")]
    NotRegistered,
    /// The answer is not for this device.
    #[error("the authority's answer is for another device")]
    Mismatch,
}

/// The client side of one device.
pub struct DeviceClient {
    client: AuthorityClient<Channel>,
    key: SigningKey,
    authority: VerifyingKey,
    instance: Option<String>,
    counter: u64,
    /// Where each request counter is written before the request goes out, so a restart
    /// resumes above every counter the authority may have accepted.
    counter_file: Option<std::path::PathBuf>,
    /// The account of the device's certificate, and who issued it: a satellite's later
    /// answers must come from the same key and be delegated that account.
    account: Option<(String, String)>,
    issuer: Option<Issuer>,
    /// The newest revocation list of satellite delegations seen, and where it is kept.
    revocations: Revocations,
    revocations_file: Option<std::path::PathBuf>,
}

impl DeviceClient {
    /// A device with `key` talking over `channel` to the authority whose public key is
    /// `authority`.
    pub fn new(channel: Channel, key: SigningKey, authority: VerifyingKey) -> Self {
        let client = AuthorityClient::new(channel)
            .max_decoding_message_size(entitle_proto::signing::MAX_MESSAGE_BYTES);
        Self {
            client,
            key,
            authority,
            instance: None,
            counter: 0,
            counter_file: None,
            account: None,
            issuer: None,
            revocations: Revocations::default(),
            revocations_file: None,
        }
    }

    /// Keeps the newest revocation list of satellite delegations in `path` from now on:
    /// starts from the one saved there (one that does not verify is ignored, as if none
    /// were saved), and saves each newer one an answer brings.
    pub fn persist_revocations(&mut self, path: std::path::PathBuf) {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(signed) = <pb::Signed as prost::Message>::decode(bytes.as_slice())
        {
            self.revocations.learn(&self.authority, Some(&signed));
        }
        self.revocations_file = Some(path);
    }

    /// The account the device is registered to (after a restart, from its saved state):
    /// answers signed by a satellite must be delegated it.
    pub fn resume_account(&mut self, smart_account: String, virtual_account: String) {
        self.account = Some((smart_account, virtual_account));
    }

    /// Opens an answer of the authority: takes a newer revocation list it carries, then
    /// checks the chain to the trusted key.
    fn open_answer<M: prost::Message + Default>(
        &mut self,
        type_name: &'static str,
        signed: &pb::Signed,
    ) -> Result<(M, Issuer), DeviceError> {
        if self
            .revocations
            .learn(&self.authority, signed.revocations.as_deref())
        {
            tracing::info!(
                version = self.revocations.version(),
                "learnt a newer revocation list of satellite delegations"
            );
            if let (Some(path), Some(list)) = (&self.revocations_file, self.revocations.signed())
                && let Err(e) = signing::write_atomic(path, &prost::Message::encode_to_vec(list))
            {
                tracing::warn!(error = %e, path = %path.display(), "cannot save the revocation list");
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (message, issuer) =
            delegation::open(&self.authority, type_name, signed, now, &self.revocations)?;
        if let Some(registered) = &self.issuer
            && !registered.same_signer(&issuer)
        {
            return Err(signing::SignatureError::OtherIssuer {
                found: issuer.describe(),
                expected: registered.describe(),
            }
            .into());
        }
        if let Issuer::Satellite(_) = &issuer {
            let Some((sa, va)) = &self.account else {
                return Err(signing::SignatureError::NotDelegated {
                    satellite: issuer.describe(),
                    account: "(unknown: the device's account is not known)".into(),
                }
                .into());
            };
            issuer.may_sign_for(sa, va)?;
        }
        Ok((message, issuer))
    }

    /// Keeps the request counter in `path` from now on: resumes above the counter saved
    /// there (a restart after the wall clock ran ahead must not send counters the
    /// authority takes for replays), and saves each new one, atomically, before it is used.
    /// A file that does not read as a number is an error; a missing one counts as 0.
    pub fn persist_counter(&mut self, path: std::path::PathBuf) -> std::io::Result<()> {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let saved: u64 = text.trim().parse().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} does not hold a request counter", path.display()),
                    )
                })?;
                self.counter = self.counter.max(saved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.counter_file = Some(path);
        Ok(())
    }

    /// The instance id, once registered.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Picks up an earlier registration (for example after a restart).
    pub fn resume(&mut self, instance: String, last_counter: u64) {
        self.instance = Some(instance);
        self.counter = self.counter.max(last_counter);
    }

    /// The next request counter: above the last one, and above the current time in
    /// microseconds so that a restarted device that lost its counter is still accepted.
    pub fn next_counter(&mut self) -> u64 {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        self.counter = (self.counter + 1).max(micros);
        if let Some(path) = &self.counter_file
            && let Err(e) = signing::write_atomic(path, self.counter.to_string().as_bytes())
        {
            tracing::warn!(error = %e, path = %path.display(), "cannot save the request counter");
        }
        self.counter
    }

    /// Registers with an ID token.
    pub async fn register(
        &mut self,
        token: &str,
        udi: pb::Udi,
    ) -> Result<pb::IdCertificate, DeviceError> {
        let public = self.key.verifying_key().to_bytes().to_vec();
        let proof =
            ed25519_dalek::Signer::sign(&self.key, &registration_proof_bytes(token, &udi, &public));
        let request = pb::RegisterRequest {
            id_token: token.to_owned(),
            udi: Some(udi.clone()),
            device_public_key: public.clone(),
            proof: proof.to_bytes().to_vec(),
        };
        let answer = self.client.register(request).await?.into_inner();
        let certificate = self.certificate(answer, true)?;
        if certificate.device_public_key != public || certificate.udi.as_ref() != Some(&udi) {
            return Err(DeviceError::Mismatch);
        }
        self.instance = Some(certificate.instance_id.clone());
        Ok(certificate)
    }

    /// Registers with an ID token, replacing the registration of the same UDI made with
    /// `previous` (a key this device held before), which proves the replacement.
    pub async fn register_replacing(
        &mut self,
        token: &str,
        udi: pb::Udi,
        previous: &SigningKey,
    ) -> Result<pb::IdCertificate, DeviceError> {
        let public = self.key.verifying_key().to_bytes().to_vec();
        let proof =
            ed25519_dalek::Signer::sign(&self.key, &registration_proof_bytes(token, &udi, &public));
        let previous_key_proof = ed25519_dalek::Signer::sign(
            previous,
            &signing::replacement_proof_bytes(token, &udi, &public),
        );
        let request = pb::RegisterReplacingRequest {
            request: Some(pb::RegisterRequest {
                id_token: token.to_owned(),
                udi: Some(udi.clone()),
                device_public_key: public.clone(),
                proof: proof.to_bytes().to_vec(),
            }),
            previous_key_proof: previous_key_proof.to_bytes().to_vec(),
        };
        let answer = self.client.register_replacing(request).await?.into_inner();
        let certificate = self.certificate(answer, true)?;
        if certificate.device_public_key != public || certificate.udi.as_ref() != Some(&udi) {
            return Err(DeviceError::Mismatch);
        }
        self.instance = Some(certificate.instance_id.clone());
        Ok(certificate)
    }

    /// Opens a certificate: a new registration's (which sets the account and issuer the
    /// device holds to) or a renewal's (which must keep them).
    fn certificate(
        &mut self,
        answer: pb::RegisterResponse,
        registering: bool,
    ) -> Result<pb::IdCertificate, DeviceError> {
        let signed = answer
            .certificate
            .ok_or(signing::SignatureError::Body("IdCertificate"))?;
        if registering {
            self.issuer = None;
            self.account = None;
        }
        let peeked: pb::IdCertificate = signing::peek("IdCertificate", &signed)?;
        let account = (peeked.smart_account.clone(), peeked.virtual_account.clone());
        if self.account.as_ref().is_some_and(|known| *known != account) {
            return Err(DeviceError::Mismatch);
        }
        self.account = Some(account);
        let (certificate, issuer) = match self.open_answer("IdCertificate", &signed) {
            Ok(opened) => opened,
            Err(e) => {
                if registering {
                    self.account = None;
                }
                return Err(e);
            }
        };
        self.issuer = Some(issuer);
        Ok(certificate)
    }

    fn instance_id(&self) -> Result<String, DeviceError> {
        self.instance.clone().ok_or(DeviceError::NotRegistered)
    }

    /// Renews the ID certificate.
    pub async fn renew_id(&mut self) -> Result<pb::IdCertificate, DeviceError> {
        let body = pb::RenewIdBody {
            instance_id: self.instance_id()?,
            counter: self.next_counter(),
        };
        let answer = self
            .client
            .renew_id(signing::sign(&self.key, "RenewIdBody", &body))
            .await?
            .into_inner();
        let certificate = self.certificate(answer, false)?;
        if certificate.instance_id != body.instance_id {
            return Err(DeviceError::Mismatch);
        }
        Ok(certificate)
    }

    /// Asks for licence counts.
    pub async fn authorize(
        &mut self,
        requested: Vec<pb::LicenseCount>,
    ) -> Result<pb::Authorization, DeviceError> {
        let body = pb::AuthorizeBody {
            instance_id: self.instance_id()?,
            counter: self.next_counter(),
            requested,
        };
        let signed = self
            .client
            .authorize(signing::sign(&self.key, "AuthorizeBody", &body))
            .await?
            .into_inner();
        let (authorization, _): (pb::Authorization, _) =
            self.open_answer("Authorization", &signed)?;
        if authorization.instance_id != body.instance_id || authorization.counter != body.counter {
            return Err(DeviceError::Mismatch);
        }
        Ok(authorization)
    }

    /// Deregisters, freeing the instance's licences.
    pub async fn deregister(&mut self) -> Result<(), DeviceError> {
        let body = pb::DeregisterBody {
            instance_id: self.instance_id()?,
            counter: self.next_counter(),
        };
        self.client
            .deregister(signing::sign(&self.key, "DeregisterBody", &body))
            .await?;
        self.instance = None;
        Ok(())
    }

    /// Signs a usage report with the device key.
    pub fn sign_report(&self, report: &pb::UsageReport) -> pb::Signed {
        signing::sign(&self.key, "UsageReport", report)
    }

    /// Streams signed reports and collects their acknowledgements; stops at the first
    /// refusal, returning the acknowledgements before it with the refusal.
    pub async fn report(
        &mut self,
        reports: Vec<pb::Signed>,
    ) -> (Vec<pb::UsageAck>, Option<DeviceError>) {
        let mut acks = Vec::with_capacity(reports.len());
        let mut stream = match self.client.report_usage(tokio_stream::iter(reports)).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => return (acks, Some(status.into())),
        };
        loop {
            match stream.message().await {
                Ok(Some(ack)) => acks.push(ack),
                Ok(None) => return (acks, None),
                Err(status) => return (acks, Some(status.into())),
            }
        }
    }

    /// The underlying gRPC client, for streaming reports directly.
    pub fn client(&mut self) -> &mut AuthorityClient<Channel> {
        &mut self.client
    }
}
