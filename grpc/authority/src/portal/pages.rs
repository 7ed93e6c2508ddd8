//! The portal's pages, as HTML checked at compile time (maud escapes every value).

use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::session::{Role, Session};
use super::{AccountView, EventFilter, ReservationsView, TransferPlan, VirtualAccountView};
use entitle_proto::pb;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}.error{background:#fdd;border:1px solid #c00;padding:.6em}\
.shown{background:#efe;border:1px solid #080;padding:.6em}.alert{color:#a00}\
header{display:flex;gap:1em;align-items:center;border-bottom:1px solid #ccc;margin-bottom:1em}\
input[readonly]{width:40em;font-family:monospace}";

/// What a page shows once, after a form: a token just made, or why the form failed.
pub(crate) enum Shown {
    Token(pb::Token),
    Error(String),
}

/// The path of a virtual account's page.
pub(crate) fn va_path(smart: &str, va: &str) -> String {
    format!(
        "/va/{}/{}",
        utf8_percent_encode(smart, NON_ALPHANUMERIC),
        utf8_percent_encode(va, NON_ALPHANUMERIC)
    )
}

fn page(session: Option<&Session>, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · entitle" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { a href="/" { "entitle" } }
                    @if let Some(session) = session {
                        span id="role" { (match session.role { Role::Admin => "admin", Role::Viewer => "viewer (read-only)" }) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button id="logout" { "Log out" }
                        }
                    }
                }
                h1 { (title) }
                (body)
            }
        }
    }
    .into_string()
}

pub(crate) fn failure(message: &str) -> String {
    page(
        None,
        "Not done",
        html! { p.error id="error" { (message) } p { a href="/" { "Back to the overview" } } },
    )
}

pub(crate) fn login(error: Option<&str>) -> String {
    page(
        None,
        "Log in",
        html! {
            @if let Some(error) = error { p.error id="error" { (error) } }
            form method="post" action="/login" {
                label { "Credential (admin or viewer) "
                    input type="password" name="credential" id="credential" autocomplete="current-password" required;
                }
                " " button id="login" { "Log in" }
            }
        },
    )
}

fn available(pool: &pb::Pool) -> u64 {
    pool.quantity.saturating_sub(pool.in_use)
}

fn term(pool: &pb::Pool) -> String {
    if pool.term_end == 0 {
        "perpetual".into()
    } else {
        format!("term, ends {}", date(pool.term_end))
    }
}

/// A unix second as a UTC date and time.
pub(crate) fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The licences of a virtual account; with `va`, each opening its own page, and with the
/// count of each tag held by reservations.
fn pools_table(
    pools: &[pb::Pool],
    va: Option<(&str, &std::collections::HashMap<String, u64>)>,
) -> Markup {
    html! {
        @if pools.is_empty() { p { "No licences." } } @else {
            table.pools {
                tr { th { "Licence" } th { "Purchased" } th { "In use" } @if va.is_some() { th { "Of them reserved" } } th { "Available" } th { "Kind" } th { "Status" } }
                @for pool in pools {
                    tr data-tag=(pool.tag) {
                        td { @if let Some((path, _)) = va {
                            a href={ (path) "/licences/" (utf8_percent_encode(&pool.tag, NON_ALPHANUMERIC)) } { (pool.tag) }
                        } @else { (pool.tag) } }
                        td.quantity { (pool.quantity) } td.in-use { (pool.in_use) }
                        @if let Some((_, reserved)) = va { td.reserved { (reserved.get(&pool.tag).copied().unwrap_or(0)) } }
                        td.available { (available(pool)) } td { (term(pool)) }
                        td { @if pool.in_use > pool.quantity { span.alert { "over-used" } } @else { "in compliance" } }
                    }
                }
            }
        }
    }
}

pub(crate) fn overview(
    session: &Session,
    accounts: &[AccountView],
    satellite_alerts: &[String],
) -> String {
    page(
        Some(session),
        "Smart accounts",
        html! {
            p { a href="/satellites" { "Satellites" } " · " a href="/events" { "Event log" } }
            @if !satellite_alerts.is_empty() {
                ul.alerts.satellite-alerts { @for alert in satellite_alerts { li.alert { (alert) } } }
            }
            @if accounts.is_empty() { p { "No smart accounts yet: " code { "entitle-authority account create NAME" } } }
            @for view in accounts {
                h2 { (view.account.name) }
                @if !view.alerts.is_empty() {
                    ul.alerts { @for alert in &view.alerts { li.alert { (alert) } } }
                }
                p {
                    a href={ "/reservations/" (utf8_percent_encode(&view.account.name, NON_ALPHANUMERIC)) } { "Reservations (PLR and SLR)" }
                    " · " a href={ "/events?account=" (utf8_percent_encode(&view.account.name, NON_ALPHANUMERIC)) } { "Event log" }
                }
                @for (va, pools) in &view.virtual_accounts {
                    h3 { a href=(va_path(&va.smart_account, &va.name)) { (va.name) } }
                    (pools_table(pools, None))
                }
            }
        },
    )
}

