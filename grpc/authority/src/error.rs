//! Errors of the authority, each mapped to one gRPC status code with a clear message.

use tonic::{Code, Status};

use crate::store::DbError;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the authority refuses, and why; the message is shown to the caller as is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named thing that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A thing that exists already (or a conflicting resend).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this (revoked, expired, replayed...).
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller did not prove who it is.
    #[error("{0}")]
    Unauthenticated(String),
    /// The authority cannot serve now: a satellite past its sync deadline.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; nothing was acknowledged.
    #[error("storage error: {0}")]
    Storage(crate::store::DbError),
    /// Anything else that is the authority's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Invalid(message) => Error::InvalidArgument(message),
            e => Error::Storage(e),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unavailable(_) | Error::Storage(DbError::Unavailable(_)) => Code::Unavailable,
            Error::Storage(DbError::Conflict(_)) => Code::Aborted,
            Error::Storage(_) | Error::Internal(_) => Code::Internal,
        };
        // Inside the request's span (see `service::serve`); messages never carry secrets.
        if code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        } else {
            tracing::info!(?code, reason = %e, "request refused");
        }
        Status::new(code, e.to_string())
    }
}

impl From<entitle_proto::signing::SignatureError> for Error {
    fn from(e: entitle_proto::signing::SignatureError) -> Self {
        match e {
            entitle_proto::signing::SignatureError::Body(_)
            | entitle_proto::signing::SignatureError::BadKey => {
                Error::InvalidArgument(e.to_string())
            }
            _ => Error::Unauthenticated(e.to_string()),
        }
    }
}
