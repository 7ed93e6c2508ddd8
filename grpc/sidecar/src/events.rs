//! The device's licence events as operators read them.
//!
//! The event log (in the [local store](crate::store)) keeps, as JSON, what happened to the
//! licence: the agent's [events](entitle_licensing::Event) (registration, authorisation,
//! reservation and enforcement changes, new limits, clock jumps), the outcome of every call
//! to the authority (renewals among them), and the usage events of the sidecar's own gate
//! (the steady-state policy's levels and throttling). [`Notice::of`] turns one entry into
//! a kind, a severity and one line of text, for `show license eventlog`, syslog and SNMP
//! traps alike; [`Alarm`] says which trap, if any, it raises.

use entitle_engine::EventKind as UsageKind;
use entitle_licensing::{AuthorizationStatus, EventKind, JumpDirection, RegistrationStatus};
use entitle_proto::pb;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::store::LocalStore;

/// The newest `limit` entries of the event log, newest first, for `show license eventlog`.
pub(crate) fn event_log(store: &LocalStore, limit: u32) -> Result<Vec<pb::LicenseEvent>> {
    Ok(store
        .events(limit)?
        .iter()
        .map(|(stored, json)| Notice::of_json(json, *stored).to_pb())
        .collect())
}

/// One entry of the event log, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Recorded {
    /// A call to the authority ("register", "renew-id", "authorize", "deregister").
    Call {
        /// Which call.
        call: String,
        /// Why it failed; `None` when it succeeded.
        failure: Option<String>,
    },
    /// A usage event of the sidecar's own gate.
    Usage {
        /// The engine's event.
        usage: entitle_engine::Event,
    },
    /// An event of the licence agent (entries stored before the others existed are these).
    Licence(entitle_licensing::Event),
    /// A change of the keys the device trusts, or a configured key that differs from the
    /// pinned one ([`crate::trust`]).
    Trust {
        /// What happened, in one sentence.
        message: String,
        /// A configured key the device does not follow.
        warning: bool,
    },
}

/// How much an entry matters, as RFC 5424 numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// A failure.
    Error = 3,
    /// Something to act on: out of compliance, high usage, an expiry.
    Warning = 4,
    /// A normal but significant change.
    Notice = 5,
    /// Routine (a renewal that worked).
    Info = 6,
}

/// The smart-licensing trap an entry raises (see [`crate::notify::snmp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// Traffic of a licence crossed a usage level: 80, 90 or 100 (the highest of these at
    /// or below the level crossed).
    Usage {
        /// 80, 90 or 100.
        threshold: u32,
        /// The level crossed, a percentage of the licensed TPS.
        percent: u32,
        /// The licence tag.
        tag: String,
        /// Offered TPS in the sample.
        offered_tps: u64,
        /// Licensed TPS.
        licensed_tps: u64,
    },
    /// The authorisation became OUT OF COMPLIANCE.
    OutOfCompliance {
        /// The status before.
        from: String,
    },
    /// The authorisation expired (the communication deadline passed).
    AuthorizationExpired {
        /// The status before.
        from: String,
    },
    /// The registration status changed.
    RegistrationChanged {
        /// Before.
        from: String,
        /// After.
        to: String,
        /// Why, when it is a failure or an expiry.
        reason: Option<String>,
    },
}

/// One entry as an operator reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Notice {
    /// Unix seconds when it happened.
    pub(crate) at_unix: i64,
    /// "registration", "authorization", "reservation", "enforcement", "limits", "clock",
    /// "usage", "trust" or "call".
    pub(crate) kind: &'static str,
    /// How much it matters.
    pub(crate) severity: Severity,
    /// One line of text.
    pub(crate) message: String,
    /// The trap it raises.
    pub(crate) alarm: Option<Alarm>,
}

