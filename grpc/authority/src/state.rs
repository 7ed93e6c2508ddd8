//! The authority's shared state: its keys, its store and its clock, opened from a data
//! directory, and the checks every service call makes with them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use entitle_proto::pb;
use parking_lot::RwLock;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::store::{Db, Location, OptionalExtension as _, params};
use crate::{DataDir, WallClock, codes_key};
use crate::{Periods, Store, ledger};
use entitle_codes::CodeSigningKey;
use entitle_proto::signing;

/// The authority's state shared by both services.
pub struct AuthorityState {
    pub(crate) store: Store,
    pub(crate) key: SigningKey,
    /// Signs reservation authorisation codes.
    pub(crate) codes_key: CodeSigningKey,
    pub(crate) periods: Periods,
    pub(crate) clock: WallClock,
    /// Public keys of registered instances, to check report signatures without the store.
    pub(crate) device_keys: RwLock<HashMap<String, signing::BatchKey>>,
    pub(crate) admin_credential_hash: Vec<u8>,
    /// The satellite role, when this authority is one.
    pub(crate) satellite: Option<crate::satellite::Satellite>,
    /// The newest signed revocation list of satellite delegations: the cloud's own, or
    /// the one a satellite last got from the cloud. Attached to every answer.
    pub(crate) revocations: RwLock<Option<pb::Signed>>,
}

/// What an authority serves as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The cloud: it holds the accounts and signs delegations.
    Cloud,
    /// A satellite, refusing devices' calls after `sync_deadline` seconds without a sync.
    Satellite {
        /// Seconds.
        sync_deadline: i64,
    },
}

impl AuthorityState {
    /// Opens the cloud authority in `dir` (made by [`init`]).
    pub fn open(dir: &Path, periods: Periods, clock: WallClock) -> Result<Arc<Self>> {
        Self::open_as(dir, periods, clock, Role::Cloud)
    }

    /// Opens the authority in `dir` in `role`: a satellite's directory holds a delegation
    /// (see [`crate::satellite::install`]), a cloud's none.
    pub fn open_as(
        dir: &Path,
        periods: Periods,
        clock: WallClock,
        role: Role,
    ) -> Result<Arc<Self>> {
        let location = DataDir::new(dir).location()?;
        Self::open_with(dir, &location, periods, clock, role)
    }