fn instance_state(i: &pb::Instance) -> &'static str {
    if i.removed {
        "removed"
    } else if i.deregistered {
        "deregistered"
    } else if i.expired_at != 0 {
        "expired"
    } else {
        "registered"
    }
}

pub(crate) fn virtual_account(
    session: &Session,
    view: &VirtualAccountView,
    shown: Option<&Shown>,
) -> String {
    let admin = session.role == Role::Admin;
    let path = va_path(&view.smart, &view.name);
    page(
        Some(session),
        &format!("{} / {}", view.smart, view.name),
        html! {
            @match shown {
                Some(Shown::Error(message)) => p.error id="error" { (message) },
                Some(Shown::Token(token)) => div.shown id="new-token" {
                    p { "The new registration token, shown only this once:" }
                    input readonly id="token-secret" value=(token.secret) onclick="this.select()";
                    " " button type="button" id="copy-token"
                        onclick="navigator.clipboard.writeText(document.getElementById('token-secret').value)" { "Copy" }
                },
                None => {},
            }
            h2 { "Licences" }
            p { a href={ "/usage" (path.trim_start_matches("/va")) } id="usage-link" { "Usage over time" } }
            (pools_table(&view.pools, Some((&path, &view.reserved))))
            h2 { "Product instances" }
            @if view.instances.is_empty() { p { "No product instances." } } @else {
                table.instances {
                    tr { th { "UDI" } th { "State" } th { "Last contact" } th { "Deadline" } th { "Licences" } th { "Events" } @if admin { th {} } }
                    @for i in &view.instances {
                        tr data-instance=(i.instance_id) {
                            td { a href={ "/usage" (path.trim_start_matches("/va")) "?instance=" (utf8_percent_encode(&i.instance_id, NON_ALPHANUMERIC)) } {
                                @if let Some(udi) = &i.udi { (udi.product_id) ":" (udi.serial) }
                            } }
                            td.state { (instance_state(i)) }
                            td { (date(i.last_contact)) }
                            td { @if i.deadline_at > 0 { (date(i.deadline_at)) } }
                            td.grants { @for g in &i.grants { (g.tag) " " (g.granted) "/" (g.requested) " " } }
                            td { a href={ "/events?instance=" (utf8_percent_encode(&i.instance_id, NON_ALPHANUMERIC)) } { "events" } }
                            @if admin { td { @if !i.removed && !i.deregistered {
                                form method="post" action={ (path) "/instances/" (utf8_percent_encode(&i.instance_id, NON_ALPHANUMERIC)) "/remove" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button.remove { "Remove" }
                                }
                            } } }
                        }
                    }
                }
            }
            h2 { "Registration tokens" }
            @if view.tokens.is_empty() { p { "No tokens." } } @else {
                table.tokens {
                    tr { th { "Token" } th { "Description" } th { "Expires" } th { "Uses" } th { "Export" } th { "Status" } @if admin { th {} } }
                    @for t in &view.tokens {
                        tr data-token=(t.id) {
                            td { code { (t.id) } } td { (t.description) } td { (date(t.expires_at)) }
                            td { (t.uses) " of " (t.max_uses) } td { @if t.export_controlled { "allowed" } @else { "no" } }
                            td.status { @if t.revoked { "revoked" } @else if t.expires_at <= view.now { "expired" } @else { "active" } }
                            @if admin { td { @if !t.revoked {
                                form method="post" action={ (path) "/tokens/" (utf8_percent_encode(&t.id, NON_ALPHANUMERIC)) "/revoke" } {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button.revoke { "Revoke" }
                                }
                            } } }
                        }
                    }
                }
            }
            @if admin && !view.others.is_empty() && !view.pools.is_empty() {
                h2 { "Transfer licences" }
                form method="post" action={ (path) "/transfer" } id="transfer" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Move " input name="quantity" id="transfer-quantity" value="1" size="4"; } " "
                    label { select name="tag" id="transfer-tag" {
                        @for tag in tags(&view.pools) { option value=(tag) { (tag) } }
                    } } " "
                    label { "to " select name="to" id="transfer-to" {
                        @for other in &view.others { option value=(other) { (other) } }
                    } } " "
                    label { input type="checkbox" name="force" value="on" id="transfer-force"; " also licences in use (force)" } " "
                    button id="transfer-review" { "Review" }
                }
            }
            @if admin {
                h3 { "New registration token" }
                form method="post" action={ (path) "/tokens" } id="create-token" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Valid for (days) " input name="days" id="token-days" value="30" size="4"; } " "
                    label { "Uses " input name="uses" id="token-uses" value="1" size="4"; } " "
                    label { "Description " input name="description" id="token-description"; } " "
                    label { input type="checkbox" name="export_controlled" value="on"; " export-controlled functionality" } " "
                    button id="create" { "Create" }
                }
            }
        },
    )
}