impl Notice {
    /// The notice of `entry`, stored at `stored_unix` (used when the entry has no wall time
    /// of its own).
    pub(crate) fn of(entry: &Recorded, stored_unix: i64) -> Self {
        match entry {
            Recorded::Call { call, failure } => Self {
                at_unix: stored_unix,
                kind: "call",
                severity: if failure.is_some() {
                    Severity::Error
                } else {
                    Severity::Info
                },
                message: match failure {
                    None => format!("{} succeeded", call_name(call)),
                    Some(reason) => format!("{} failed: {reason}", call_name(call)),
                },
                alarm: None,
            },
            Recorded::Usage { usage } => usage_notice(usage, stored_unix),
            Recorded::Trust { message, warning } => Self {
                at_unix: stored_unix,
                kind: "trust",
                severity: if *warning {
                    Severity::Warning
                } else {
                    Severity::Notice
                },
                message: message.clone(),
                alarm: None,
            },
            Recorded::Licence(event) => {
                let mut notice = licence_notice(&event.kind);
                notice.at_unix = event.at.wall_unix_secs.unwrap_or(stored_unix);
                notice
            }
        }
    }

    /// As the wire carries it.
    pub(crate) fn to_pb(&self) -> pb::LicenseEvent {
        pb::LicenseEvent {
            at: self.at_unix,
            kind: self.kind.to_owned(),
            severity: match self.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "WARNING",
                Severity::Notice => "NOTICE",
                Severity::Info => "INFO",
            }
            .to_owned(),
            message: self.message.clone(),
            trap: self
                .alarm
                .as_ref()
                .map(|a| TrapKind::of(a).name().to_owned())
                .unwrap_or_default(),
        }
    }

    /// The notice of a stored JSON entry; an entry that does not read (from a newer
    /// version, or damaged) is shown as it is rather than hidden.
    pub(crate) fn of_json(json: &str, stored_unix: i64) -> Self {
        match serde_json::from_str::<Recorded>(json) {
            Ok(entry) => Self::of(&entry, stored_unix),
            Err(_) => Self {
                at_unix: stored_unix,
                kind: "unknown",
                severity: Severity::Notice,
                message: json.chars().take(512).collect(),
                alarm: None,
            },
        }
    }
}

fn call_name(call: &str) -> &str {
    match call {
        "register" => "registration",
        "renew-id" => "ID certificate renewal",
        "authorize" => "authorization renewal",
        "deregister" => "deregistration",
        other => other,
    }
}

