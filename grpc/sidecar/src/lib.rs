//! The sidecar `entitled`: a device's licence agent, run beside the packet server (the
//! `entitled` binary) or as tasks inside it (embedded).
//!
//! It holds the device's identity (the UDI from its configuration and an Ed25519 device
//! key made at first start, mode 0600), the licence [`Agent`](entitle_licensing::Agent)
//! and a durable local store ([`store`]). It calls the authority on the agent's timers and
//! on the operator's commands, and applies every change of the agent's limits to the gates
//! through their hot swap: its own gate, and those of the packet servers attached to it.
//! Usage goes gate -> snapshot -> spool (durable) -> signed report -> authority, each hop
//! acknowledged only once durable, so nothing is lost or counted twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use entitle_sidecar::{RawConfig, Sidecar};
//!
//! let config = RawConfig::read("entitled.toml".as_ref())?.validate()?;
//! let sidecar = Sidecar::start(config, None).await?;
//! let gate = sidecar.gate(); // the packet path checks against this gate (embedded mode)
//! # let _ = gate;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod attach;
pub mod backoff;
mod config;
mod convert;
pub mod device;
mod events;
mod local_api;
mod metrics;
pub mod notify;
pub mod program;
mod reservation;
mod runtime;
mod service;
mod share;
pub mod store;
pub mod trust;
pub mod vendor;

pub use attach::{AttachOptions, Attachment};
pub use config::{RawAgent, RawConfig, RawUdi, SidecarConfig, SocketGroup, check_url};
pub use local_api::LocalApi;
pub use runtime::Sidecar;
pub use service::SidecarService;

/// Why a sidecar operation failed. Each message is one sentence for the operator.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// A command's input is malformed; nothing changed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The current state refuses the command; nothing changed.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The authority could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The authority refused.
    #[error("{0}")]
    Refused(String),
    /// The spool is full: push back.
    #[error("{0}")]
    Full(String),
    /// The local store failed.
    #[error("the local store failed: {0}")]
    Store(#[from] rusqlite::Error),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(String),
}

/// The sidecar's result.
pub type Result<T> = std::result::Result<T, SidecarError>;

impl From<SidecarError> for tonic::Status {
    fn from(e: SidecarError) -> Self {
        let message = e.to_string();
        match e {
            SidecarError::Config(_) | SidecarError::InvalidArgument(_) => {
                tonic::Status::invalid_argument(message)
            }
            SidecarError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            SidecarError::Unavailable(_) => tonic::Status::unavailable(message),
            SidecarError::Refused(_) => tonic::Status::permission_denied(message),
            SidecarError::Full(_) => tonic::Status::resource_exhausted(message),
            SidecarError::Store(_) | SidecarError::Internal(_) => tonic::Status::internal(message),
        }
    }
}

impl From<entitle_licensing::Error> for SidecarError {
    fn from(e: entitle_licensing::Error) -> Self {
        SidecarError::FailedPrecondition(e.to_string())
    }
}