/// The pools' tags, each once, in order.
fn tags(pools: &[pb::Pool]) -> Vec<&str> {
    let mut tags: Vec<&str> = pools.iter().map(|p| p.tag.as_str()).collect();
    tags.dedup();
    tags
}

pub(crate) fn confirm_transfer(session: &Session, plan: &TransferPlan) -> String {
    let path = va_path(&plan.smart, &plan.from);
    let unconsumed = plan.total.saturating_sub(plan.in_use);
    page(
        Some(session),
        "Confirm the transfer",
        html! {
            p id="plan" {
                "Move " (plan.quantity) " " (plan.tag) " from " (plan.from) " to " (plan.to)
                ". " (plan.from) " holds " (plan.total) ", " (plan.in_use) " in use."
            }
            @if plan.quantity > plan.total {
                p.error id="error" { "The pool holds only " (plan.total) ": this transfer will be refused." }
            } @else if plan.quantity > unconsumed && !plan.force {
                p.error id="error" {
                    "Only " (unconsumed) " are unconsumed: without force this transfer will be refused."
                }
            } @else if plan.moved_in_use() > 0 {
                p.alert id="consequence" {
                    (plan.moved_in_use()) " of them are in use: the devices holding them are granted less at their next renewal and go out of compliance."
                }
            } @else {
                p id="consequence" { "None of them is in use: no device is affected." }
            }
            form method="post" action={ (path) "/transfer" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="quantity" value=(plan.quantity);
                input type="hidden" name="tag" value=(plan.tag);
                input type="hidden" name="to" value=(plan.to);
                @if plan.force { input type="hidden" name="force" value="on"; }
                input type="hidden" name="confirm" value="yes";
                button id="transfer-confirm" { "Transfer" }
                " " a href=(path) { "Cancel" }
            }
        },
    )
}

/// What the reservations page shows once, after a form.
pub(crate) enum Reserved {
    Authorized(pb::Reservation),
    Returned(String),
    Error(String),
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ReservationKind::try_from(kind) {
        Ok(pb::ReservationKind::Permanent) => "PLR",
        Ok(pb::ReservationKind::Specific) => "SLR",
        _ => "?",
    }
}

pub(crate) fn reservations(
    session: &Session,
    view: &ReservationsView,
    shown: Option<&Reserved>,
) -> String {
    let admin = session.role == Role::Admin;
    let base = format!(
        "/reservations/{}",
        utf8_percent_encode(&view.smart, NON_ALPHANUMERIC)
    );
    page(
        Some(session),
        &format!("{}: reservations", view.smart),
        html! {
            @match shown {
                Some(Reserved::Error(message)) => p.error id="error" { (message) },
                Some(Reserved::Returned(message)) => p.shown id="returned" { (message) },
                Some(Reserved::Authorized(r)) => div.shown id="authorized" {
                    p { "The authorisation code for " @if let Some(udi) = &r.udi { (udi.product_id) ":" (udi.serial) } ", to install on the device:" }
                    input readonly id="authorization-code" value=(r.authorization_code) onclick="this.select()";
                    " " button type="button" onclick="navigator.clipboard.writeText(document.getElementById('authorization-code').value)" { "Copy" }
                    p { "The device answers with the confirmation code " code id="confirmation-code" { (r.confirmation_code) } "." }
                },
                None => {},
            }
            @if admin {
                h2 { "Reserve licences" }
                form method="post" action={ (base) "/authorize" } id="reserve" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    p { label { "Virtual account " select name="virtual_account" id="reserve-va" {
                        @for va in &view.virtual_accounts { option value=(va) { (va) } }
                    } } }
                    p { label { "The device's request code " input name="request_code" id="request-code" size="40"; } }
                    p {
                        label { input type="radio" name="kind" value="plr" id="kind-plr"; " PLR: every licence, permanently" } " "
                        label { input type="radio" name="kind" value="slr" id="kind-slr" checked; " SLR: these licences, on this device: " }
                        input name="licenses" id="slr-licenses" placeholder="PAR-TPS=1, PAR-ADD-TPS=2" size="30";
                    }
                    button id="reserve-submit" { "Get the authorisation code" }
                }
                h2 { "Return a reservation" }
                form method="post" action={ (base) "/return" } id="return" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "The device's return code " input name="return_code" id="return-code" size="40"; } " "
                    button id="return-submit" { "Return" }
                }
            }
            h2 { "Reservations" }
            @if view.reservations.is_empty() { p { "No reservations." } } @else {
                table.reservations {
                    tr { th { "Kind" } th { "Virtual account" } th { "UDI" } th { "Licences" } th { "Made" } th { "Status" } }
                    @for r in &view.reservations {
                        tr data-reservation=(r.id) {
                            td { (kind_name(r.kind)) } td { (r.virtual_account) }
                            td { @if let Some(udi) = &r.udi { (udi.product_id) ":" (udi.serial) } }
                            td { @if r.licenses.is_empty() { "all" } @for l in &r.licenses { (l.tag) " " (l.count) " " } }
                            td { (date(r.created_at)) }
                            td.status { @if r.returned_at > 0 { "returned " (date(r.returned_at)) } @else { "reserved" } }
                        }
                    }
                }
            }
        },
    )
}