fn licence_notice(kind: &EventKind) -> Notice {
    let notice = |kind, severity, message, alarm| Notice {
        at_unix: 0,
        kind,
        severity,
        message,
        alarm,
    };
    match kind {
        EventKind::Registration { from, to, reason } => notice(
            "registration",
            match to {
                RegistrationStatus::Unregistered if reason.is_some() => Severity::Warning,
                _ => Severity::Notice,
            },
            match reason {
                None => format!("registration {from} -> {to}"),
                Some(reason) => format!("registration {from} -> {to}: {reason}"),
            },
            Some(Alarm::RegistrationChanged {
                from: from.to_string(),
                to: to.to_string(),
                reason: reason.clone(),
            }),
        ),
        EventKind::Authorization { from, to } => {
            let from_text = from.to_string();
            let (severity, alarm) = match to {
                AuthorizationStatus::OutOfCompliance => (
                    Severity::Warning,
                    Some(Alarm::OutOfCompliance { from: from_text }),
                ),
                AuthorizationStatus::AuthorizationExpired => (
                    Severity::Warning,
                    Some(Alarm::AuthorizationExpired { from: from_text }),
                ),
                AuthorizationStatus::EvaluationExpired => (Severity::Warning, None),
                _ => (Severity::Notice, None),
            };
            notice(
                "authorization",
                severity,
                format!("authorization {from} -> {to}"),
                alarm,
            )
        }
        EventKind::Reservation { from, to } => notice(
            "reservation",
            Severity::Notice,
            format!("reservation {from} -> {to}"),
            None,
        ),
        EventKind::Enforcement { from, to } => notice(
            "enforcement",
            Severity::Notice,
            format!(
                "enforcement {} -> {}",
                upper(&format!("{from:?}")),
                upper(&format!("{to:?}"))
            ),
            None,
        ),
        EventKind::LimitsChanged { limits } => notice(
            "limits",
            Severity::Info,
            format!(
                "limits now {}",
                limits
                    .iter()
                    .map(|(tag, limit)| format!("{tag} {}", limit_text(limit)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ),
        EventKind::ClockJump {
            direction,
            by,
            expected_wall_unix_secs,
            wall_unix_secs,
        } => notice(
            "clock",
            Severity::Warning,
            format!(
                "the wall clock jumped {} by {} s (expected {}, read {}); timers are not affected",
                match direction {
                    JumpDirection::Forward => "forward",
                    JumpDirection::Backward => "backward",
                },
                by.as_secs(),
                expected_wall_unix_secs,
                wall_unix_secs
            ),
            None,
        ),
    }
}

fn usage_notice(e: &entitle_engine::Event, stored_unix: i64) -> Notice {
    let of = format!("({} of {} TPS)", e.offered_tps, e.licensed_tps);
    let (severity, message, alarm) = match e.kind {
        UsageKind::LevelCrossed { percent } => (
            if percent >= 100 {
                Severity::Warning
            } else {
                Severity::Notice
            },
            format!("{} traffic crossed {percent}% of the licence {of}", e.tag),
            [100, 90, 80]
                .into_iter()
                .find(|t| percent >= *t)
                .map(|threshold| Alarm::Usage {
                    threshold,
                    percent,
                    tag: e.tag.clone(),
                    offered_tps: e.offered_tps,
                    licensed_tps: e.licensed_tps,
                }),
        ),
        UsageKind::UsageWarning { percent } => (
            Severity::Warning,
            format!(
                "{} traffic is still at {percent}% of the licence {of}",
                e.tag
            ),
            None,
        ),
        UsageKind::Recovered => (
            Severity::Notice,
            format!("{} traffic fell below the usage levels {of}", e.tag),
            None,
        ),
        UsageKind::ThrottleStarted => (
            Severity::Warning,
            format!("{} is throttled to its licence {of}", e.tag),
            None,
        ),
        UsageKind::ThrottleStopped => (
            Severity::Notice,
            format!("{} is no longer throttled {of}", e.tag),
            None,
        ),
    };
    Notice {
        at_unix: stored_unix,
        kind: "usage",
        severity,
        message,
        alarm,
    }
}

fn limit_text(limit: &entitle_engine::Limit) -> String {
    match (limit.per_second(), limit.policy()) {
        (Some(rate), Some(policy)) => format!("{rate} TPS {}", upper(&format!("{policy:?}"))),
        _ => "unlimited".to_owned(),
    }
}

/// `SteadyState` -> `STEADY-STATE`.
fn upper(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('-');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// The smart-licensing notification an alarm raises, numbered by its last arc under
/// `entitleNotifications` (the SNMP tree is in [`crate::notify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TrapKind {
    Usage80 = 1,
    Usage90 = 2,
    Usage100 = 3,
    OutOfCompliance = 4,
    AuthorizationExpired = 5,
    RegistrationStateChanged = 6,
}

impl TrapKind {
    /// The trap of `alarm`.
    pub(crate) fn of(alarm: &Alarm) -> Self {
        match alarm {
            Alarm::Usage { threshold, .. } if *threshold >= 100 => Self::Usage100,
            Alarm::Usage { threshold, .. } if *threshold >= 90 => Self::Usage90,
            Alarm::Usage { .. } => Self::Usage80,
            Alarm::OutOfCompliance { .. } => Self::OutOfCompliance,
            Alarm::AuthorizationExpired { .. } => Self::AuthorizationExpired,
            Alarm::RegistrationChanged { .. } => Self::RegistrationStateChanged,
        }
    }

    /// Its name in the tree.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Usage80 => "entitleLicenseUsage80",
            Self::Usage90 => "entitleLicenseUsage90",
            Self::Usage100 => "entitleLicenseUsage100",
            Self::OutOfCompliance => "entitleOutOfCompliance",
            Self::AuthorizationExpired => "entitleAuthorizationExpired",
            Self::RegistrationStateChanged => "entitleRegistrationStateChanged",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use entitle_licensing::{Event, Stamp};

    fn licence(kind: EventKind, wall: Option<i64>) -> Recorded {
        Recorded::Licence(Event {
            at: Stamp {
                mono_nanos: 1,
                wall_unix_secs: wall,
            },
            kind,
        })
    }

    fn round_trip(entry: &Recorded) -> Notice {
        let json = serde_json::to_string(entry).unwrap();
        assert_eq!(&serde_json::from_str::<Recorded>(&json).unwrap(), entry);
        Notice::of_json(&json, 99)
    }

    #[test]
    fn a_registration_raises_the_state_change_trap_at_its_own_time() {
        let n = round_trip(&licence(
            EventKind::Registration {
                from: RegistrationStatus::Registering,
                to: RegistrationStatus::Registered,
                reason: None,
            },
            Some(1_700_000_000),
        ));
        assert_eq!(n.at_unix, 1_700_000_000);
        assert_eq!(n.kind, "registration");
        assert_eq!(n.message, "registration REGISTERING -> REGISTERED");
        assert!(matches!(n.alarm, Some(Alarm::RegistrationChanged { .. })));
    }

    #[test]
    fn out_of_compliance_and_expiry_are_warnings_with_traps() {
        let n = round_trip(&licence(
            EventKind::Authorization {
                from: AuthorizationStatus::Pending,
                to: AuthorizationStatus::OutOfCompliance,
            },
            None,
        ));
        assert_eq!(n.at_unix, 99, "no wall time: the time it was stored");
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(
            n.message,
            "authorization AUTHORIZATION PENDING -> OUT OF COMPLIANCE"
        );
        assert!(matches!(n.alarm, Some(Alarm::OutOfCompliance { .. })));
        let n = round_trip(&licence(
            EventKind::Authorization {
                from: AuthorizationStatus::Authorized,
                to: AuthorizationStatus::AuthorizationExpired,
            },
            None,
        ));
        assert!(matches!(n.alarm, Some(Alarm::AuthorizationExpired { .. })));
        let n = round_trip(&licence(
            EventKind::Authorization {
                from: AuthorizationStatus::Pending,
                to: AuthorizationStatus::Authorized,
            },
            None,
        ));
        assert_eq!(n.alarm, None);
    }

    #[test]
    fn usage_levels_map_to_the_80_90_100_traps() {
        // The engine's events come from its sampler; this one is made as it is stored.
        let event = |percent: u32| {
            let json = format!(
                r#"{{"usage":{{"tag":"PAR-TPS","at_nanos":5,"offered_tps":95,"licensed_tps":100,"kind":{{"level-crossed":{{"percent":{percent}}}}}}}}}"#
            );
            serde_json::from_str::<Recorded>(&json).unwrap()
        };
        for (percent, threshold) in [(80, Some(80)), (95, Some(90)), (100, Some(100)), (50, None)] {
            let n = round_trip(&event(percent));
            assert_eq!(n.kind, "usage");
            let got = match n.alarm {
                Some(Alarm::Usage { threshold, .. }) => Some(threshold),
                _ => None,
            };
            assert_eq!(got, threshold, "{percent}%");
        }
        assert_eq!(
            round_trip(&event(90)).message,
            "PAR-TPS traffic crossed 90% of the licence (95 of 100 TPS)"
        );
    }

    #[test]
    fn calls_say_what_failed() {
        let n = round_trip(&Recorded::Call {
            call: "renew-id".into(),
            failure: Some("cannot reach the authority".into()),
        });
        assert_eq!(
            n.message,
            "ID certificate renewal failed: cannot reach the authority"
        );
        assert_eq!(n.severity, Severity::Error);
        let n = round_trip(&Recorded::Call {
            call: "authorize".into(),
            failure: None,
        });
        assert_eq!(n.message, "authorization renewal succeeded");
    }

    #[test]
    fn an_entry_that_does_not_read_is_shown_as_it_is() {
        for bad in ["", "{", "{\"kind\":1}", "[1,2]", "\"text\""] {
            let n = Notice::of_json(bad, 7);
            assert_eq!((n.kind, n.at_unix, n.alarm), ("unknown", 7, None));
            assert_eq!(n.message, bad);
        }
    }

    #[test]
    fn names_are_upper_case_with_dashes() {
        assert_eq!(upper("SteadyState"), "STEADY-STATE");
        assert_eq!(upper("Evaluation"), "EVALUATION");
    }
}
