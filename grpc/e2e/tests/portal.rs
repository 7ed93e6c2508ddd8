//! The web portal in a real browser: headless Chromium driven through chromedriver against
//! a real `entitle-authority serve --portal-listen` and a real `entitled`. An operator logs
//! in, makes a registration token, registers the sidecar with it and sees the instance
//! with its licence; bad input and a form without its CSRF token are refused on the page;
//! a viewer sees everything and changes nothing.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entitle_proto::pb;
use fantoccini::{Client, ClientBuilder, Locator};
use harness::{Authority, Entitled, attached_gate, authorization, registration, traffic_for};
use serde_json::json;

const ENTITLE: &str = env!("CARGO_BIN_EXE_e2e-entitle");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver on a free loopback port, and the Chromium profile its browser uses; on
/// drop both are killed, the browser too when a failed test never closed it.
struct Driver(Child, u16, std::path::PathBuf);

impl Driver {
    fn start(profile: std::path::PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER}: {e} (.ci/install-peers installs it)"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port, profile)
    }

    /// A headless Chromium with a fresh profile, trusting the authority's private CA by
    /// accepting its certificate (the browser has no way to name a CA file).
    async fn browser(&self) -> Client {
        let profile = &self.2;
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1200,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.1))
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // Chromium outlives its driver: find its processes by their profile.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(format!("--user-data-dir={}", self.2.display()))
            .status();
    }
}

