//! What the `show` commands print: pure functions from the sidecar's messages to text, in
//! the layout CPAR's `aregcmd` operators know. Times are UTC; an absent field prints
//! `None`, as CPAR does.
//!
//! ```
//! use entitle_cli::format;
//!
//! assert_eq!(format::time(1_795_822_801), "Nov 27 23:40:01 2026 UTC");
//! let status = format::status(&Default::default());
//! assert!(status.starts_with("Smart Licensing is ENABLED\n"));
//! ```

use std::fmt::Write as _;

use entitle_proto::pb;
use time::OffsetDateTime;
use time::macros::format_description;

/// What an absent value prints as.
const NONE: &str = "None";

/// Unix seconds as `Nov 27 23:40:01 2026 UTC`; a time out of the calendar's range prints
/// its raw number rather than failing the whole page.
pub fn time(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| utc(t).ok())
        .unwrap_or_else(|| format!("{unix_seconds} (unix seconds)"))
}

/// Unix milliseconds, to the second, as [`time`].
pub fn time_millis(unix_millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .ok()
        .and_then(|t| utc(t).ok())
        .unwrap_or_else(|| format!("{unix_millis} (unix milliseconds)"))
}

fn utc(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.format(format_description!(
        "[month repr:short] [day] [hour]:[minute]:[second] [year] UTC"
    ))
}

/// A limit as `300 TPS burst 30 hard`, or `unlimited`.
pub fn limit(limit: Option<&pb::EntitlementLimit>) -> String {
    let Some(l) = limit else {
        return NONE.to_owned();
    };
    if l.unlimited {
        return "unlimited".to_owned();
    }
    let policy = match l.policy() {
        pb::PolicyKind::Hard => " hard",
        pb::PolicyKind::SteadyState => " steady-state",
        pb::PolicyKind::Monitor => " monitor",
        pb::PolicyKind::Unspecified => "",
    };
    format!("{} TPS burst {}{policy}", l.rate, l.burst)
}

