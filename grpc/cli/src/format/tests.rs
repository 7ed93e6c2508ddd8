//! Unit tests of [`super`].

#![allow(clippy::unwrap_used)]

use super::*;

/// Nov 27 23:40:01 2026 UTC.
const T0: i64 = 1_795_822_801;
const DAY: i64 = 86_400;

fn hard(rate: u64, burst: u64) -> Option<pb::EntitlementLimit> {
    Some(pb::EntitlementLimit {
        unlimited: false,
        rate,
        burst,
        policy: pb::PolicyKind::Hard.into(),
    })
}

fn registered() -> pb::LicenseStatus {
    pb::LicenseStatus {
        udi: Some(pb::Udi {
            product_id: "CPAR".into(),
            serial: "A1".into(),
        }),
        callhome_url: "http://127.0.0.1:7171".into(),
        registration: Some(pb::RegistrationInfo {
            status: "REGISTERED".into(),
            smart_account: Some("Example Corp".into()),
            virtual_account: Some("RADIUS".into()),
            export_controlled: Some(false),
            initial_registration: Some(T0),
            last_renewal_attempt: None,
            last_renewal_failure: None,
            next_renewal_attempt: Some(T0 + 180 * DAY),
            expires: Some(T0 + 365 * DAY),
            last_failure: None,
            last_failure_at: None,
        }),
        authorization: Some(pb::AuthorizationInfo {
            status: "AUTHORIZED".into(),
            evaluation_remaining_secs: 0,
            grants: vec![
                pb::Grant {
                    tag: "PAR-TPS".into(),
                    requested: 1,
                    granted: 1,
                    status: pb::GrantStatus::Authorized.into(),
                    ..Default::default()
                },
                pb::Grant {
                    tag: "PAR-ADD-TPS".into(),
                    requested: 3,
                    granted: 2,
                    status: pb::GrantStatus::OutOfCompliance.into(),
                    ..Default::default()
                },
            ],
            last_communication_attempt: Some(T0 + 1),
            last_communication_failure: None,
            next_communication_attempt: Some(T0 + 1 + 30 * DAY),
            communication_deadline: Some(T0 + 1 + 90 * DAY),
            grace_ends: None,
        }),
        reservation: Some(pb::ReservationInfo {
            status: "DISABLED".into(),
            ..Default::default()
        }),
        enforcement: "AUTHORIZED".into(),
        selection: vec![
            pb::LicenseCount {
                tag: "PAR-TPS".into(),
                count: 1,
            },
            pb::LicenseCount {
                tag: "PAR-ADD-TPS".into(),
                count: 3,
            },
            pb::LicenseCount {
                tag: "PAR-NEW".into(),
                count: 4,
            },
        ],
        entitlements: vec![
            pb::EntitlementState {
                tag: "PAR-TPS".into(),
                limit: hard(300, 30),
                admitted: 123_456,
                rejected: 7,
            },
            pb::EntitlementState {
                tag: "PAR-PROXY".into(),
                limit: Some(pb::EntitlementLimit {
                    unlimited: true,
                    ..Default::default()
                }),
                admitted: 5,
                rejected: 0,
            },
        ],
        spool: Some(pb::SpoolInfo {
            depth: 0,
            capacity: 100_000,
            delivered: 12,
            last_failure: None,
        }),
        last_callhome_success: Some(T0 + 1),
        attached_engines: 2,
        callhome_proxy: "http://***@proxy.example:3128".into(),
        trust: Some(pb::TrustInfo {
            authority_key: "0123456789abcdef".into(),
            authority_pinned: true,
            codes_key: "fedcba9876543210".into(),
            codes_pinned: false,
            differences: vec!["the configured authority key 1111 is not the pinned 0123".into()],
        }),
    }
}

#[test]
fn times_are_utc_in_the_cpar_layout_and_out_of_range_is_not_a_panic() {
    assert_eq!(time(T0), "Nov 27 23:40:01 2026 UTC");
    assert_eq!(time(0), "Jan 01 00:00:00 1970 UTC");
    assert_eq!(time_millis(T0 * 1000 + 999), "Nov 27 23:40:01 2026 UTC");
    assert_eq!(time(i64::MAX), format!("{} (unix seconds)", i64::MAX));
    assert_eq!(
        time_millis(i64::MIN),
        format!("{} (unix milliseconds)", i64::MIN)
    );
}

#[test]
fn limits_read_as_an_operator_says_them() {
    assert_eq!(limit(hard(300, 30).as_ref()), "300 TPS burst 30 hard");
    let steady = pb::EntitlementLimit {
        rate: 100,
        burst: 10,
        policy: pb::PolicyKind::SteadyState.into(),
        ..Default::default()
    };
    assert_eq!(limit(Some(&steady)), "100 TPS burst 10 steady-state");
    let unknown_policy = pb::EntitlementLimit {
        rate: 1,
        burst: 0,
        policy: 99,
        ..Default::default()
    };
    assert_eq!(limit(Some(&unknown_policy)), "1 TPS burst 0");
    assert_eq!(limit(None), "None");
}