/// The element `css` names, once the page shows it (a click's navigation may still be
/// loading when the click returns).
async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match browser.find(Locator::Css(css)).await {
            Ok(element) => return element,
            Err(e) if Instant::now() > deadline => panic!("{css}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn text(browser: &Client, css: &str) -> String {
    element(browser, css).await.text().await.unwrap()
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let field = element(browser, css).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks what does not leave the page (a checkbox, a radio button).
async fn click(browser: &Client, css: &str) {
    element(browser, css).await.click().await.unwrap();
}

/// Clicks a link or a form's button and waits until the next page has replaced this one
/// (the old page's root element is then stale), so that what is read next is the new page.
async fn follow(browser: &Client, css: &str) {
    let old = browser.find(Locator::Css("html")).await.unwrap();
    element(browser, css).await.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.text().await.is_ok() {
        assert!(Instant::now() < deadline, "{css} led nowhere");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The new page may still be loading: wait until its body is there.
    element(browser, "body").await;
}

async fn log_in(browser: &Client, portal: &str, credential: &str) {
    browser.goto(&format!("{portal}/")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/login")
    );
    fill(browser, "#credential", credential).await;
    follow(browser, "#login").await;
}

/// Posts a form the page did not offer, with `fields`, as a forged request would.
async fn post_forged(browser: &Client, action: &str, fields: serde_json::Value) {
    browser
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
             for (const [k, v] of Object.entries(arguments[1])) {
                 const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            vec![json!(action), fields],
        )
        .await
        .unwrap();
    // Wait for the answer page to replace this one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.find(Locator::Css("#error")).await.is_err() {
        assert!(Instant::now() < deadline, "no answer to the forged form");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn token_rows(browser: &Client) -> usize {
    browser
        .find_all(Locator::Css("tr[data-token]"))
        .await
        .unwrap()
        .len()
}

fn credential(authority: &Authority, file: &str) -> String {
    std::fs::read_to_string(authority.data.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn an_operator_makes_a_token_registers_a_device_with_it_and_a_viewer_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Renewals every 2 s, so that a transfer reaches the device within the test.
    let authority = Authority::start_with(
        dir.path(),
        &["--portal-listen", "127.0.0.1:0", "--renewal-secs", "2"],
    );
    authority.acme(&[("PAR-TPS", 1)]).await;
    let portal = authority.portal_url.clone();
    let driver = Driver::start(dir.path().join("chromium-profile"));
    let browser = driver.browser().await;

    // A wrong credential: one message, still on the login page.
    log_in(&browser, &portal, "not-the-credential").await;
    assert_eq!(
        text(&browser, "#error").await,
        "That credential is not valid."
    );

    log_in(
        &browser,
        &portal,
        &credential(&authority, "admin.credential"),
    )
    .await;
    assert_eq!(text(&browser, "#role").await, "admin");
    assert!(text(&browser, "body").await.contains("Acme"));
    save_screenshot(&browser, "portal-overview.png").await;
    follow(&browser, "a[href='/va/Acme/Radius']").await;
    assert_eq!(text(&browser, "h1").await, "Acme / Radius");
    let before = token_rows(&browser).await;

    // Bad input shows one message and makes nothing.
    fill(&browser, "#token-days", "0").await;
    follow(&browser, "#create").await;
    assert!(text(&browser, "#error").await.contains("day"));
    assert_eq!(token_rows(&browser).await, before);

    // A token, shown once, registers the sidecar; the instance appears with its licence.
    fill(&browser, "#token-days", "7").await;
    fill(&browser, "#token-uses", "1").await;
    fill(&browser, "#token-description", "from the portal").await;
    follow(&browser, "#create").await;
    let secret = element(&browser, "#token-secret")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token_rows(&browser).await, before + 1);
    let sidecar = Entitled::start(
        dir.path(),
        &authority,
        "WEB1",
        "[agent]\nselection = { \"PAR-TPS\" = 1 }\n",
    );
    sidecar.register(secret).await;
    sidecar
        .wait_for("authorised", Duration::from_secs(20), |s| {
            authorization(s) == "AUTHORIZED"
        })
        .await;
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();
    assert!(
        browser.find(Locator::Css("#new-token")).await.is_err(),
        "shown once"
    );
    let instance = text(&browser, "table.instances").await;
    assert!(
        instance.contains("CPAR:WEB1") && instance.contains("PAR-TPS 1/1"),
        "{instance}"
    );
    assert_eq!(
        text(&browser, "tr[data-tag='PAR-TPS'] td.in-use").await,
        "1"
    );
    save_screenshot(&browser, "portal-virtual-account.png").await;

    // Traffic through a gate attached to the sidecar: its usage reaches the ledger and the
    // usage page charts it.
    let (gate, attachment) = attached_gate(&sidecar).await;
    let seen = traffic_for(&gate, Duration::from_secs(2)).await;
    assert!(
        seen.admitted > 0 && seen.rejected > 0,
        "over the licence: {seen:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while authority.admitted("PAR-TPS").await < seen.admitted {
        assert!(
            Instant::now() < deadline,
            "the usage did not reach the ledger"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    follow(&browser, "#usage-link").await;
    let chart = element(&browser, "svg[data-tag='PAR-TPS']").await;
    assert!(chart.html(false).await.unwrap().contains("polyline"));
    let peak: u64 = text(&browser, "span.peak").await.parse().unwrap();
    assert!(peak > 0);
    save_screenshot(&browser, "portal-usage.png").await;
    drop(attachment);
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();

    // Transfer the licence in use to Lab: the portal says what it will do to the device,
    // runs once confirmed, and the device goes out of compliance at its next renewal.
    fill(&browser, "#transfer-quantity", "1").await;
    click(&browser, "#transfer-force").await;
    follow(&browser, "#transfer-review").await;
    assert!(
        text(&browser, "#plan")
            .await
            .contains("Move 1 PAR-TPS from Radius to Lab")
    );
    assert!(
        text(&browser, "#consequence")
            .await
            .contains("go out of compliance")
    );
    follow(&browser, "#transfer-confirm").await;
    assert_eq!(text(&browser, "h1").await, "Acme / Radius");
    sidecar
        .wait_for("out of compliance", Duration::from_secs(20), |s| {
            authorization(s) == "OUT OF COMPLIANCE"
        })
        .await;
    browser.goto(&format!("{portal}/")).await.unwrap();
    let alerts = text(&browser, "ul.alerts").await;
    assert!(
        alerts.contains("CPAR:WEB1 is out of compliance for PAR-TPS"),
        "{alerts}"
    );
    browser
        .goto(&format!("{portal}/va/Acme/Lab"))
        .await
        .unwrap();
    assert_eq!(
        text(&browser, "tr[data-tag='PAR-TPS'] td.quantity").await,
        "1"
    );
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();

    // A form posted without its CSRF token is refused, and changes nothing.
    post_forged(
        &browser,
        &format!("{portal}/va/Acme/Radius/tokens"),
        json!({"days": "5", "uses": "1"}),
    )
    .await;
    assert!(text(&browser, "#error").await.contains("security token"));
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();
    assert_eq!(token_rows(&browser).await, before + 1);

    // A viewer sees the same page without its forms, and a change it posts is refused.
    follow(&browser, "#logout").await;
    log_in(
        &browser,
        &portal,
        &credential(&authority, "viewer.credential"),
    )
    .await;
    assert_eq!(text(&browser, "#role").await, "viewer (read-only)");
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();
    assert!(
        text(&browser, "table.instances")
            .await
            .contains("CPAR:WEB1")
    );
    assert!(browser.find(Locator::Css("#create-token")).await.is_err());
    assert!(browser.find(Locator::Css("button.revoke")).await.is_err());
    let csrf = element(&browser, "input[name=csrf]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    post_forged(
        &browser,
        &format!("{portal}/va/Acme/Radius/tokens"),
        json!({"days": "5", "uses": "1", "csrf": csrf}),
    )
    .await;
    assert!(
        text(&browser, "#error")
            .await
            .contains("viewer cannot change")
    );
    browser
        .goto(&format!("{portal}/va/Acme/Radius"))
        .await
        .unwrap();
    assert_eq!(token_rows(&browser).await, before + 1);
    browser.close().await.unwrap();
    drop(driver);
}

/// Keeps a screenshot of the page for the README (in the test's target directory).
async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name),
        png,
    )
    .unwrap();
}

/// `entitle --sidecar URL args`: its last line of output, which must succeed.
fn entitle(sidecar: &Entitled, args: &[&str]) -> String {
    let out = Command::new(ENTITLE)
        .arg("--sidecar")
        .arg(&sidecar.url)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_plr_is_made_by_pasting_the_request_code_and_installed_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::start_with(dir.path(), &["--portal-listen", "127.0.0.1:0"]);
    authority.acme(&[("PAR-TPS", 1)]).await;
    authority
        .admin()
        .await
        .add_licenses(pb::AddLicensesRequest {
            smart_account: "Acme".into(),
            virtual_account: "Radius".into(),
            tag: "PAR-PLR".into(),
            quantity: 1,
            term_end: 0,
            plr_capable: true,
        })
        .await
        .unwrap();
    let sidecar = Entitled::start(dir.path(), &authority, "PLRWEB", "");
    entitle(&sidecar, &["license", "smart", "reservation"]);
    let request = entitle(&sidecar, &["license", "smart", "reservation", "request"]);

    let portal = authority.portal_url.clone();
    let driver = Driver::start(dir.path().join("chromium-profile"));
    let browser = driver.browser().await;
    log_in(
        &browser,
        &portal,
        &credential(&authority, "admin.credential"),
    )
    .await;
    follow(&browser, "a[href='/reservations/Acme']").await;
    element(&browser, "#reserve-va")
        .await
        .select_by_value("Radius")
        .await
        .unwrap();
    fill(&browser, "#request-code", &request).await;
    click(&browser, "#kind-plr").await;
    follow(&browser, "#reserve-submit").await;
    if let Ok(error) = browser.find(Locator::Css("#error")).await {
        panic!(
            "the reservation was refused: {}",
            error.text().await.unwrap()
        );
    }
    let code = element(&browser, "#authorization-code")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let expected = text(&browser, "#confirmation-code").await;
    assert!(
        text(&browser, "table.reservations")
            .await
            .contains("CPAR:PLRWEB")
    );
    save_screenshot(&browser, "portal-reservations.png").await;

    let confirmation = entitle(
        &sidecar,
        &["license", "smart", "reservation", "install", &code],
    );
    assert_eq!(confirmation, expected);
    assert_eq!(
        registration(&sidecar.status().await),
        "REGISTERED - UNIVERSAL LICENSE RESERVATION"
    );

    // The device's return code, pasted back, returns the licence to the pool.
    let return_code = entitle(&sidecar, &["license", "smart", "reservation", "return"]);
    fill(&browser, "#return-code", &return_code).await;
    follow(&browser, "#return-submit").await;
    assert!(
        text(&browser, "#returned")
            .await
            .contains("back in the pool")
    );
    assert!(
        text(&browser, "table.reservations")
            .await
            .contains("returned")
    );
    browser.close().await.unwrap();
}
