//! What the status keeps of an attempt: when it was made and, if it failed, why. Shared by
//! the registration and authorisation machines.

use serde::{Deserialize, Serialize};

/// A failure kept for the status, in agent time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Failed {
    pub(crate) at: u64,
    pub(crate) reason: String,
}

/// An attempt and, if it failed, why; in agent time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tried {
    pub(crate) at: u64,
    pub(crate) failure: Option<String>,
}
