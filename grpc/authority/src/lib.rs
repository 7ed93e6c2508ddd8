//! The licence authority (the cloud "CSSM" role): the `Authority` service devices call and
//! the `AuthorityAdmin` service the admin CLI calls, over one SQLite store.
//!
//! A data directory holds everything: `authority.db` (the store), `signing.key` (the
//! Ed25519 key that signs certificates and authorisations, mode 0600), `authority.pub` (its
//! public half, the devices' trust anchor), `codes.key` (the BLS12-381 key that signs
//! reservation authorisation codes, mode 0600), `codes.pub` (its public half, the devices'
//! trust anchor for codes), `admin.credential` (the admin secret, mode 0600),
//! `viewer.credential` (the portal's read-only secret, mode 0600, see [`portal`]) and `tls/`
//! (the TLS identity every link is served with, see [`tls`]). A satellite's also holds its
//! delegation from the cloud (see [`satellite`]).

#![forbid(unsafe_code)]

pub mod error;
pub mod ledger;
pub mod portal;
pub mod program;
pub mod reservations;
pub mod satellite;
mod service;
mod state;
pub mod store;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use entitle_codes::CodeSigningKey;
use entitle_proto::signing;

use crate::error::{Error, Result};
pub use entitle_proto::signing::MAX_MESSAGE_BYTES;
pub use ledger::Periods;
/// The global allocator of the `entitle-authority` binary, for a program that serves an
/// authority in process (the ingest bench) to run as that binary does. Under usage load
/// glibc's allocator took about a tenth of the process's CPU; with mimalloc the reports
/// stored a second rose by 10-26% (BENCHMARKS.md, "mimalloc").
pub use mimalloc::MiMalloc as Allocator;
pub use service::{AdminService, DeviceService, admin_interceptor, serve, serve_tls};
pub use state::{AuthorityState, Role};
pub use store::Store;
pub use tls::TlsSource;

/// Unix seconds now; replaceable so tests can move the authority's time.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> WallClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// The files of an authority's data directory.
pub struct DataDir(PathBuf);

impl DataDir {
    /// The data directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }
    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// The store, when it is SQLite.
    pub fn database(&self) -> PathBuf {
        self.0.join("authority.db")
    }
    /// The PostgreSQL URL of the store, when it is PostgreSQL (secret: it may hold a
    /// password).
    pub fn database_url(&self) -> PathBuf {
        self.0.join("database.url")
    }
    /// Where the store is: the URL `init` recorded, or the SQLite file.
    pub fn location(&self) -> Result<store::Location> {
        if self.database_url().exists() {
            let url = signing::read_secret(&self.database_url()).map_err(|e| {
                Error::FailedPrecondition(format!(
                    "cannot read {}: {e}",
                    self.database_url().display()
                ))
            })?;
            let url = String::from_utf8(url)
                .map_err(|_| Error::FailedPrecondition("database.url is not text".into()))?;
            return store::Location::parse(Some(url.trim()), &self.database());
        }
        Ok(store::Location::Sqlite(self.database()))
    }
    /// The signing key (secret).
    pub fn signing_key(&self) -> PathBuf {
        self.0.join("signing.key")
    }
    /// The public key devices trust.
    pub fn public_key(&self) -> PathBuf {
        self.0.join("authority.pub")
    }
    /// The admin credential (secret).
    pub fn admin_credential(&self) -> PathBuf {
        self.0.join("admin.credential")
    }
    /// The portal's read-only viewer credential (secret).
    pub fn viewer_credential(&self) -> PathBuf {
        self.0.join("viewer.credential")
    }
    /// The key that signs reservation codes (secret).
    pub fn codes_key(&self) -> PathBuf {
        self.0.join("codes.key")
    }
    /// Its public half, the devices' trust anchor for reservation codes.
    pub fn codes_public_key(&self) -> PathBuf {
        self.0.join("codes.pub")
    }
    /// On a satellite: the cloud's delegation for its key.
    pub fn delegation(&self) -> PathBuf {
        self.0.join("delegation.bin")
    }
    /// On a satellite: the cloud's public key.
    pub fn cloud_key(&self) -> PathBuf {
        self.0.join("cloud.pub")
    }
}

