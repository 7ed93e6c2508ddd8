//! The reservation state machine's data, and the verified inputs it takes.
//!
//! DISABLED <-> ENABLED -> REQUEST_PENDING (a request with a sequence number) -> INSTALLED
//! (PLR: everything unlimited; SLR: exactly the reserved licences). Cancel takes a pending
//! request back to ENABLED; return takes an installed reservation back to ENABLED and the
//! device back to UNREGISTERED and its evaluation. Disabling is refused while installed.
//! The request, authorisation and return codes are made and verified elsewhere: this
//! machine takes their already-verified content.

use serde::{Deserialize, Serialize};

use super::config::{Catalogue, Counts};

/// What kind of reservation an authorisation code installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReservationKind {
    /// Permanent licence reservation (PLR): every gate entitlement unlimited.
    Permanent,
    /// Specific licence reservation (SLR): exactly these licences and counts. Licences the
    /// product does not know are kept (and shown) but feed no gate entitlement.
    Specific {
        /// Licence tag to count.
        licences: Counts,
    },
}

/// The verified content of a reservation authorisation code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserved {
    /// The sequence number of the request it answers.
    pub sequence: u32,
    /// The smart account that reserved it.
    pub smart_account: String,
    /// The virtual account, when the code names one.
    pub virtual_account: Option<String>,
    /// Whether export-controlled functionality is allowed.
    pub export_controlled: bool,
    /// PLR or SLR.
    pub kind: ReservationKind,
    /// SLR: what the authority signed each reserved licence is worth (empty from an older
    /// code: the product's own values apply then).
    #[serde(default, skip_serializing_if = "Catalogue::is_empty")]
    pub worth: Catalogue,
}

/// The reservation state; times are agent nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Reservation {
    Disabled,
    Enabled,
    Pending { sequence: u32 },
    Installed { reserved: Box<Reserved>, at: u64 },
}