    /// As [`open_as`](Self::open_as), with the store at `location` instead of the one the
    /// directory names. The database must be this authority's (made by its `init`) or, on
    /// SQLite, not yet claimed by any.
    pub fn open_with(
        dir: &Path,
        location: &Location,
        periods: Periods,
        clock: WallClock,
        role: Role,
    ) -> Result<Arc<Self>> {
        let files = DataDir::new(dir);
        let io = |what: &str, e: std::io::Error| {
            Error::FailedPrecondition(format!("cannot read {what} in {}: {e}", dir.display()))
        };
        let seed =
            signing::read_secret(&files.signing_key()).map_err(|e| io("the signing key", e))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| Error::FailedPrecondition("the signing key file is corrupt".into()))?;
        let credential = signing::read_secret(&files.admin_credential())
            .map_err(|e| io("the admin credential", e))?;
        if matches!(location, Location::Sqlite(path) if !path.exists()) {
            return Err(Error::FailedPrecondition(format!(
                "{} holds no authority; run `entitle-authority init` first",
                dir.display()
            )));
        }
        let key = SigningKey::from_bytes(&seed);
        let satellite = match role {
            Role::Cloud if files.delegation().exists() => {
                return Err(Error::FailedPrecondition(format!(
                    "{} holds a satellite (it has a delegation); serve it with --role satellite",
                    dir.display()
                )));
            }
            Role::Cloud => None,
            Role::Satellite { sync_deadline } => Some(crate::satellite::Satellite::open(
                &files,
                &key.verifying_key(),
                sync_deadline,
            )?),
        };
        let store = Store::open_at(location)?;
        let public = key.verifying_key().to_bytes().to_vec();
        store.run_blocking(move |conn| claim_database(conn, &public))?;
        let revocations = first_revocations(&store, &key, satellite.as_ref(), clock())?;
        Ok(Arc::new(Self {
            store,
            codes_key: codes_key(&files)?,
            key,
            periods,
            clock,
            device_keys: RwLock::new(HashMap::new()),
            admin_credential_hash: Sha256::digest(credential.trim_ascii()).to_vec(),
            satellite,
            revocations: RwLock::new(revocations),
        }))
    }

    /// Signs `message` as `type_name` with the authority's key, attaching (on a
    /// satellite) its delegation and the newest revocation list.
    pub(crate) fn sign<M: prost::Message>(&self, type_name: &str, message: &M) -> pb::Signed {
        let mut signed = signing::sign(&self.key, type_name, message);
        if let Some(satellite) = &self.satellite {
            signed.delegation = Some(Box::new(satellite.signed_delegation()));
        }
        signed.revocations = self.revocations.read().clone().map(Box::new);
        signed
    }

    /// On the cloud: signs the revocation list anew from the store (after a revocation).
    pub(crate) async fn refresh_revocations(&self) -> Result<()> {
        let now = self.now();
        let list = self
            .store
            .run(move |conn| ledger::satellites::revocation_list(conn, now))
            .await?;
        *self.revocations.write() =
            (list.version > 0).then(|| signing::sign(&self.key, "RevocationList", &list));
        Ok(())
    }

    /// The public key that verifies this authority's signatures.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The key of a registered instance, from the cache or the store.
    pub(crate) async fn device_key(&self, instance: &str) -> Result<signing::BatchKey> {
        if let Some(key) = self.device_keys.read().get(instance) {
            return Ok(*key);
        }
        let id = instance.to_owned();
        let (bytes, _) = self
            .store
            .run(move |conn| ledger::device_key(conn, &id))
            .await?;
        let key = signing::BatchKey::new(signing::verifying_key(&bytes)?);
        self.device_keys.write().insert(instance.to_owned(), key);
        Ok(key)
    }

    /// Checks a device-signed request: decodes it to find the instance, then verifies it
    /// with that instance's key.
    pub(crate) async fn open_device_request<M: prost::Message + Default>(
        &self,
        type_name: &'static str,
        signed: &pb::Signed,
        instance_of: impl Fn(&M) -> &str,
    ) -> Result<M> {
        let body: M = signing::peek(type_name, signed)?;
        let key = self.device_key(instance_of(&body)).await?;
        signing::verify(key.key(), type_name, signed)?;
        Ok(body)
    }

    /// Decodes and verifies usage reports, each with its instance's key, in one batch.
    /// Returns each report with the hash of its signed body, in order; the first failure
    /// ends the list.
    pub(crate) async fn open_reports(
        &self,
        batch: &[pb::Signed],
    ) -> Vec<Result<(pb::UsageReport, Vec<u8>)>> {
        let mut opened = Vec::with_capacity(batch.len());
        let mut keyed = Vec::with_capacity(batch.len());
        for signed in batch {
            let report: pb::UsageReport = match signing::peek("UsageReport", signed) {
                Ok(report) => report,
                Err(e) => {
                    opened.push(Err(e.into()));
                    break;
                }
            };
            match self.device_key(&report.instance_id).await {
                Ok(key) => keyed.push((key, signed, report)),
                Err(e) => {
                    opened.push(Err(e));
                    break;
                }
            }
        }
        let items: Vec<_> = keyed
            .iter()
            .map(|(key, signed, _)| (*key, *signed))
            .collect();
        let checks = signing::verify_all("UsageReport", &items);
        let mut verified = Vec::with_capacity(keyed.len() + 1);
        for ((_, signed, report), check) in keyed.into_iter().zip(checks) {
            match check {
                Ok(()) => verified.push(Ok((report, Sha256::digest(&signed.body).to_vec()))),
                Err(e) => {
                    verified.push(Err(e.into()));
                    break;
                }
            }
        }
        // A decoding or key failure came after every report that verified.
        verified.extend(opened);
        verified
    }

    /// Whether `header` (the `authorization` metadata) carries the admin credential.
    pub fn admin_allowed(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let presented = Sha256::digest(presented.trim().as_bytes());
        presented
            .iter()
            .zip(&self.admin_credential_hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The revocation list an authority starts with: the cloud signs its own from the store; a
/// satellite keeps the last one the cloud sent it.
fn first_revocations(
    store: &Store,
    key: &SigningKey,
    satellite: Option<&crate::satellite::Satellite>,
    now: i64,
) -> Result<Option<pb::Signed>> {
    match satellite {
        None => {
            let list =
                store.run_blocking(move |conn| ledger::satellites::revocation_list(conn, now))?;
            Ok((list.version > 0).then(|| signing::sign(key, "RevocationList", &list)))
        }
        Some(_) => Ok(store
            .run_blocking(|conn| crate::satellite::sync::meta_blob(conn, "revocations"))?
            .filter(|bytes| !bytes.is_empty())
            .and_then(|bytes| prost::Message::decode(bytes.as_slice()).ok())),
    }
}

/// The public key of the authority whose database this is, if one claimed it.
pub(crate) fn authority_key(conn: &Db) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'authority_key'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// Claims the database for the authority with `public` key, or refuses one that another
/// authority claimed: its devices' certificates would not verify with this key.
pub(crate) fn claim_database(conn: &Db, public: &[u8]) -> Result<()> {
    match authority_key(conn)? {
        Some(owner) if owner == public => Ok(()),
        Some(owner) => Err(Error::FailedPrecondition(format!(
            "the database belongs to another authority (key {}; this data directory's is {})",
            crate::fingerprint(&owner),
            crate::fingerprint(public)
        ))),
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('authority_key', ?1)",
                params![public],
            )?;
            Ok(())
        }
    }
}