/// A window's transactions per second.
fn tps(count: u64, w: &crate::ledger::UsageWindow) -> f64 {
    let seconds = (w.window_end - w.window_start).max(1) as f64 / 1000.0;
    count as f64 / seconds
}

/// Admitted and rejected TPS of one tag over time, as an SVG line chart.
fn chart(tag: &str, windows: &[&crate::ledger::UsageWindow]) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 180.0;
    const PAD: f64 = 40.0;
    let start = windows.iter().map(|w| w.window_start).min().unwrap_or(0);
    let end = windows
        .iter()
        .map(|w| w.window_end)
        .max()
        .unwrap_or(1)
        .max(start + 1);
    let top = windows
        .iter()
        .map(|w| tps(w.admitted, w).max(tps(w.rejected, w)))
        .fold(1.0_f64, f64::max);
    let x = |ms: i64| PAD + (ms - start) as f64 / (end - start) as f64 * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD / 2.0 - v / top * (H - PAD);
    let line = |count: fn(&crate::ledger::UsageWindow) -> u64| -> String {
        windows
            .iter()
            .map(|w| {
                let mid = (w.window_start + w.window_end) / 2;
                format!("{:.1},{:.1}", x(mid), y(tps(count(w), w)))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    // The devices' peak is over whole seconds; a window shorter than one has none, so its
    // own admitted rate counts too.
    let peak = windows
        .iter()
        .map(|w| w.peak_tps.max(tps(w.admitted, w).round() as u64))
        .max()
        .unwrap_or(0);
    html! {
        h3 { (tag) " (peak " span.peak { (peak) } " admitted TPS)" }
        svg xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" data-tag=(tag) {
            title { (tag) ": admitted and rejected TPS over time" }
            rect x="0" y="0" width=(W) height=(H) fill="#fafafa" stroke="#ccc" {}
            text x="4" y="14" font-size="11" { (format!("{top:.0} TPS")) }
            text x="4" y=(H - 6.0) font-size="11" { (date(start / 1000)) }
            text x=(W - 130.0) y=(H - 6.0) font-size="11" { (date(end / 1000)) }
            polyline.admitted fill="none" stroke="#080" stroke-width="2" points=(line(|w| w.admitted)) {}
            polyline.rejected fill="none" stroke="#c00" stroke-width="2" points=(line(|w| w.rejected)) {}
        }
    }
}

pub(crate) fn usage(
    session: &Session,
    smart: &str,
    va: &str,
    instance: &str,
    windows: &[crate::ledger::UsageWindow],
) -> String {
    let mut tags: Vec<&str> = windows.iter().map(|w| w.tag.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    let query = if instance.is_empty() {
        String::new()
    } else {
        format!(
            "?instance={}",
            utf8_percent_encode(instance, NON_ALPHANUMERIC)
        )
    };
    let csv = format!(
        "/usage{}/csv{query}",
        va_path(smart, va).trim_start_matches("/va")
    );
    page(
        Some(session),
        &format!("Usage of {smart} / {va}"),
        html! {
            p {
                @if instance.is_empty() { "Every instance of the virtual account. " } @else { "Instance " code { (instance) } ". " }
                "Admitted " span style="color:#080" { "(green)" } " and rejected " span style="color:#c00" { "(red)" }
                " transactions per second, window by window. "
                a href=(csv) id="csv" { "CSV export" } " · " a href=(va_path(smart, va)) { "Back" }
            }
            @if windows.is_empty() { p id="no-usage" { "No usage reported yet." } }
            @for tag in tags {
                (chart(tag, &windows.iter().filter(|w| w.tag == tag).collect::<Vec<_>>()))
            }
        },
    )
}

pub(crate) fn events(
    session: &Session,
    filter: &EventFilter,
    entries: &[pb::AuditEntry],
) -> String {
    let query = format!(
        "account={}&instance={}&kind={}",
        utf8_percent_encode(filter.account.trim(), NON_ALPHANUMERIC),
        utf8_percent_encode(filter.instance.trim(), NON_ALPHANUMERIC),
        utf8_percent_encode(filter.kind.trim(), NON_ALPHANUMERIC)
    );
    page(
        Some(session),
        "Event log",
        html! {
            form method="get" action="/events" id="event-filter" {
                label { "Smart account " input name="account" value=(filter.account) size="12"; } " "
                label { "Instance " input name="instance" value=(filter.instance) size="20"; } " "
                label { "Kind " input name="kind" value=(filter.kind) size="16" placeholder="instance.register"; } " "
                button { "Filter" } " "
                a href={ "/events/csv?" (query) } id="events-csv" { "CSV export" }
            }
            @if entries.is_empty() { p { "No events." } } @else {
                table.events {
                    tr { th { "#" } th { "When" } th { "Who" } th { "What" } th { "Detail" } }
                    @for e in entries {
                        tr { td { (e.id) } td { (date(e.at)) } td { (e.actor) } td.action { (e.action) } td { (e.detail) } }
                    }
                }
            }
        },
    )
}

pub(crate) fn satellites(session: &Session, satellites: &[pb::SatelliteInfo]) -> String {
    page(
        Some(session),
        "Satellites",
        html! {
            @if satellites.is_empty() { p { "No satellites: " code { "entitle-authority satellite add NAME ..." } } } @else {
                table.satellites {
                    tr { th { "Name" } th { "Serial" } th { "Accounts" } th { "Delegated" } th { "Expires" } th { "Last sync" } th { "Status" } }
                    @for s in satellites {
                        tr {
                            td { (s.name) } td { (s.serial) }
                            td { @for a in &s.accounts { (a.smart_account) "/" (a.virtual_account) " " } }
                            td { (date(s.issued_at)) } td { (date(s.expires_at)) }
                            td { @if s.last_sync_at > 0 { (date(s.last_sync_at)) " (#" (s.last_sequence) ")" } @else { "never" } }
                            td { @if s.revoked_at > 0 { "revoked " (date(s.revoked_at)) } @else { "active" } }
                        }
                    }
                }
            }
        },
    )
}

/// One licence of a virtual account: the instances holding it and the events naming it.
pub(crate) fn licence(
    session: &Session,
    view: &VirtualAccountView,
    tag: &str,
    events: &[pb::AuditEntry],
) -> String {
    let holders: Vec<&pb::Instance> = view
        .instances
        .iter()
        .filter(|i| i.grants.iter().any(|g| g.tag == tag && g.granted > 0))
        .collect();
    page(
        Some(session),
        &format!("{} / {}: {tag}", view.smart, view.name),
        html! {
            (pools_table(&view.pools.iter().filter(|p| p.tag == tag).cloned().collect::<Vec<_>>(), None))
            h2 { "Product instances holding it" }
            @if holders.is_empty() { p { "None." } } @else {
                table.holders {
                    tr { th { "UDI" } th { "Granted" } th { "Deadline" } }
                    @for i in holders {
                        tr {
                            td { @if let Some(udi) = &i.udi { (udi.product_id) ":" (udi.serial) } }
                            td { @for g in i.grants.iter().filter(|g| g.tag == tag) { (g.granted) " of " (g.requested) } }
                            td { @if i.deadline_at > 0 { (date(i.deadline_at)) } }
                        }
                    }
                }
            }
            h2 { "Events naming it" }
            @if events.is_empty() { p { "None." } } @else {
                table.events {
                    tr { th { "When" } th { "Who" } th { "What" } th { "Detail" } }
                    @for e in events { tr { td { (date(e.at)) } td { (e.actor) } td { (e.action) } td { (e.detail) } } }
                }
            }
            p { a href=(va_path(&view.smart, &view.name)) { "Back" } }
        },
    )
}