/// `show license status`.
pub fn status(s: &pb::LicenseStatus) -> String {
    let registration = s.registration.clone().unwrap_or_default();
    let authorization = s.authorization.clone().unwrap_or_default();
    let mut out = String::from("Smart Licensing is ENABLED\n\nRegistration:\n");
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label}: {value}");
    };
    line("Status", or_none(&registration.status));
    line(
        "Smart Account",
        opt(registration.smart_account.as_deref(), str::to_owned),
    );
    line(
        "Virtual Account",
        opt(registration.virtual_account.as_deref(), str::to_owned),
    );
    line(
        "Export-Controlled Functionality",
        opt(registration.export_controlled, |allowed| {
            if allowed { "Allowed" } else { "Not Allowed" }.to_owned()
        }),
    );
    line(
        "Initial Registration",
        opt(registration.initial_registration, |t| {
            format!("SUCCEEDED on {}", time(t))
        }),
    );
    line(
        "Last Renewal Attempt",
        attempt(
            registration.last_renewal_attempt,
            registration.last_renewal_failure.as_deref(),
        ),
    );
    line(
        "Next Renewal Attempt",
        opt(registration.next_renewal_attempt, time),
    );
    line("Registration Expires", opt(registration.expires, time));
    if let Some(reason) = &registration.last_failure {
        line("Last Failure", reason.clone());
    }

    out.push_str("\nLicense Authorization:\n");
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label}: {value}");
    };
    line("Status", authorization_status(&authorization));
    if authorization.status.starts_with("EVALUATION") {
        line(
            "Evaluation Period Remaining",
            duration(authorization.evaluation_remaining_secs),
        );
    }
    line(
        "Last Communication Attempt",
        attempt(
            authorization.last_communication_attempt,
            authorization.last_communication_failure.as_deref(),
        ),
    );
    line(
        "Next Communication Attempt",
        opt(authorization.next_communication_attempt, time),
    );
    line(
        "Communication Deadline",
        opt(authorization.communication_deadline, time),
    );
    if let Some(t) = authorization.grace_ends {
        line("Grace Period Ends", time(t));
    }

    out.push('\n');
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label}: {value}");
    };
    let reservation = s.reservation.clone().unwrap_or_default();
    line(
        "License Reservation",
        match reservation.pending_sequence {
            Some(n) => format!("{} (request {n})", or_none(&reservation.status)),
            None => or_none(&reservation.status),
        },
    );
    line("Gate Limits", or_none(&s.enforcement));
    line("Call Home", or_none(&s.callhome_url));
    if !s.callhome_proxy.is_empty() {
        line("Call Home Proxy", s.callhome_proxy.clone());
    }
    line(
        "Last Successful Call Home",
        opt(s.last_callhome_success, time),
    );
    line("Attached Engines", s.attached_engines.to_string());
    line(
        "Usage spool",
        opt(s.spool.as_ref(), |spool| {
            let mut text = format!(
                "{} pending, {} delivered (capacity {})",
                spool.depth, spool.delivered, spool.capacity
            );
            if let Some(reason) = &spool.last_failure {
                let _ = write!(text, "; last delivery failed: {reason}");
            }
            text
        }),
    );
    line(
        "UDI",
        opt(s.udi.as_ref(), |u| {
            format!("PID:{},SN:{}", u.product_id, u.serial)
        }),
    );
    let trust = s.trust.clone().unwrap_or_default();
    let pinned = |yes: bool| {
        if yes {
            " (pinned)"
        } else {
            " (not pinned yet)"
        }
    };
    line(
        "Trusted Authority Key",
        if trust.authority_key.is_empty() {
            "None".to_owned()
        } else {
            format!("{}{}", trust.authority_key, pinned(trust.authority_pinned))
        },
    );
    if !trust.codes_key.is_empty() {
        line(
            "Trusted Reservation Code Key",
            format!("{}{}", trust.codes_key, pinned(trust.codes_pinned)),
        );
    }
    for difference in &trust.differences {
        line("Trust Warning", difference.clone());
    }

    if s.entitlements.is_empty() {
        out.push_str("\nEntitlements: None\n");
    } else {
        out.push_str("\nEntitlements:\n");
        let mut table = Table::new(&["Tag", "Limit", "Admitted", "Rejected"]);
        for e in &s.entitlements {
            table.row(vec![
                e.tag.clone(),
                limit(e.limit.as_ref()),
                e.admitted.to_string(),
                e.rejected.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `show license summary`: the states in one line each, then one line per licence of the
/// selection and the latest authorisation, then the limit of each gate entitlement.
pub fn summary(s: &pb::LicenseStatus) -> String {
    let registration = s.registration.clone().unwrap_or_default();
    let authorization = s.authorization.clone().unwrap_or_default();
    let mut out = String::from("Smart Licensing is ENABLED\n");
    let mut account = String::new();
    if let (Some(sa), Some(va)) = (&registration.smart_account, &registration.virtual_account) {
        account = format!(" ({sa} / {va})");
    }
    let _ = writeln!(
        out,
        "Registration: {}{account}",
        or_none(&registration.status)
    );
    let _ = writeln!(
        out,
        "License Authorization: {}",
        or_none(&authorization.status)
    );
    let _ = writeln!(out, "Gate Limits: {}", or_none(&s.enforcement));

    // The selection in its order, then licences still granted but no longer selected.
    let mut tags: Vec<&str> = s.selection.iter().map(|c| c.tag.as_str()).collect();
    for g in &authorization.grants {
        if !tags.contains(&g.tag.as_str()) {
            tags.push(&g.tag);
        }
    }
    if tags.is_empty() {
        out.push_str("\nLicense Usage: None\n");
    } else {
        out.push_str("\nLicense Usage:\n");
        let mut table = Table::new(&["License", "Selected", "In Use", "Status"]);
        for tag in tags {
            let selected = s.selection.iter().find(|c| c.tag == tag);
            let grant = authorization.grants.iter().find(|g| g.tag == tag);
            let status = match grant.map(pb::Grant::status) {
                Some(pb::GrantStatus::Authorized) => "AUTHORIZED".to_owned(),
                Some(pb::GrantStatus::OutOfCompliance) => "OUT OF COMPLIANCE".to_owned(),
                // Not granted yet: the authorisation's own state says why.
                _ => or_none(&authorization.status),
            };
            table.row(vec![
                tag.to_owned(),
                selected.map_or_else(|| "-".to_owned(), |c| c.count.to_string()),
                grant.map_or_else(|| "-".to_owned(), |g| g.granted.to_string()),
                status,
            ]);
        }
        out.push_str(&table.render());
    }

    if s.entitlements.is_empty() {
        out.push_str("\nGate Entitlements: None\n");
    } else {
        out.push_str("\nGate Entitlements:\n");
        let mut table = Table::new(&["Tag", "Limit"]);
        for e in &s.entitlements {
            table.row(vec![e.tag.clone(), limit(e.limit.as_ref())]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `show license selection`.
pub fn selection(s: &pb::LicenseStatus) -> String {
    if s.selection.is_empty() {
        return "License Selection: None\n".to_owned();
    }
    let mut table = Table::new(&["License", "Count"]);
    for c in &s.selection {
        table.row(vec![c.tag.clone(), c.count.to_string()]);
    }
    format!(
        "License Selection (asked for at the next authorization):\n{}",
        table.render()
    )
}

/// A reservation command's answer: what happened, then the code alone on its line (easy
/// to copy).
pub fn code_reply(reply: &pb::ReservationCodeReply) -> String {
    let mut out = String::new();
    if !reply.message.is_empty() {
        out.push_str(&reply.message);
        out.push('\n');
    }
    if !reply.code.is_empty() {
        out.push_str(&reply.code);
        out.push('\n');
    }
    out
}

/// `show license reservation`: the reservation state, the UDI, the export-controlled
/// status, the last confirmation code and, per licence, the reserved count.
pub fn reservation(s: &pb::LicenseStatus) -> String {
    let r = s.reservation.clone().unwrap_or_default();
    let none = || "None".to_owned();
    let udi = s
        .udi
        .as_ref()
        .map_or_else(none, |u| format!("PID:{},SN:{}", u.product_id, u.serial));
    let mut out = format!("License Reservation: {}\n", r.status);
    out.push_str(&format!("  UDI: {udi}\n"));
    if let Some(sequence) = r.pending_sequence {
        out.push_str(&format!("  Pending Request: {sequence}\n"));
    }
    if let Some(code) = &r.request_code {
        out.push_str(&format!("  Request Code: {code}\n"));
    }
    out.push_str(&format!(
        "  Reservation Type: {}\n",
        match r.kind.as_deref() {
            Some("PERMANENT") => "PERMANENT (universal license)".to_owned(),
            Some("SPECIFIC") => "SPECIFIC".to_owned(),
            Some(other) => other.to_owned(),
            None => none(),
        }
    ));
    out.push_str(&format!(
        "  Smart Account: {}\n",
        r.smart_account.clone().unwrap_or_else(none)
    ));
    if let Some(va) = &r.virtual_account {
        out.push_str(&format!("  Virtual Account: {va}\n"));
    }
    out.push_str(&format!(
        "  Export-Controlled Functionality: {}\n",
        match r.export_controlled {
            Some(true) => "Allowed",
            Some(false) => "Not Allowed",
            None => "None",
        }
    ));
    out.push_str(&format!(
        "  Installed: {}\n",
        r.installed_at.map_or_else(none, time)
    ));
    out.push_str(&format!(
        "  Last Confirmation Code: {}\n",
        r.confirmation_code.clone().unwrap_or_else(none)
    ));
    if !r.reserved.is_empty() {
        let mut table = Table::new(&["License", "Reserved"]);
        for c in &r.reserved {
            table.row(vec![c.tag.clone(), c.count.to_string()]);
        }
        out.push_str("\nReserved Licenses:\n");
        out.push_str(&table.render());
    } else if r.kind.as_deref() == Some("PERMANENT") {
        out.push_str("\nReserved Licenses: every entitlement, unlimited\n");
    }
    out
}

/// `show license usage`: the snapshots, newest first as the sidecar sends them, one row
/// per licence tag.
pub fn usage(h: &pb::UsageHistory) -> String {
    if h.snapshots.is_empty() {
        return "No usage snapshots yet.\n".to_owned();
    }
    let mut table = Table::new(&[
        "Sequence",
        "Window Start",
        "Length",
        "Tag",
        "Admitted",
        "Rejected",
        "Peak TPS",
        "Delivered",
    ]);
    for snap in &h.snapshots {
        let head = vec![
            snap.sequence.to_string(),
            time_millis(snap.window_start),
            millis(snap.window_end.saturating_sub(snap.window_start)),
        ];
        let delivered = if snap.delivered { "yes" } else { "no" }.to_owned();
        if snap.usage.is_empty() {
            let mut row = head.clone();
            row.extend(["-", "-", "-", "-"].map(str::to_owned));
            row.push(delivered.clone());
            table.row(row);
        }
        for (i, u) in snap.usage.iter().enumerate() {
            // The snapshot's own columns once, on its first row.
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 3]
            };
            row.extend([
                u.tag.clone(),
                u.admitted.to_string(),
                u.rejected.to_string(),
                u.peak_tps.to_string(),
            ]);
            row.push(if i == 0 {
                delivered.clone()
            } else {
                String::new()
            });
            table.row(row);
        }
    }
    table.render()
}

/// `show license eventlog`: the licence events, newest first as the sidecar sends them,
/// one per line with its time, severity and kind; an alarm names the SNMP trap it raised.
pub fn eventlog(log: &pb::EventLog) -> String {
    if log.events.is_empty() {
        return "No licence events yet.\n".to_owned();
    }
    let mut table = Table::new(&["Time", "Severity", "Kind", "Event"]);
    for e in &log.events {
        let mut event = e.message.clone();
        if !e.trap.is_empty() {
            let _ = write!(event, " [trap {}]", e.trap);
        }
        table.row(vec![time(e.at), e.severity.clone(), e.kind.clone(), event]);
    }
    table.render()
}

/// A `SUCCEEDED on <time>` / `FAILED on <time>: <reason>` / `None` attempt.
fn attempt(at: Option<i64>, failure: Option<&str>) -> String {
    match (at, failure) {
        (Some(t), None) => format!("SUCCEEDED on {}", time(t)),
        (Some(t), Some(reason)) => format!("FAILED on {}: {reason}", time(t)),
        (None, Some(reason)) => format!("FAILED: {reason}"),
        (None, None) => NONE.to_owned(),
    }
}

/// The authorisation status, with the time of the authorisation when the last
/// communication succeeded (CPAR's `AUTHORIZED on <time>`).
fn authorization_status(a: &pb::AuthorizationInfo) -> String {
    match a.last_communication_attempt {
        Some(t) if a.status.starts_with("AUTHORIZED") && a.last_communication_failure.is_none() => {
            format!("{} on {}", a.status, time(t))
        }
        _ => or_none(&a.status),
    }
}

/// `89 days, 23 hours, 59 minutes, 30 seconds` (CPAR's evaluation period layout).
fn duration(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    format!(
        "{days} days, {} hours, {} minutes, {} seconds",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A window length: whole seconds as `60 s`, anything else in milliseconds.
fn millis(ms: i64) -> String {
    if ms != 0 && ms % 1_000 == 0 {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        s.to_owned()
    }
}

fn opt<T>(value: Option<T>, f: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| NONE.to_owned(), f)
}

/// Left-aligned columns, indented by two spaces, two spaces apart.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|&h| h.to_owned()).collect()],
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::from(" ");
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, " {cell:<width$} ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests;
