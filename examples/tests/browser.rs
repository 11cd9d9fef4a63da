//! The API-keys page in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini) against the example server served in-process on an ephemeral
//! loopback port over a SQLite file. The admin signs in at `/login` by pasting an admin key,
//! creates a key on `/settings/api-keys`, uses it for ingestion, closes the one-time dialog
//! (after which the key is nowhere in the page), and revokes it.
//!
//! Needs `chromium` (or `chromium-browser`, `google-chrome`; `$KEYWARD_CHROMIUM` names another)
//! and `chromedriver` (`$KEYWARD_CHROMEDRIVER`). Without them the tests print why and pass,
//! unless `KEYWARD_REQUIRE_BROWSER=1` (as in `.ci/run`), where they fail.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use keyward::{HashParams, IssueRequest, KeyManager};
use keyward_cli::open_store;
use keyward_examples::server;
use serde_json::{Value, json};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------
// Finding the browser

/// `name` on `$PATH`, or `$var` when set.
fn find_program(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or `None` after printing why the test is skipped; panics
/// instead when `KEYWARD_REQUIRE_BROWSER=1`.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program(
        "KEYWARD_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find_program("KEYWARD_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = [("chromium", c.is_none()), ("chromedriver", d.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and ");
            let why = format!(
                "no {missing} found on PATH (apt-get install chromium chromium-driver, or set \
                 KEYWARD_CHROMIUM / KEYWARD_CHROMEDRIVER)"
            );
            assert!(
                std::env::var("KEYWARD_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "KEYWARD_REQUIRE_BROWSER=1 but {why}"
            );
            eprintln!("skipping the browser test: {why}");
            None
        }
    }
}

/// One browser at a time: two headless Chromiums on a 2-core machine slow each other down.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chromedriver --port=N` as a child process. On drop, the browser session still open (a
/// test that failed half-way) is deleted through chromedriver, which quits that Chromium; then
/// chromedriver itself is killed by its own process id and reaped.
struct Chromedriver {
    child: Child,
    port: u16,
    url: String,
    log: PathBuf,
    /// Chromium's profile, inside the test's temporary directory.
    profile: PathBuf,
    /// The WebDriver session opened by [`Chromedriver::session`].
    session: std::sync::Mutex<Option<String>>,
}

impl Chromedriver {
    fn start(program: &Path, dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            log,
            profile: dir.join("chromium-profile"),
            session: std::sync::Mutex::new(None),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s; its log:\n{}",
                driver.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A headless Chromium session.
    async fn session(&self, chromium: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-crash-reporter",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a Chromium session: {e}; chromedriver's log:\n{}",
                    self.log_text()
                )
            });
        *self.session.lock().unwrap() = client.session_id().await.unwrap();
        client
    }

    /// Ends the browser session (the test's last step).
    async fn close(&self, client: Client) {
        client.close().await.unwrap();
        *self.session.lock().unwrap() = None;
    }

    /// `DELETE /session/{id}` on chromedriver, which quits that session's browser. Blocking,
    /// for `Drop` when the test did not get to [`Chromedriver::close`].
    fn delete_session(&self) {
        use std::io::{Read, Write};
        let Some(id) = self.session.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        self.delete_session();
        // Our own child, by its process id (std's Child::kill).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The server

/// The example app on 127.0.0.1:0 over a SQLite file in a temporary directory.
struct TestServer {
    base: String,
    manager: KeyManager,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite:{}", dir.path().join("keys.db").display());
        let manager = KeyManager::builder_arc(open_store(&db_url).await.unwrap())
            .serve("dev".parse().unwrap())
            .hash_params(HashParams::INSECURE_TEST_ONLY)
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, manager.clone(), async {
            let _ = rx.await;
        }));
        Self {
            base,
            manager,
            dir,
            stop: Some(tx),
        }
    }

    /// An admin key for `web-app`/`dev`, issued with the library (as the CLI does).
    async fn admin_key(&self) -> (String, String) {
        let issued = self
            .manager
            .issue(
                IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                    .name("bootstrap")
                    .scopes(["admin"])
                    .unwrap(),
            )
            .await
            .unwrap();
        (
            issued.key.expose_secret().to_owned(),
            issued.record.id.to_string(),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Waits up to 10 s for `css` to match.
async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css} within 10 s: {e}"))
}

/// Waits up to 10 s for `check` (a JavaScript expression) to be true.
async fn wait_js(c: &Client, check: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = c
            .execute(&format!("return Boolean({check});"), vec![])
            .await
            .unwrap();
        if v == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "not true within 10 s: {check}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn js_string(c: &Client, expr: &str) -> String {
    match c.execute(&format!("return {expr};"), vec![]).await.unwrap() {
        Value::String(s) => s,
        v => v.to_string(),
    }
}

/// Signs in at /login by pasting `key` into the form.
async fn sign_in(c: &Client, s: &TestServer, key: &str) {
    c.goto(&s.url("/login")).await.unwrap();
    find(c, "#key").await.send_keys(key).await.unwrap();
    find(c, "#sign-in").await.click().await.unwrap();
}

/// Where the key could still be, as text: the DOM, every field's value, both storages, the URL.
async fn everywhere(c: &Client) -> String {
    js_string(
        c,
        "[document.documentElement.outerHTML,
          Array.from(document.querySelectorAll('input, textarea, select'))
               .map(e => e.value).join('\\n'),
          JSON.stringify(Object.assign({}, localStorage)),
          JSON.stringify(Object.assign({}, sessionStorage)),
          location.href].join('\\n')",
    )
    .await
}

