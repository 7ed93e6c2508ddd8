//! The registration state machine's data, and the ID token and certificate it deals in.
//!
//! UNREGISTERED -> REGISTERING (a token given; a `Register` action asks the caller to call
//! the authority) -> REGISTERED (the ID certificate: valid `id_validity` from its issue,
//! renewed every `id_renewal`, retried every `retry` on failure) -> UNREGISTERED on
//! deregistration or when the certificate expires. A failed registration goes back to
//! UNREGISTERED and keeps its reason. The authorisation lives inside REGISTERED, so that
//! losing the registration loses it too.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::attempt::{Failed, Tried};
use super::authorization::Authorization;
use super::{Error, Result};

/// An ID token, as issued per virtual account. Its `Debug` never shows it, so it stays out
/// of logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdToken(String);

impl IdToken {
    /// A token, refused when empty or blank. Its format is the authority's business.
    pub fn new(token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(Error::EmptyToken);
        }
        Ok(Self(token))
    }

    /// The token, to send to the authority.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdToken {
    type Error = Error;

    fn try_from(token: String) -> Result<Self> {
        Self::new(token)
    }
}

impl From<IdToken> for String {
    fn from(token: IdToken) -> Self {
        token.0
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdToken(<redacted>)")
    }
}

/// What the agent keeps of an ID certificate the authority issued (already verified by the
/// caller). Its validity runs from the moment the agent is told of it, on the monotonic
/// clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdCertificate {
    /// The smart account the device is registered to.
    pub smart_account: String,
    /// The virtual account.
    pub virtual_account: String,
    /// Whether export-controlled functionality is allowed.
    pub export_controlled: bool,
}

/// The registration state; times are agent nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Registration {
    Unregistered {
        last_failure: Option<Failed>,
    },
    Registering {
        token: IdToken,
        /// Whether the `Register` action went out. Not saved: after a restart the answer
        /// is lost, so the action goes out again.
        #[serde(skip)]
        sent: bool,
    },
    Registered(Box<Registered>),
}

/// A registered device: its certificate, its renewal timers and its authorisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registered {
    pub(crate) cert: IdCertificate,
    pub(crate) registered_at: u64,
    pub(crate) expires_at: u64,
    /// When to send the next `RenewId`; moved by `retry` when one goes out unanswered.
    pub(crate) next_renewal: u64,
    pub(crate) last_renewal: Option<Tried>,
    pub(crate) auth: Authorization,
}