/// A short, stable name of a key for logs and the audit: the first 8 bytes of its SHA-256,
/// in hex.
pub fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The reservation code key: read, or made (with its public half) when the directory has
/// none, as one made before reservation codes existed.
pub(crate) fn codes_key(files: &DataDir) -> Result<CodeSigningKey> {
    let io = |e: std::io::Error| Error::Internal(e.to_string());
    if files.codes_key().exists() {
        let bytes = signing::read_secret(&files.codes_key()).map_err(|e| {
            Error::FailedPrecondition(format!("cannot read the reservation code key: {e}"))
        })?;
        return CodeSigningKey::from_bytes(&bytes).map_err(|_| {
            Error::FailedPrecondition("the reservation code key file is corrupt".into())
        });
    }
    let key = CodeSigningKey::from_seed(&signing::random_bytes::<32>().map_err(io)?);
    signing::write_secret(&files.codes_key(), &key.to_bytes()).map_err(io)?;
    std::fs::write(files.codes_public_key(), key.verifying_key().to_bytes()).map_err(io)?;
    Ok(key)
}

/// A new random credential, as text.
fn new_credential() -> std::io::Result<String> {
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        signing::random_bytes::<32>()?,
    ))
}

/// Makes the portal's read-only viewer credential (mode 0600).
pub(crate) fn write_viewer_credential(files: &DataDir) -> std::io::Result<()> {
    signing::write_secret(&files.viewer_credential(), new_credential()?.as_bytes())
}

/// Creates a data directory: the store, a signing key, an admin credential and a TLS
/// identity from a private CA for this machine's loopback names. Refuses to touch a
/// directory that already holds an authority.
pub fn init(dir: &Path) -> Result<()> {
    init_with(dir, &TlsSource::PrivateCa)
}

/// As [`init`], with the TLS identity from `tls`.
pub fn init_with(dir: &Path, tls: &TlsSource) -> Result<()> {
    init_at(dir, tls, None)
}

/// As [`init_with`], with the store in PostgreSQL when `database` is a `postgres://` URL
/// (recorded in the directory for `serve`). Refuses a database that already holds an
/// authority: several authority processes share one database by sharing one data
/// directory's keys, not by each running `init`.
pub fn init_at(dir: &Path, tls: &TlsSource, database: Option<&str>) -> Result<()> {
    let files = DataDir::new(dir);
    let location = store::Location::parse(database, &files.database())?;
    if files.database().exists() || files.signing_key().exists() {
        return Err(Error::AlreadyExists(format!(
            "{} already holds an authority",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    // The database before the keys: no keys are made for a database that cannot be reached.
    let store = Store::open_at(&location)?;
    if store.run_blocking(state::authority_key)?.is_some() {
        return Err(Error::AlreadyExists(
            "the database already holds an authority; copy that authority's data directory instead of running init again".into(),
        ));
    }
    let io = |e: std::io::Error| Error::Internal(e.to_string());
    let key = signing::generate_key().map_err(io)?;
    signing::write_secret(&files.signing_key(), &key.to_bytes()).map_err(io)?;
    std::fs::write(files.public_key(), key.verifying_key().to_bytes()).map_err(io)?;
    signing::write_secret(
        &files.admin_credential(),
        new_credential().map_err(io)?.as_bytes(),
    )
    .map_err(io)?;
    write_viewer_credential(&files).map_err(io)?;
    codes_key(&files)?;
    tls::create(&files, tls)?;
    if let store::Location::Postgres(url) = &location {
        signing::write_secret(&files.database_url(), url.as_bytes()).map_err(io)?;
    }
    let public = key.verifying_key().to_bytes().to_vec();
    store.run_blocking(move |conn| state::claim_database(conn, &public))?;
    Ok(())
}
