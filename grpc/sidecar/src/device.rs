//! A device's client of the `Authority` service: registers with an ID token, renews, asks
//! for licences, deregisters and streams signed usage reports. It checks every answer's
//! signature with the authority's public key (the trust anchor).
//!
//! The sidecar builds on it; the ingest benchmark and the tests drive it directly.

use ed25519_dalek::{SigningKey, VerifyingKey};
use entitle_proto::pb;
use entitle_proto::pb::authority_client::AuthorityClient;
use tonic::transport::Channel;

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
        }
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
        let certificate = self.certificate(answer)?;
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
        let certificate = self.certificate(answer)?;
        if certificate.device_public_key != public || certificate.udi.as_ref() != Some(&udi) {
            return Err(DeviceError::Mismatch);
        }
        self.instance = Some(certificate.instance_id.clone());
        Ok(certificate)
    }

    fn certificate(&self, answer: pb::RegisterResponse) -> Result<pb::IdCertificate, DeviceError> {
        let signed = answer
            .certificate
            .ok_or(signing::SignatureError::Body("IdCertificate"))?;
        Ok(signing::open(&self.authority, "IdCertificate", &signed)?)
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
        let certificate = self.certificate(answer)?;
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
        let authorization: pb::Authorization =
            signing::open(&self.authority, "Authorization", &signed)?;
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