#[test]
fn status_of_a_registered_device_has_the_cpar_layout() {
    let expected = "\
Smart Licensing is ENABLED

Registration:
  Status: REGISTERED
  Smart Account: Example Corp
  Virtual Account: RADIUS
  Export-Controlled Functionality: Not Allowed
  Initial Registration: SUCCEEDED on Nov 27 23:40:01 2026 UTC
  Last Renewal Attempt: None
  Next Renewal Attempt: May 26 23:40:01 2027 UTC
  Registration Expires: Nov 27 23:40:01 2027 UTC

License Authorization:
  Status: AUTHORIZED on Nov 27 23:40:02 2026 UTC
  Last Communication Attempt: SUCCEEDED on Nov 27 23:40:02 2026 UTC
  Next Communication Attempt: Dec 27 23:40:02 2026 UTC
  Communication Deadline: Feb 25 23:40:02 2027 UTC

License Reservation: DISABLED
Gate Limits: AUTHORIZED
Call Home: http://127.0.0.1:7171
Call Home Proxy: http://***@proxy.example:3128
Last Successful Call Home: Nov 27 23:40:02 2026 UTC
Attached Engines: 2
Usage spool: 0 pending, 12 delivered (capacity 100000)
UDI: PID:CPAR,SN:A1
Trusted Authority Key: 0123456789abcdef (pinned)
Trusted Reservation Code Key: fedcba9876543210 (not pinned yet)
Trust Warning: the configured authority key 1111 is not the pinned 0123

Entitlements:
  Tag        Limit                  Admitted  Rejected
  PAR-TPS    300 TPS burst 30 hard  123456    7
  PAR-PROXY  unlimited              5         0
";
    assert_eq!(status(&registered()), expected);
}

