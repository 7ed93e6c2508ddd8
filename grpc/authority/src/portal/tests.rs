//! The portal's access rules over its router, in process: logins, sessions, CSRF tokens,
//! the viewer's refusals, and bad form input shown as one message that changes nothing.
//! (The walk through an operator's day in a real browser is in the e2e tests.)
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::*;
use crate::Periods;

struct Fixture {
    _dir: tempfile::TempDir,
    portal: Arc<Portal>,
    admin: String,
    viewer: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    crate::init(dir.path()).unwrap();
    let state =
        AuthorityState::open(dir.path(), Periods::default(), crate::system_clock()).unwrap();
    let admin = AdminService(state.clone());
    admin
        .create_smart_account(request(pb::CreateSmartAccountRequest {
            name: "Acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    admin
        .create_virtual_account(request(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Radius".into(),
        }))
        .await
        .unwrap();
    let files = DataDir::new(dir.path());
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap().trim().to_owned();
    let (admin, viewer) = (
        read(files.admin_credential()),
        read(files.viewer_credential()),
    );
    let portal = Portal::new(state, dir.path()).unwrap();
    Fixture {
        _dir: dir,
        portal,
        admin,
        viewer,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(portal: &Arc<Portal>, request: Request<Body>) -> Answer {
    let response = portal.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn post(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(form.to_owned())).unwrap()
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

/// Logs in with `credential`: the session cookie and the page's CSRF token.
async fn log_in(f: &Fixture, credential: &str) -> (String, String) {
    let answer = call(
        &f.portal,
        post("/login", None, &format!("credential={credential}")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let set = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn tokens(f: &Fixture) -> usize {
    f.portal
        .admin
        .list_tokens(request(pb::ListTokensRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .len()
}

#[tokio::test]
async fn pages_need_a_login_and_a_wrong_credential_is_slowed_and_counted() {
    let f = fixture().await;
    let answer = call(&f.portal, get("/", None)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[header::LOCATION], "/login");
    let forged = call(&f.portal, get("/", Some("entitle_session=00ff"))).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);

    let started = std::time::Instant::now();
    let answer = call(&f.portal, post("/login", None, "credential=guess")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("not valid"));
    assert!(answer.headers.get(header::SET_COOKIE).is_none());
    assert!(started.elapsed() >= FAILED_LOGIN_DELAY);
    call(&f.portal, post("/login", None, "credential=")).await;
    assert_eq!(f.portal.failed_logins.load(Ordering::Relaxed), 2);

    let (cookie, csrf) = log_in(&f, &f.admin).await;
    let overview = call(&f.portal, get("/", Some(&cookie))).await;
    assert!(overview.body.contains("Acme") && overview.body.contains("/va/Acme/Radius"));
    // Logged out, the cookie opens nothing.
    call(
        &f.portal,
        post("/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    let answer = call(&f.portal, get("/", Some(&cookie))).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_token_is_made_only_by_an_admin_form_with_its_csrf_token_and_shown_once() {
    let f = fixture().await;
    let (cookie, csrf) = log_in(&f, &f.admin).await;
    let form = "days=30&uses=2&description=lab";

    // Without the CSRF token, or with another session's, nothing is made.
    let answer = call(
        &f.portal,
        post("/va/Acme/Radius/tokens", Some(&cookie), form),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("security token"), "{}", answer.body);
    let (_, other_csrf) = log_in(&f, &f.admin).await;
    let answer = call(
        &f.portal,
        post(
            "/va/Acme/Radius/tokens",
            Some(&cookie),
            &format!("{form}&csrf={other_csrf}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(tokens(&f).await, 0);

    // Bad input: one clear message, nothing made.
    for (bad, words) in [
        ("days=abc&uses=1", "Days must be a whole number"),
        ("days=0&uses=1", "day"),
    ] {
        let answer = call(
            &f.portal,
            post(
                "/va/Acme/Radius/tokens",
                Some(&cookie),
                &format!("{bad}&csrf={csrf}"),
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.body.matches("class=\"error\"").count(),
            1,
            "{}",
            answer.body
        );
        assert!(answer.body.contains(words), "{bad}: {}", answer.body);
    }
    assert_eq!(tokens(&f).await, 0);

    let answer = call(
        &f.portal,
        post(
            "/va/Acme/Radius/tokens",
            Some(&cookie),
            &format!("{form}&csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let secret = answer
        .body
        .split("id=\"token-secret\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(secret.len() > 20);
    assert_eq!(tokens(&f).await, 1);
    // Shown once: the page reloaded does not show it.
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert!(!page.body.contains(&secret));
    assert!(page.body.contains("lab") && page.body.contains("0 of 2"));
}

#[tokio::test]
async fn a_viewer_sees_everything_and_changes_nothing() {
    let f = fixture().await;
    let (admin_cookie, admin_csrf) = log_in(&f, &f.admin).await;
    call(
        &f.portal,
        post(
            "/va/Acme/Radius/tokens",
            Some(&admin_cookie),
            &format!("days=5&uses=1&csrf={admin_csrf}"),
        ),
    )
    .await;
    let id = f
        .portal
        .admin
        .list_tokens(request(pb::ListTokensRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .tokens[0]
        .id
        .clone();

    let (cookie, csrf) = log_in(&f, &f.viewer).await;
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert!(page.body.contains(&id), "the viewer sees the token");
    assert!(!page.body.contains("create-token") && !page.body.contains("Revoke"));
    let answer = call(
        &f.portal,
        post(
            "/va/Acme/Radius/tokens",
            Some(&cookie),
            &format!("days=5&uses=1&csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains("viewer cannot change"));
    let answer = call(
        &f.portal,
        post(
            &format!("/va/Acme/Radius/tokens/{id}/revoke"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(tokens(&f).await, 1);
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&admin_cookie))).await;
    assert!(page.body.contains("active") && !page.body.contains("revoked"));

    // The admin revokes it, through the same service as the CLI, into the audit log.
    let answer = call(
        &f.portal,
        post(
            &format!("/va/Acme/Radius/tokens/{id}/revoke"),
            Some(&admin_cookie),
            &format!("csrf={admin_csrf}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&admin_cookie))).await;
    assert!(page.body.contains("revoked"));
    let audit = f
        .portal
        .admin
        .list_audit(request(pb::ListAuditRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        audit
            .iter()
            .any(|e| e.action.contains("token") && e.action.contains("revoke")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn malformed_cookies_and_forms_are_refused_and_change_nothing() {
    let f = fixture().await;
    let (cookie, csrf) = log_in(&f, &f.admin).await;
    for bad_cookie in [
        "",
        "entitle_session",
        "entitle_session=",
        "a=b; entitle_session=; c",
        "entitle_session=\u{7f}",
        &format!("{cookie}x"),
        &"entitle_session=a".repeat(2000),
    ] {
        let mut request = Request::get("/va/Acme/Radius");
        if let Ok(value) = axum::http::HeaderValue::from_str(bad_cookie) {
            request = request.header(header::COOKIE, value);
        }
        let answer = call(&f.portal, request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{bad_cookie:?}");
    }
    for body in [
        "".to_owned(),
        "%".to_owned(),
        "days=%ff%fe&uses=1".to_owned(),
        format!("csrf={csrf}&days=1&days=2&uses=1"),
        format!("csrf={csrf}&days=99999999999999999999&uses=1"),
        format!("csrf={csrf}&days=-1&uses=1"),
        format!("csrf={csrf}&days=1&uses=1&description=%00"),
        format!("csrf={csrf}&{}", "x".repeat(100_000)),
    ] {
        let answer = call(
            &f.portal,
            post("/va/Acme/Radius/tokens", Some(&cookie), &body),
        )
        .await;
        assert!(
            answer.status.is_client_error(),
            "{body:.60}: {}",
            answer.status
        );
    }
    let answer = call(
        &f.portal,
        post(
            "/va/Acme/Radius/tokens/no-such-token/revoke",
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
    let answer = call(&f.portal, get("/va/Acme/NoSuchAccount", Some(&cookie))).await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
    assert_eq!(tokens(&f).await, 0);
}

#[tokio::test]
async fn a_transfer_says_what_it_will_do_and_runs_only_once_confirmed() {
    let f = fixture().await;
    f.portal
        .admin
        .create_virtual_account(request(pb::CreateVirtualAccountRequest {
            smart_account: "Acme".into(),
            name: "Lab".into(),
        }))
        .await
        .unwrap();
    f.portal
        .admin
        .add_licenses(request(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-TPS".into(),
            quantity: 3,
            ..Default::default()
        }))
        .await
        .unwrap();
    let (cookie, csrf) = log_in(&f, &f.admin).await;
    let form = format!("csrf={csrf}&quantity=2&tag=PAR-TPS&to=Lab");
    let review = call(
        &f.portal,
        post("/va/Acme/Radius/transfer", Some(&cookie), &form),
    )
    .await;
    assert_eq!(review.status, StatusCode::OK);
    assert!(
        review.body.contains("Move 2 PAR-TPS from Radius to Lab"),
        "{}",
        review.body
    );
    assert!(review.body.contains("no device is affected"));
    assert_eq!(
        pools(&f.portal, "Acme", "Radius").await.ok().unwrap()[0].quantity,
        3,
        "not yet"
    );

    // More than the pool holds: said before, refused after.
    let too_many = format!("csrf={csrf}&quantity=4&tag=PAR-TPS&to=Lab");
    let review = call(
        &f.portal,
        post("/va/Acme/Radius/transfer", Some(&cookie), &too_many),
    )
    .await;
    assert!(review.body.contains("will be refused"));
    let refused = call(
        &f.portal,
        post(
            "/va/Acme/Radius/transfer",
            Some(&cookie),
            &format!("{too_many}&confirm=yes"),
        ),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    let done = call(
        &f.portal,
        post(
            "/va/Acme/Radius/transfer",
            Some(&cookie),
            &format!("{form}&confirm=yes"),
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        pools(&f.portal, "Acme", "Radius").await.ok().unwrap()[0].quantity,
        1
    );
    assert_eq!(
        pools(&f.portal, "Acme", "Lab").await.ok().unwrap()[0].quantity,
        2
    );
}

#[tokio::test]
async fn a_reservation_form_checks_its_input_and_the_pool_before_it_reserves() {
    let f = fixture().await;
    f.portal
        .admin
        .add_licenses(request(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-TPS".into(),
            quantity: 1,
            ..Default::default()
        }))
        .await
        .unwrap();
    let (cookie, csrf) = log_in(&f, &f.admin).await;
    let udi = entitle_codes::Udi::new("CPAR", "S1").unwrap();
    let code = entitle_codes::make_request(&udi, 1).unwrap();
    let reserve = |rest: &str| format!("csrf={csrf}&virtual_account=Radius&{rest}");
    for (rest, words) in [
        (
            format!("request_code={code}&kind=slr&licenses=PAR-TPS"),
            "TAG=COUNT",
        ),
        (
            format!("request_code={code}&kind=slr&licenses=PAR-TPS%3Dx"),
            "whole number",
        ),
        (
            format!("request_code={code}&kind=slr&licenses=PAR-TPS%3D2"),
            "1 available",
        ),
        (
            format!("request_code={code}&kind=other"),
            "choose PLR or SLR",
        ),
        (
            "request_code=not-a-code&kind=slr&licenses=PAR-TPS%3D1".to_owned(),
            "",
        ),
    ] {
        let answer = call(
            &f.portal,
            post(
                "/reservations/Acme/authorize",
                Some(&cookie),
                &reserve(&rest),
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{rest}");
        assert_eq!(answer.body.matches("class=\"error\"").count(), 1, "{rest}");
        assert!(answer.body.contains(words), "{rest}: {}", answer.body);
        assert!(
            answer.body.contains("No reservations."),
            "{rest}: nothing reserved"
        );
    }
    let answer = call(
        &f.portal,
        post(
            "/reservations/Acme/authorize",
            Some(&cookie),
            &reserve(&format!(
                "request_code={code}&kind=slr&licenses=PAR-TPS%3D1"
            )),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("id=\"authorization-code\""));
    assert!(answer.body.contains("CPAR:S1") && answer.body.contains("reserved"));
    assert_eq!(
        pools(&f.portal, "Acme", "Radius").await.ok().unwrap()[0].in_use,
        1
    );
    let answer = call(
        &f.portal,
        post(
            "/reservations/Acme/return",
            Some(&cookie),
            &format!("csrf={csrf}&return_code=garbage"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn usage_is_charted_window_by_window_and_exported_as_csv() {
    let f = fixture().await;
    f.portal
        .state
        .store
        .run(|conn| {
            conn.execute_batch(
                "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key, export_controlled, registered_at, last_contact, cert_serial, cert_expires_at)
                 SELECT 'i-1', id, 'CPAR', 'U1', x'00', 0, 0, 0, 1, 0 FROM virtual_accounts WHERE name = 'Radius'",
            )?;
            for (sequence, admitted, rejected, peak) in [(1u64, 6000, 0, 120), (2, 12_000, 600, 250), (3, 3000, 0, 60)] {
                let start = 1_800_000_000_000 + (sequence as i64 - 1) * 60_000;
                let report = pb::UsageReport {
                    instance_id: "i-1".into(),
                    sequence,
                    window_start: start,
                    window_end: start + 60_000,
                    usage: vec![pb::EntitlementUsage {
                        tag: "PAR-TPS".into(),
                        admitted,
                        rejected,
                        peak_tps: peak,
                        tps_histogram: vec![],
                    }],
                };
                crate::ledger::store_report(conn, 0, &report, &[sequence as u8])?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let (cookie, _) = log_in(&f, &f.viewer).await;
    let page = call(&f.portal, get("/usage/Acme/Radius", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg") && page.body.contains("data-tag=\"PAR-TPS\""));
    assert!(
        page.body.contains("<span class=\"peak\">250</span>"),
        "{}",
        page.body
    );
    // Three windows, three points on each line; the top of the scale is 200 TPS (12,000 in 60 s).
    let points = page.body.split("class=\"admitted\"").nth(1).unwrap();
    let points = points
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split(' ').count(), 3, "{points}");
    assert!(page.body.contains("200 TPS"));
    let one = call(
        &f.portal,
        get("/usage/Acme/Radius?instance=i-1", Some(&cookie)),
    )
    .await;
    assert!(one.body.contains("Instance <code>i-1</code>"));
    let none = call(
        &f.portal,
        get("/usage/Acme/Radius?instance=other", Some(&cookie)),
    )
    .await;
    assert!(none.body.contains("No usage reported yet."));

    let csv = call(&f.portal, get("/usage/Acme/Radius/csv", Some(&cookie))).await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        csv.body,
        "window_start_ms,window_end_ms,tag,admitted,rejected,peak_tps\n\
         1800000000000,1800000060000,PAR-TPS,6000,0,120\n\
         1800000060000,1800000120000,PAR-TPS,12000,600,250\n\
         1800000120000,1800000180000,PAR-TPS,3000,0,60\n"
    );
    let anonymous = call(&f.portal, get("/usage/Acme/Radius/csv", None)).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(csv_field("a,b\"c"), "\"a,b\"\"c\"");
}

#[tokio::test]
async fn an_instance_is_removed_from_its_page_and_the_event_log_filters_and_exports() {
    let f = fixture().await;
    f.portal
        .state
        .store
        .run(|conn| {
            conn.execute_batch(
                "INSERT INTO instances (id, virtual_account_id, product_id, serial, device_key, export_controlled, registered_at, last_contact, cert_serial, cert_expires_at)
                 SELECT 'i-1', id, 'CPAR', 'U1', x'00', 0, 0, 0, 1, 0 FROM virtual_accounts WHERE name = 'Radius'",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let (cookie, csrf) = log_in(&f, &f.admin).await;
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert!(
        page.body.contains("/va/Acme/Radius/instances/i%2D1/remove"),
        "{}",
        page.body
    );
    let removed = call(
        &f.portal,
        post(
            "/va/Acme/Radius/instances/i%2D1/remove",
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert!(page.body.contains(">removed<") && !page.body.contains("/remove\""));
    let again = call(
        &f.portal,
        post(
            "/va/Acme/Radius/instances/i-1/remove",
            Some(&cookie),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert!(again.status.is_client_error());

    let all = call(&f.portal, get("/events", Some(&cookie))).await;
    assert!(all.body.contains("instance.remove") && all.body.contains("account.create"));
    let filtered = call(
        &f.portal,
        get("/events?kind=instance&account=Acme", Some(&cookie)),
    )
    .await;
    assert!(filtered.body.contains("instance.remove"));
    assert!(
        !filtered.body.contains("account.create"),
        "{}",
        filtered.body
    );
    let csv = call(
        &f.portal,
        get("/events/csv?kind=instance.remove", Some(&cookie)),
    )
    .await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "id,at,actor,action,detail");
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(
        lines[1].contains(",admin,instance.remove,\""),
        "{}",
        lines[1]
    );
}

#[test]
fn alerts_name_what_needs_the_operator() {
    let now = 1_800_000_000;
    let instance = |id: &str, granted: u64, deadline_in: i64| pb::Instance {
        instance_id: id.into(),
        udi: Some(pb::Udi {
            product_id: "CPAR".into(),
            serial: id.into(),
        }),
        grants: vec![pb::Grant {
            tag: "PAR-TPS".into(),
            requested: 2,
            granted,
            ..Default::default()
        }],
        deadline_at: now + deadline_in,
        ..Default::default()
    };
    let token = |id: &str, expires_in: i64, revoked: bool| pb::Token {
        id: id.into(),
        expires_at: now + expires_in,
        revoked,
        ..Default::default()
    };
    let alerts = alerts(
        "Radius",
        &[
            instance("ok", 2, 60 * 86_400),
            instance("short", 1, 60 * 86_400),
            instance("late", 2, 86_400),
            pb::Instance {
                removed: true,
                ..instance("gone", 0, 0)
            },
        ],
        &[
            token("t-ok", 30 * 86_400, false),
            token("t-soon", 3600, false),
            token("t-revoked", 3600, true),
            token("t-expired", -3600, false),
        ],
        now,
    );
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    assert!(alerts[0].contains("CPAR:short is out of compliance for PAR-TPS (1 of 2 granted)"));
    assert!(alerts[1].contains("CPAR:late must call home by"));
    assert!(alerts[2].contains("token t-soon expires"));
}

#[test]
fn satellites_near_their_sync_deadline_or_expiry_are_alerts() {
    let now = 1_800_000_000;
    let day = 86_400;
    let satellite =
        |name: &str, last_sync_ago: i64, expires_in: i64, revoked: bool| pb::SatelliteInfo {
            name: name.into(),
            last_sync_at: if last_sync_ago < 0 {
                0
            } else {
                now - last_sync_ago
            },
            expires_at: now + expires_in,
            revoked_at: i64::from(revoked),
            ..Default::default()
        };
    let alerts = satellite_alerts(
        &[
            satellite("fresh", day, 300 * day, false),
            satellite("stale", 25 * day, 300 * day, false),
            satellite("ending", day, 2 * day, false),
            satellite("never", -1, 300 * day, false),
            satellite("revoked", 29 * day, 300 * day, true),
        ],
        now,
    );
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts[0].starts_with("satellite stale last synced"));
    assert!(alerts[1].starts_with("satellite ending's delegation expires"));
}

#[tokio::test]
async fn the_satellites_page_lists_them() {
    let f = fixture().await;
    let (cookie, _) = log_in(&f, &f.viewer).await;
    let page = call(&f.portal, get("/satellites", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No satellites"));
    let key = entitle_proto::signing::generate_key().unwrap();
    f.portal
        .admin
        .delegate_satellite(request(pb::DelegateSatelliteRequest {
            name: "plant-7".into(),
            satellite_public_key: key.verifying_key().to_bytes().to_vec(),
            accounts: vec![pb::AccountName {
                smart_account: "Acme".into(),
                virtual_account: "Radius".into(),
            }],
            ..Default::default()
        }))
        .await
        .unwrap();
    let page = call(&f.portal, get("/satellites", Some(&cookie))).await;
    assert!(page.body.contains("plant-7") && page.body.contains("Acme/Radius"));
    assert!(page.body.contains("never") && page.body.contains("active"));
}

#[tokio::test]
async fn a_licence_opens_its_holders_and_its_events_and_shows_what_is_reserved() {
    let f = fixture().await;
    f.portal
        .admin
        .add_licenses(request(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-TPS".into(),
            quantity: 2,
            ..Default::default()
        }))
        .await
        .unwrap();
    let code =
        entitle_codes::make_request(&entitle_codes::Udi::new("CPAR", "S1").unwrap(), 1).unwrap();
    f.portal
        .admin
        .authorize_reservation(request(pb::AuthorizeReservationRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            request_code: code,
            kind: pb::ReservationKind::Specific as i32,
            licenses: vec![pb::LicenseCount {
                tag: "PAR-TPS".into(),
                count: 1,
            }],
        }))
        .await
        .unwrap();
    let (cookie, _) = log_in(&f, &f.viewer).await;
    let page = call(&f.portal, get("/va/Acme/Radius", Some(&cookie))).await;
    assert!(
        page.body.contains("<td class=\"reserved\">1</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("href=\"/va/Acme/Radius/licences/PAR%2DTPS\"")
    );
    let licence = call(
        &f.portal,
        get("/va/Acme/Radius/licences/PAR%2DTPS", Some(&cookie)),
    )
    .await;
    assert_eq!(licence.status, StatusCode::OK);
    assert!(licence.body.contains("Events naming it"));
    assert!(
        licence.body.matches("PAR-TPS").count() >= 3,
        "{}",
        licence.body
    );
    let unknown = call(
        &f.portal,
        get("/va/Acme/Radius/licences/NOPE", Some(&cookie)),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_viewer_is_refused_every_change_the_portal_offers() {
    let f = fixture().await;
    let (cookie, csrf) = log_in(&f, &f.viewer).await;
    let audit = |f: &Fixture| {
        let admin = f.portal.admin.clone();
        async move {
            admin
                .list_audit(request(pb::ListAuditRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .entries
                .len()
        }
    };
    let before = audit(&f).await;
    for (path, form) in [
        ("/va/Acme/Radius/tokens", "days=5&uses=1"),
        ("/va/Acme/Radius/tokens/any/revoke", ""),
        (
            "/va/Acme/Radius/transfer",
            "quantity=1&tag=PAR-TPS&to=Lab&confirm=yes",
        ),
        ("/va/Acme/Radius/instances/any/remove", ""),
        (
            "/reservations/Acme/authorize",
            "virtual_account=Radius&request_code=x&kind=plr",
        ),
        ("/reservations/Acme/return", "return_code=x"),
    ] {
        let answer = call(
            &f.portal,
            post(path, Some(&cookie), &format!("csrf={csrf}&{form}")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.body.contains("viewer cannot change"), "{path}");
    }
    assert_eq!(audit(&f).await, before, "nothing was changed");
}
