//! The operator console and the PIN widget over HTTP: the session cookie,
//! CSRF, the headers every page sends, the 303s, actions through the API's
//! rules with their audit actor, one-use PIN sessions bound to an origin,
//! and CORS. (The same flows in a real browser: tests/browser/.)

use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE, X_FRAME_OPTIONS};
use reqwest::{redirect, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// A browser-like client that does not follow redirects.
fn browser() -> reqwest::Client {
    cardcore_webhooks::install_tls_provider();
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(LOCATION).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("cardcore_console="))
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find(r#"name="csrf_token" value=""#)
            .expect("a csrf_token field")
            + 25;
        self.text[at..at + 64].to_owned()
    }

    fn assert_secure_headers(&self) {
        let csp = self.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
        assert_eq!(self.headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(self.headers[CACHE_CONTROL], "no-store");
    }
}

struct Console<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Console<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: browser(),
            cookie: None,
        }
    }

    async fn send(&self, method: Method, path: &str, form: Option<&[(&str, &str)]>, headers: &[(&str, &str)]) -> Page {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.app.base, path))
            .header("accept", "text/html");
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let res = req.send().await.unwrap();
        Page {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form), &[]).await
    }

    /// Posts the sign-in form as a browser does: the form's CSRF token with
    /// its cookie.
    async fn login(&self, key: &str, headers: &[(&str, &str)]) -> Page {
        let form = self.get("/console/login").await;
        let cookie = form
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("cardcore_console_login="))
            .expect("the sign-in form's cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let csrf = form.text.split(r#"name="csrf_token" value=""#).nth(1).unwrap();
        let csrf = &csrf[..csrf.find('"').unwrap()];
        let mut all = vec![("cookie", cookie.split(';').next().unwrap())];
        all.extend_from_slice(headers);
        self.send(
            Method::POST,
            "/console/login",
            Some(&[("api_key", key), ("csrf_token", csrf)]),
            &all,
        )
        .await
    }

    /// Signs in with `key`; the cookie is kept.
    async fn sign_in(&mut self, key: &str) -> Page {
        let page = self.login(key, &[]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
        let cookie = page.cookie().expect("a session cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        page
    }
}

fn card_id(card: &Value) -> String {
    card["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_browser_is_sent_to_the_console_and_anything_else_gets_the_404_problem() {
    let app = spawn_app().await;
    let c = Console::new(&app);
    let page = c.get("/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console");
    let page = c.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console/login");
    page.assert_secure_headers();
    let login = c.get("/console/login").await;
    assert_eq!(login.status, StatusCode::OK);
    login.assert_secure_headers();
    assert!(login.text.contains(r#"<label for="api_key">"#));

    let api = app.get("/").await;
    assert_eq!((api.status.as_u16(), api.code()), (404, "route_not_found"));
}

#[tokio::test]
async fn sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let mut c = Console::new(&app);

    // Without the sign-in form's token (another site posting the form): 403.
    let forged = c.post("/console/login", &[("api_key", &app.key)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie().is_none());
    assert!(forged.text.contains("csrf_token_invalid"));

    let wrong = c.login("cc_not-a-real-key", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie().is_none());
    assert!(wrong.text.contains("not valid"));
    assert!(!wrong.text.contains("cc_not-a-real-key"), "the key is not echoed");
    wrong.assert_secure_headers();

    let ok = c.sign_in(&app.key).await;
    assert_eq!(ok.location(), "/console");
    let cookie = ok.cookie().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie} has {attr}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure");
    let tls = c.login(&app.key, &[("x-forwarded-proto", "https")]).await;
    assert!(tls.cookie().unwrap().contains("; Secure"), "behind TLS: Secure");

    let home = c.get("/console").await;
    assert_eq!(home.status, StatusCode::OK);
    home.assert_secure_headers();
    assert!(home.text.contains("tenant-a"));
    let csrf = home.csrf();

    // Sign-out needs the form's token, then ends the session server side:
    // the old cookie no longer signs anyone in.
    let forged = c.post("/console/logout", &[("csrf_token", "0")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/console").await.status, StatusCode::OK);
    let out = c.post("/console/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookie().unwrap().contains("Max-Age=0"));
    let after = c.get("/console").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/console/login");
}

#[tokio::test]
async fn a_revoked_key_ends_its_console_sessions() {
    let app = spawn_app().await;
    let tenant = app.tenant_id.parse().unwrap();
    let key = app
        .service()
        .create_api_key(tenant, Some("support"), false)
        .await
        .unwrap();
    let mut c = Console::new(&app);
    c.sign_in(&key.secret).await;
    assert_eq!(c.get("/console").await.status, StatusCode::OK);
    app.service().revoke_api_key(tenant, key.id).await.unwrap();
    assert_eq!(c.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_address_like_any_failed_authentication() {
    let app = spawn_app_with(&["--auth-failures-per-minute", "1", "--auth-failures-burst", "2"]).await;
    let c = Console::new(&app);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.login("cc_wrong", &[]).await.status.as_u16());
    }
    assert_eq!(&statuses[..2], &[401, 401], "{statuses:?}");
    let limited = c.login(&app.key, &[]).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    assert!(limited.headers.contains_key("retry-after"));
    limited.assert_secure_headers();
    assert!(limited.cookie().is_none());
}

#[tokio::test]
async fn a_lock_needs_the_csrf_token_and_a_confirmation_and_is_audited_as_the_console() {
    let app = spawn_app().await;
    let card = app.active_card("virtual").await;
    let id = card_id(&card);
    let mut c = Console::new(&app);
    c.sign_in(&app.key).await;
    let page = c.get(&format!("/console/cards/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_secure_headers();
    let csrf = page.csrf();
    let lock = format!("/console/cards/{id}/lock");

    let forged = c.post(&lock, &[("confirm", "yes")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.text.contains("csrf_token_invalid"));
    let other = c
        .post(&lock, &[("confirm", "yes"), ("csrf_token", &"0".repeat(64))])
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "ACTIVE");

    let ask = c
        .post(&lock, &[("csrf_token", &csrf), ("reason_code", "CUST_REQ")])
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text.contains("Lock this card?"));
    assert!(ask.text.contains(r#"name="confirm" value="yes""#));
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "ACTIVE");

    let done = c
        .post(
            &lock,
            &[("csrf_token", &csrf), ("reason_code", "CUST_REQ"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), format!("/console/cards/{id}?done=lock"));
    let now = app.get(&format!("/v1/cards/{id}")).await.ok();
    assert_eq!(now["status"], "LOCKED");
    assert_eq!(now["status_reason"]["code"], "CUST_REQ");

    let audit = app.audit(&id).await;
    let entry = &audit[0];
    assert_eq!(entry["type"], "card.lock");
    assert_eq!(entry["actor"]["type"], "console");
    assert_eq!(entry["actor"]["channel"], "console");
    assert!(entry["actor"]["api_key_id"].is_string());

    let page = c.get(done.location()).await;
    assert!(page.text.contains("Card locked."));
    assert!(page.text.contains("Spend (EUR"), "spend this day and month");
    assert!(page.text.contains("Spending controls"));
    assert!(page.text.contains("card.lock"));
    assert!(page.text.contains("console"));
}

#[tokio::test]
async fn a_refused_action_shows_the_apis_stable_code_and_changes_nothing() {
    let app = spawn_app().await;
    let id = card_id(&app.active_card("virtual").await);
    app.post(&format!("/v1/cards/{id}/close"), json!({})).await.ok();
    let mut c = Console::new(&app);
    c.sign_in(&app.key).await;
    let csrf = c.get(&format!("/console/cards/{id}")).await.csrf();
    let page = c
        .post(
            &format!("/console/cards/{id}/unlock"),
            &[("csrf_token", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.text.contains("invalid_status_transition"), "{}", page.text);
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["status"], "CLOSED");

    let block = c
        .post(
            &format!("/console/cards/{id}/block"),
            &[("csrf_token", &csrf), ("confirm", "yes")],
        )
        .await;
    assert!(block.status.is_client_error());

    let missing = c.get(&format!("/console/cards/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_console_action_goes_through_the_service() {
    let app = spawn_app().await;
    let physical = card_id(&app.card("physical").await);
    let first_code = app.activation_code(&physical).await;
    let mut c = Console::new(&app);
    c.sign_in(&app.key).await;
    let csrf = c.get("/console").await.csrf();
    let act = |id: String, action: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let c = &c;
        let csrf = csrf.clone();
        async move {
            let mut form = vec![("csrf_token", csrf.as_str()), ("confirm", "yes")];
            form.extend(extra);
            c.post(&format!("/console/cards/{id}/{action}"), &form).await
        }
    };

    let resent = act(physical.clone(), "resend-activation", vec![]).await;
    assert_eq!(resent.status, StatusCode::SEE_OTHER, "{}", resent.text);
    let second_code = app.activation_code(&physical).await;
    assert_ne!(first_code, second_code);
    app.post(
        &format!("/v1/cards/{physical}/activate"),
        json!({"activation_code": first_code}),
    )
    .await
    .expect(422, "activation_code_invalid");
    app.post(
        &format!("/v1/cards/{physical}/activate"),
        json!({"activation_code": second_code}),
    )
    .await
    .ok();
    let again = act(physical.clone(), "resend-activation", vec![]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.text.contains("card_not_inactive"));

    let id = card_id(&app.active_card("virtual").await);
    app.set_pin(&id, "4821").await;
    for _ in 0..3 {
        app.verify(&id, "1111").await;
    }
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"], "BLOCKED");
    assert_eq!(
        act(id.clone(), "pin-unblock", vec![]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.get(&format!("/v1/cards/{id}")).await.ok()["pin_status"], "SET");

    let blocked = act(
        id.clone(),
        "block",
        vec![
            ("reason_code", "FRAUD_SUSPECTED"),
            ("reason_message", "<b>odd</b> spend"),
        ],
    )
    .await;
    assert_eq!(blocked.status, StatusCode::SEE_OTHER);
    let page = c.get(&format!("/console/cards/{id}")).await;
    assert!(page.text.contains("FRAUD_SUSPECTED"));
    assert!(page.text.contains("&lt;b&gt;odd&lt;/b&gt; spend"), "escaped");
    assert!(!page.text.contains("<b>odd</b>"));

    let replaced = act(id.clone(), "replace", vec![("reason", "stolen")]).await;
    assert_eq!(replaced.status, StatusCode::SEE_OTHER);
    let new_id = replaced
        .location()
        .trim_start_matches("/console/cards/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, id);
    assert_eq!(
        app.get(&format!("/v1/cards/{new_id}")).await.ok()["replacement_for"],
        id.as_str()
    );
    assert_eq!(act(new_id.clone(), "close", vec![]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.get(&format!("/v1/cards/{new_id}")).await.ok()["status"], "CLOSED");
    for entry in app.audit(&new_id).await.iter().chain(app.audit(&id).await.iter()) {
        if entry["type"] != "card.created" && entry["actor"]["channel"] != "native" {
            assert_eq!(entry["actor"]["type"], "console", "{entry}");
        }
    }
}

#[tokio::test]
async fn reveal_needs_can_reveal_and_a_confirmation_and_is_audited_and_never_cached() {
    let app = spawn_app().await;
    let id = card_id(&app.active_card("virtual").await);
    let tenant = app.tenant_id.parse().unwrap();
    let support = app
        .service()
        .create_api_key(tenant, Some("support"), false)
        .await
        .unwrap();

    let mut c = Console::new(&app);
    c.sign_in(&support.secret).await;
    let page = c.get(&format!("/console/cards/{id}")).await;
    assert!(!page.text.contains("/reveal"), "no reveal button without can_reveal");
    let csrf = page.csrf();
    let refused = c
        .post(
            &format!("/console/cards/{id}/reveal"),
            &[("csrf_token", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("forbidden"));

    let mut admin = Console::new(&app);
    admin.sign_in(&app.key).await;
    let page = admin.get(&format!("/console/cards/{id}")).await;
    assert!(page.text.contains("/reveal"));
    let csrf = page.csrf();
    let ask = admin
        .post(&format!("/console/cards/{id}/reveal"), &[("csrf_token", &csrf)])
        .await;
    assert!(ask.text.contains("Reveal the PAN and CVV?"));
    let sensitive = app.get(&format!("/v1/cards/{id}/sensitive")).await.ok();
    let pan = sensitive["pan"].as_str().unwrap();
    assert!(!ask.text.contains(pan));
    let shown = admin
        .post(
            &format!("/console/cards/{id}/reveal"),
            &[("csrf_token", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    shown.assert_secure_headers();
    let grouped: Vec<String> = pan
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(shown.text.contains(&grouped.join(" ")));
    let revealed: Vec<Value> = app
        .audit(&id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "card.sensitive_revealed")
        .collect();
    assert!(revealed.iter().any(|e| e["actor"]["type"] == "console"));
}

#[tokio::test]
async fn search_finds_a_card_by_id_kit_last_four_and_expiry_external_id_and_phone() {
    let app = spawn_app().await;
    let holder = app.create_cardholder("ext-console-1").await;
    let card = app
        .create_card_as(&app.key.clone(), holder["id"].as_str().unwrap(), "virtual")
        .await;
    let other = app.active_card("virtual").await;
    let id = card_id(&card);
    let mut c = Console::new(&app);
    c.sign_in(&app.key).await;
    let last4_expiry = format!(
        "{} {}",
        card["last_four"].as_str().unwrap(),
        card["expiry"].as_str().unwrap()
    );
    for q in [
        id.clone(),
        card["kit_number"].as_str().unwrap().to_owned(),
        last4_expiry,
        "ext-console-1".to_owned(),
    ] {
        let page = c
            .get(&format!(
                "/console/cards?q={}",
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{q}");
        assert!(page.text.contains(&id), "{q} finds the card");
        if q != card["last_four"].as_str().unwrap() {
            assert!(
                !page.text.contains(other["id"].as_str().unwrap()) || q.contains(' '),
                "{q}"
            );
        }
    }
    // Every test cardholder has the same phone: the search finds them all.
    let page = c.get("/console/cards?q=%2B91+9600389470").await;
    assert!(page.text.contains(&id) && page.text.contains(other["id"].as_str().unwrap()));
    let nothing = c.get("/console/cards?q=%3Cscript%3E").await;
    assert_eq!(nothing.status, StatusCode::OK);
    assert!(nothing.text.contains("&lt;script&gt;") && !nothing.text.contains("<script>"));
    let bad = c.get("/console/cards?q=4242+13%2F99").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("validation_error"));

    // Another tenant's card is not found.
    let b = app.new_tenant("tenant-b").await;
    let mut cb = Console::new(&app);
    cb.sign_in(&b).await;
    assert!(!cb
        .get(&format!("/console/cards?q={id}"))
        .await
        .text
        .contains(&format!("/console/cards/{id}")));
    assert_eq!(
        cb.get(&format!("/console/cards/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_webhooks_page_adds_lists_removes_and_redelivers() {
    let app = spawn_app().await;
    let mut c = Console::new(&app);
    c.sign_in(&app.key).await;
    let page = c.get("/console/webhooks").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let refused = c
        .post(
            "/console/webhooks",
            &[("csrf_token", &csrf), ("url", "https://10.1.2.3/hook")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    let added = c
        .post(
            "/console/webhooks",
            &[
                ("csrf_token", &csrf),
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "card.status_changed"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert!(added.text.contains("whsec_"), "the secret, once");
    added.assert_secure_headers();
    let endpoints = app.get("/v1/webhook-endpoints").await.ok();
    let endpoint = endpoints["data"][0]["id"].as_str().unwrap().to_owned();
    let listed = c.get("/console/webhooks").await;
    assert!(listed.text.contains("http://127.0.0.1:9/hook"));
    assert!(!listed.text.contains("whsec_"));

    let id = card_id(&app.active_card("virtual").await);
    app.post(&format!("/v1/cards/{id}/lock"), json!({})).await.ok();
    let event = app
        .all_events_as(&app.key)
        .await
        .into_iter()
        .rev()
        .find(|e| e["type"] == "card.status_changed")
        .unwrap();
    let event_id = event["id"].as_str().unwrap();
    let redelivered = c
        .post(
            &format!("/console/events/{event_id}/redeliver"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(redelivered.status, StatusCode::OK, "{}", redelivered.text);
    assert!(redelivered.text.contains("Queued for redelivery"));

    let ask = c
        .post(
            &format!("/console/webhooks/{endpoint}/remove"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text.contains("Remove this endpoint?"));
    let removed = c
        .post(
            &format!("/console/webhooks/{endpoint}/remove"),
            &[("csrf_token", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert_eq!(app.get("/v1/webhook-endpoints").await.ok()["data"], json!([]));
}

// ---- PIN widget ------------------------------------------------------------

const ORIGIN: &str = "http://localhost:4000";

async fn pin_session(app: &TestApp, card: &str, purpose: &str) -> String {
    let r = app
        .post(
            &format!("/v1/cards/{card}/pin-sessions"),
            json!({"purpose": purpose, "allowed_origin": ORIGIN}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.body["expires_at"].is_string());
    r.body["session_token"].as_str().unwrap().to_owned()
}

async fn encrypted(app: &TestApp, pin: &str) -> String {
    let key = app.get("/v1/pin-encryption-key").await.ok();
    cardcore_crypto::transport::encrypt_with_public_pem(key["public_key_pem"].as_str().unwrap(), pin.as_bytes())
        .unwrap()
}

async fn widget_post(app: &TestApp, origin: Option<&str>, body: Value) -> (StatusCode, HeaderMap, Value) {
    let mut req = browser().post(format!("{}/widget/pin", app.base)).json(&body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_pin_session_is_one_use_bound_to_its_origin_and_sets_a_pin_the_api_verifies() {
    let app = spawn_app().await;
    let id = card_id(&app.active_card("virtual").await);
    for bad in ["http://evil.example", "https://a.example/path", "*", ""] {
        app.post(
            &format!("/v1/cards/{id}/pin-sessions"),
            json!({"purpose": "set", "allowed_origin": bad}),
        )
        .await
        .expect(422, "validation_error");
    }
    app.post(
        &format!("/v1/cards/{id}/pin-sessions"),
        json!({"purpose": "reset", "allowed_origin": ORIGIN}),
    )
    .await
    .expect(422, "validation_error");
    app.post(
        &format!("/v1/cards/{}/pin-sessions", uuid::Uuid::new_v4()),
        json!({"purpose": "set", "allowed_origin": ORIGIN}),
    )
    .await
    .expect(404, "card_not_found");

    let token = pin_session(&app, &id, "set").await;
    let page = browser()
        .get(format!("{}/widget/pin?session={token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("frame-ancestors {ORIGIN}")), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let text = page.text().await.unwrap();
    assert!(text.contains(r#"src="/widget/pin.js""#) && !text.contains("<script>"));

    // A weak PIN is refused and gives the session back.
    let (status, _, out) = widget_post(
        &app,
        Some(ORIGIN),
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "1234").await}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["ok"], false);
    assert!(out["code"].is_string());
    assert_eq!(out["session_open"], true, "a weak PIN gives the session back");

    // Another origin is refused before anything is spent.
    let (status, headers, out) = widget_post(
        &app,
        Some("http://evil.localhost:4000"),
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "4821").await}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(out["code"], "origin_not_allowed");
    assert!(!headers.contains_key("access-control-allow-origin"));

    let (status, headers, out) = widget_post(
        &app,
        Some(ORIGIN),
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "4821").await, "key_id": "rsa-oaep-v1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out, json!({"ok": true, "pin_status": "SET"}));
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
    let set = app
        .audit(&id)
        .await
        .into_iter()
        .find(|e| e["type"] == "card.pin_set")
        .unwrap();
    assert_eq!(set["actor"]["channel"], "widget");

    // One use.
    let (status, _, out) = widget_post(
        &app,
        Some(ORIGIN),
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "5937").await}),
    )
    .await;
    assert_eq!(
        (status, out["code"].as_str()),
        (StatusCode::GONE, Some("pin_session_gone"))
    );
    let again = browser()
        .get(format!("{}/widget/pin?session={token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::GONE);
    assert_eq!(app.verify(&id, "4821").await.ok()["valid"], true);
}

#[tokio::test]
async fn the_widget_verifies_with_the_try_counter_and_changes_with_an_otp() {
    let app = spawn_app().await;
    let id = card_id(&app.active_card("virtual").await);
    app.set_pin(&id, "4821").await;

    let token = pin_session(&app, &id, "verify").await;
    let (status, _, out) = widget_post(
        &app,
        None,
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "1111").await}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["ok"], false);
    assert_eq!(out["code"], "pin_incorrect");
    assert_eq!(out["remaining_attempts"], 2);
    let token = pin_session(&app, &id, "verify").await;
    let (_, _, out) = widget_post(
        &app,
        None,
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "4821").await}),
    )
    .await;
    assert_eq!(out, json!({"ok": true, "pin_status": "SET"}));

    let token = pin_session(&app, &id, "change").await;
    let (status, _, _) = widget_post(
        &app,
        Some(ORIGIN),
        json!({"session_token": token, "encrypted_pin": encrypted(&app, "4821").await}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "change needs the new PIN and an OTP"
    );
    let (trace, code) = app.otp(&id).await;
    let (status, _, out) = widget_post(
        &app,
        Some(ORIGIN),
        json!({
            "session_token": token,
            "encrypted_pin": encrypted(&app, "4821").await,
            "encrypted_new_pin": encrypted(&app, "5937").await,
            "otp": code,
            "trace_number": trace,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ok"], true);
    assert_eq!(app.verify(&id, "5937").await.ok()["valid"], true);
}

#[tokio::test]
async fn the_widget_preflight_and_assets() {
    let app = spawn_app().await;
    let res = browser()
        .request(Method::OPTIONS, format!("{}/widget/pin", app.base))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
    let res = browser()
        .request(Method::OPTIONS, format!("{}/widget/pin", app.base))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let js = browser()
        .get(format!("{}/widget/pin.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("RSA-OAEP"));
    let gone = browser()
        .get(format!("{}/widget/pin?session=nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::GONE);
}