/// POSTs one event to the ingestion endpoint with `key`; returns the status.
async fn ingest(s: &TestServer, key: &str) -> u16 {
    reqwest::Client::new()
        .post(s.url(server::TRACES_BATCH))
        .bearer_auth(key)
        .json(&json!({"events": [{"type": "span", "name": "from-the-browser-test"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_takes_an_admin_key_once_and_a_revoked_key_ends_the_session() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let s = TestServer::start().await;
    let (admin, admin_id) = s.admin_key().await;
    let wd = Chromedriver::start(&driver, s.dir.path());
    let c = wd.session(&chromium).await;

    // A wrong key: the form again, with the reason and without the key.
    let wrong = format!("{}x", &admin[..admin.len() - 1]);
    sign_in(&c, &s, &wrong).await;
    let error = find(&c, "#login-error").await.text().await.unwrap();
    assert!(error.contains("not accepted"), "{error}");
    assert!(!everywhere(&c).await.contains(&wrong));

    // A key without the admin scope: refused too.
    let plain = s
        .manager
        .issue(
            IssueRequest::new("web-app".parse().unwrap(), "dev".parse().unwrap())
                .scopes(["read"])
                .unwrap(),
        )
        .await
        .unwrap();
    sign_in(&c, &s, plain.key.expose_secret()).await;
    let error = find(&c, "#login-error").await.text().await.unwrap();
    assert!(error.contains("admin"), "{error}");

    // The admin key: a session, then the API-keys page.
    sign_in(&c, &s, &admin).await;
    wait_js(&c, "location.pathname === '/settings/api-keys'").await;
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "keyward_session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert!(!session.value().contains(&admin[admin.len() - 8..]));
    assert_eq!(js_string(&c, "document.cookie").await, "", "HttpOnly");
    c.goto(&s.url("/login")).await.unwrap();
    let who = find(&c, "#signed-in").await.text().await.unwrap();
    assert!(who.contains(&admin_id), "{who}");
    assert!(!everywhere(&c).await.contains(&admin));

    // The admin key is revoked (by the CLI, say): the session stops working at once.
    s.manager.revoke(&admin_id.parse().unwrap()).await.unwrap();
    c.goto(&s.url("/login")).await.unwrap();
    find(&c, "#login-form").await;
    assert!(c.find(Locator::Css("#signed-in")).await.is_err());

    wd.close(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_uses_and_revokes_a_key_on_the_api_keys_page() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let s = TestServer::start().await;
    let (admin, _) = s.admin_key().await;
    let wd = Chromedriver::start(&driver, s.dir.path());
    let c = wd.session(&chromium).await;

    sign_in(&c, &s, &admin).await;
    wait_js(&c, "location.pathname === '/settings/api-keys'").await;
    find(&c, "#keys-table").await;

    // Create a key named "ingestion" with the write scope.
    find(&c, "#create-key").await.click().await.unwrap();
    find(&c, "#create-dialog").await;
    find(&c, "#key-name")
        .await
        .send_keys("ingestion")
        .await
        .unwrap();
    find(&c, "input[name=scope][value=write]")
        .await
        .click()
        .await
        .unwrap();
    find(&c, "#create-confirm").await.click().await.unwrap();

    // The key, shown once.
    wait_js(&c, "document.querySelector('#secret-value') && document.querySelector('#secret-value').value.length > 0").await;
    let key = find(&c, "#secret-value")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let parsed = keyward::ApiKey::parse(&key).expect("the page shows a whole key");
    let id = parsed.id().to_string();
    let secret = key.rsplit('_').next().unwrap();
    assert_eq!(ingest(&s, &key).await, 200, "the new key ingests");

    // Closed: the key is nowhere in the page any more.
    find(&c, "#close-secret").await.click().await.unwrap();
    wait_js(&c, "!document.querySelector('#secret-dialog') || !document.querySelector('#secret-dialog').open").await;
    let seen = everywhere(&c).await;
    assert!(
        !seen.contains(&key),
        "the key is still in the page after closing the dialog"
    );
    assert!(
        !seen.contains(secret),
        "the key's secret is still in the page"
    );

    // Its row, masked.
    let row = format!("tr[data-key-id='{id}']");
    let masked = find(&c, &format!("{row} .masked"))
        .await
        .text()
        .await
        .unwrap();
    assert!(masked.contains(&id), "{masked}");
    assert!(!masked.contains(secret), "{masked}");
    let name = find(&c, &format!("{row} .name"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(name.trim(), "ingestion");

    // A screenshot of the keys table, for the README.
    let png = find(&c, "#keys-table").await.screenshot().await.unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("api-keys.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot of the keys table: {}", out.display());

    // Revoke it: the row says so and the key is refused at once.
    find(&c, &format!("{row} .revoke"))
        .await
        .click()
        .await
        .unwrap();
    find(&c, "#confirm-dialog").await;
    find(&c, "#confirm-yes").await.click().await.unwrap();
    let status_cell = format!("{row} .status");
    wait_js(
        &c,
        &format!("(document.querySelector(\"{status_cell}\") || {{}}).textContent && document.querySelector(\"{status_cell}\").textContent.includes('Revoked')"),
    )
    .await;
    assert_eq!(ingest(&s, &key).await, 401, "a revoked key is refused");

    wd.close(c).await;
}