#[test]
fn failures_show_when_and_why() {
    let mut s = registered();
    let r = s.registration.as_mut().unwrap();
    r.last_renewal_attempt = Some(T0 + 180 * DAY);
    r.last_renewal_failure = Some("the authority did not answer".into());
    r.last_failure = Some("the ID certificate expired".into());
    let a = s.authorization.as_mut().unwrap();
    a.last_communication_failure = Some("connection refused".into());
    a.grace_ends = Some(T0 + 120 * DAY);
    let sp = s.spool.as_mut().unwrap();
    sp.depth = 3;
    sp.last_failure = Some("the authority is unreachable".into());
    s.reservation = Some(pb::ReservationInfo {
        status: "REQUEST PENDING".into(),
        pending_sequence: Some(4),
        ..Default::default()
    });
    let text = status(&s);
    for line in [
        "  Last Renewal Attempt: FAILED on May 26 23:40:01 2027 UTC: the authority did not answer\n",
        "  Last Failure: the ID certificate expired\n",
        // No "on <time>" when the last attempt to authorise failed.
        "  Status: AUTHORIZED\n",
        "  Last Communication Attempt: FAILED on Nov 27 23:40:02 2026 UTC: connection refused\n",
        "  Grace Period Ends: Mar 27 23:40:01 2027 UTC\n",
        "License Reservation: REQUEST PENDING (request 4)\n",
        "Usage spool: 3 pending, 12 delivered (capacity 100000); last delivery failed: the authority is unreachable\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[test]
fn status_with_every_optional_field_absent_prints_none() {
    let expected = "\
Smart Licensing is ENABLED

Registration:
  Status: None
  Smart Account: None
  Virtual Account: None
  Export-Controlled Functionality: None
  Initial Registration: None
  Last Renewal Attempt: None
  Next Renewal Attempt: None
  Registration Expires: None

License Authorization:
  Status: None
  Last Communication Attempt: None
  Next Communication Attempt: None
  Communication Deadline: None

License Reservation: None
Gate Limits: None
Call Home: None
Last Successful Call Home: None
Attached Engines: 0
Usage spool: None
UDI: None
Trusted Authority Key: None

Entitlements: None
";
    let empty = pb::LicenseStatus::default();
    assert_eq!(status(&empty), expected);
    assert_eq!(
        summary(&empty),
        "Smart Licensing is ENABLED\nRegistration: None\nLicense Authorization: None\n\
             Gate Limits: None\n\nLicense Usage: None\n\nGate Entitlements: None\n"
    );
    assert_eq!(selection(&empty), "License Selection: None\n");
}

#[test]
fn evaluation_shows_the_time_left() {
    let s = pb::LicenseStatus {
        registration: Some(pb::RegistrationInfo {
            status: "UNREGISTERED".into(),
            ..Default::default()
        }),
        authorization: Some(pb::AuthorizationInfo {
            status: "EVALUATION MODE".into(),
            evaluation_remaining_secs: 89 * 86_400 + 23 * 3_600 + 59 * 60 + 30,
            ..Default::default()
        }),
        ..Default::default()
    };
    let text = status(&s);
    assert!(
            text.contains(
                "  Status: EVALUATION MODE\n  Evaluation Period Remaining: 89 days, 23 hours, 59 minutes, 30 seconds\n"
            ),
            "{text}"
        );
}

#[test]
fn summary_lists_each_licence_and_each_gate_limit() {
    let expected = "\
Smart Licensing is ENABLED
Registration: REGISTERED (Example Corp / RADIUS)
License Authorization: AUTHORIZED
Gate Limits: AUTHORIZED

License Usage:
  License      Selected  In Use  Status
  PAR-TPS      1         1       AUTHORIZED
  PAR-ADD-TPS  3         2       OUT OF COMPLIANCE
  PAR-NEW      4         -       AUTHORIZED

Gate Entitlements:
  Tag        Limit
  PAR-TPS    300 TPS burst 30 hard
  PAR-PROXY  unlimited
";
    assert_eq!(summary(&registered()), expected);
}

#[test]
fn summary_while_pending_and_with_a_deselected_grant() {
    let mut s = registered();
    s.selection.retain(|c| c.tag != "PAR-ADD-TPS");
    s.authorization.as_mut().unwrap().status = "AUTHORIZATION PENDING".into();
    let text = summary(&s);
    assert!(
        text.contains("  PAR-NEW      4         -       AUTHORIZATION PENDING\n"),
        "{text}"
    );
    assert!(
        text.contains("  PAR-ADD-TPS  -         2       OUT OF COMPLIANCE\n"),
        "{text}"
    );
}

#[test]
fn selection_lists_tags_and_counts() {
    assert_eq!(
        selection(&registered()),
        "License Selection (asked for at the next authorization):\n  \
             License      Count\n  PAR-TPS      1\n  PAR-ADD-TPS  3\n  PAR-NEW      4\n"
    );
}

#[test]
fn usage_is_one_row_per_tag_per_snapshot() {
    let history = pb::UsageHistory {
        snapshots: vec![
            pb::SpooledSnapshot {
                sequence: 13,
                window_start: T0 * 1000 + 60_000,
                window_end: T0 * 1000 + 60_500,
                usage: vec![],
                delivered: false,
            },
            pb::SpooledSnapshot {
                sequence: 12,
                window_start: T0 * 1000,
                window_end: T0 * 1000 + 60_000,
                usage: vec![
                    pb::EntitlementUsage {
                        tag: "PAR-TPS".into(),
                        admitted: 1000,
                        rejected: 3,
                        peak_tps: 30,
                        tps_histogram: vec![],
                    },
                    pb::EntitlementUsage {
                        tag: "PAR-ADD-TPS".into(),
                        admitted: 5,
                        rejected: 0,
                        peak_tps: 1,
                        tps_histogram: vec![],
                    },
                ],
                delivered: true,
            },
        ],
    };
    let expected = "  \
Sequence  Window Start              Length  Tag          Admitted  Rejected  Peak TPS  Delivered
  13        Nov 27 23:41:01 2026 UTC  500 ms  -            -         -         -         no
  12        Nov 27 23:40:01 2026 UTC  60 s    PAR-TPS      1000      3         30        yes
                                              PAR-ADD-TPS  5         0         1
";
    assert_eq!(usage(&history), expected);
    assert_eq!(
        usage(&pb::UsageHistory::default()),
        "No usage snapshots yet.\n"
    );
}

#[test]
fn the_event_log_is_one_line_per_event_with_its_trap() {
    let log = pb::EventLog {
        events: vec![
            pb::LicenseEvent {
                at: T0 + 60,
                kind: "authorization".into(),
                severity: "WARNING".into(),
                message: "authorization AUTHORIZATION PENDING -> OUT OF COMPLIANCE".into(),
                trap: "entitleOutOfCompliance".into(),
            },
            pb::LicenseEvent {
                at: T0,
                kind: "call".into(),
                severity: "INFO".into(),
                message: "registration succeeded".into(),
                trap: String::new(),
            },
        ],
    };
    let expected = "  \
Time                      Severity  Kind           Event
  Nov 27 23:41:01 2026 UTC  WARNING   authorization  authorization AUTHORIZATION PENDING -> OUT OF COMPLIANCE [trap entitleOutOfCompliance]
  Nov 27 23:40:01 2026 UTC  INFO      call           registration succeeded
";
    assert_eq!(eventlog(&log), expected);
    assert_eq!(
        eventlog(&pb::EventLog::default()),
        "No licence events yet.\n"
    );
}
