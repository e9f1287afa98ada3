//! The console's pages. Every value is escaped with [`esc`]; markup comes
//! only from the literals here.

use std::collections::HashMap;
use std::fmt::Write as _;

use cardcore_domain::{AuditEntry, Card, Cardholder, Timestamp};
use cardcore_service::cards::SensitiveData;
use cardcore_service::console::{ConsoleUser, EventDeliveries};
use cardcore_service::events::AuditEntries;
use cardcore_service::webhooks::WebhookEndpoint;
use cardcore_store::DeliveryState;

use super::html::{esc, hidden, query};
use crate::problem::Problem;

/// Audit entries a page.
pub const AUDIT_PAGE: u32 = 20;

/// A message above a page.
pub enum Notice {
    Ok(String),
    Err(Problem),
    /// A new webhook endpoint's secret, shown once.
    Secret {
        url: String,
        secret: String,
    },
}

fn when(t: &Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The page around `main` (already markup).
pub fn shell(user: Option<&ConsoleUser>, title: &str, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 2048);
    let _ = write!(
        out,
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{} · cardcore console</title>
<link rel="stylesheet" href="/console/assets/console.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top"><div class="inner"><a class="logo" href="/console">cardcore</a>"##,
        esc(title)
    );
    if let Some(u) = user {
        let _ = write!(
            out,
            r#"<nav aria-label="Console"><a href="/console">Cards</a><a href="/console/webhooks">Webhooks</a></nav>
<span class="who">{} · key {}</span>
<form method="post" action="/console/logout">{}<button type="submit" class="secondary">Sign out</button></form>"#,
            esc(&u.principal.tenant.name),
            esc(&u.principal.api_key_id.map(|k| k.to_string()).unwrap_or_default()),
            hidden("csrf_token", &u.csrf_token),
        );
    }
    let _ = write!(out, r#"</div></header><main id="main">{main}</main></body></html>"#);
    out
}

/// A page with one message.
pub fn message_page(title: &str, message: &str) -> String {
    shell(
        None,
        title,
        &format!(
            r#"<div class="panel login"><h1>{}</h1><p>{}</p><p><a href="/console">Back to the console</a></p></div>"#,
            esc(title),
            esc(message)
        ),
    )
}

/// The sign-in form.
pub fn login(error: Option<&str>, csrf: &str) -> String {
    let mut m = String::from(r#"<div class="panel login"><h1>Sign in</h1>"#);
    if let Some(e) = error {
        let _ = write!(m, r#"<div class="notice err" role="alert">{}</div>"#, esc(e));
    }
    let _ = write!(
        m,
        r#"<form method="post" action="/console/login">{}"#,
        hidden("csrf_token", csrf)
    );
    m.push_str(
        r#"
<div class="field"><label for="api_key">Tenant API key</label>
<input type="password" id="api_key" name="api_key" autocomplete="off" required spellcheck="false" style="width:100%"></div>
<button type="submit">Sign in</button>
</form>
<p class="muted">Use a key from <span class="mono">cardcore tenant create</span> or <span class="mono">cardcore tenant key create</span>. The session lasts 8 hours.</p></div>"#,
    );
    shell(None, "Sign in", &m)
}

fn search_form(q: &str) -> String {
    format!(
        r#"<form class="search" method="get" action="/console/cards" role="search">
<label for="q" class="skip">Search</label>
<input type="search" id="q" name="q" value="{}" placeholder="Card id, kit number, 4242 12/29, external id or phone" aria-label="Search cards" required>
<button type="submit">Search</button></form>"#,
        esc(q)
    )
}

/// The search page.
pub fn home(user: &ConsoleUser, q: &str) -> String {
    let m = format!(
        r#"<h1>Find a card</h1><div class="panel">{}<p class="muted">By card id, kit number, last four digits with the expiry (<span class="mono">4242 12/29</span>), cardholder external id or phone.</p></div>"#,
        search_form(q)
    );
    shell(Some(user), "Cards", &m)
}

fn badge(s: &str) -> String {
    format!(r#"<span class="badge s-{}">{}</span>"#, esc(s), esc(s))
}

/// Search results.
pub fn results(user: &ConsoleUser, q: &str, cards: &[Card], error: Option<&Problem>) -> String {
    let mut m = format!(r#"<h1>Cards</h1><div class="panel">{}</div>"#, search_form(q));
    if let Some(p) = error {
        let _ = write!(m, "{}", problem_notice(p));
    }
    m.push_str(r#"<div class="panel">"#);
    if cards.is_empty() {
        let _ = write!(m, "<p>No card matches <strong>{}</strong>.</p>", esc(q));
    } else {
        let _ = write!(
            m,
            r#"<h2>{} found</h2><div class="scroll" tabindex="0" role="region" aria-label="Cards found (scrolls sideways)"><table><thead><tr><th scope="col">Card</th><th scope="col">Status</th><th scope="col">Expiry</th><th scope="col" class="hide-sm">Kit</th><th scope="col" class="hide-sm">Type</th></tr></thead><tbody>"#,
            cards.len()
        );
        for c in cards {
            let _ = write!(
                m,
                r#"<tr><td><a href="/console/cards/{id}">{brand} •••• {last4}</a><div class="muted mono">{id}</div></td><td>{status}</td><td>{exp}</td><td class="hide-sm mono">{kit}</td><td class="hide-sm">{ty}</td></tr>"#,
                id = c.id,
                brand = esc(&format!("{:?}", c.brand)),
                last4 = esc(&c.last_four),
                status = badge(c.status.as_str()),
                exp = esc(&format!("{:02}/{:02}", c.expiry.month(), c.expiry.year() % 100)),
                kit = esc(c.kit_number.as_str()),
                ty = esc(&format!("{:?}", c.card_type).to_lowercase()),
            );
        }
        m.push_str("</tbody></table></div>");
    }
    m.push_str("</div>");
    shell(Some(user), "Cards", &m)
}

fn problem_notice(p: &Problem) -> String {
    let mut s = format!(
        r#"<div class="notice err" role="alert"><strong>Refused</strong> (code <code>{}</code>): {}"#,
        esc(&p.code),
        esc(&p.detail)
    );
    for e in &p.errors {
        let _ = write!(
            s,
            "<br><span class=\"mono\">{}</span>: {}",
            esc(&e.field),
            esc(&e.message)
        );
    }
    s.push_str("</div>");
    s
}

fn notice_html(n: &Notice) -> String {
    match n {
        Notice::Ok(msg) => format!(r#"<div class="notice ok" role="status">{}</div>"#, esc(msg)),
        Notice::Err(p) => problem_notice(p),
        Notice::Secret { url, secret } => format!(
            r#"<div class="notice ok" role="status">Endpoint <span class="mono">{}</span> added. Its signing secret, shown only this once:<div class="secret">{}</div></div>"#,
            esc(url),
            esc(secret)
        ),
    }
}

/// The message for `?done=<action>`.
pub fn done_message(action: &str) -> Option<String> {
    Some(
        match action {
            "lock" => "Card locked.",
            "unlock" => "Card unlocked.",
            "block" => "Card blocked.",
            "close" => "Card closed.",
            "replace" => "This is the replacement card.",
            "pin-unblock" => "PIN unblocked: the cardholder can try again.",
            "resend-activation" => "A new activation code was sent (event card.activation_code).",
            _ => return None,
        }
        .to_owned(),
    )
}

/// What the card page shows.
pub struct CardView<'a> {
    pub card: &'a Card,
    pub spend: Option<&'a cardcore_service::authorizations::CardSpend>,
    pub controls: Option<&'a cardcore_service::authorizations::EffectiveControls>,
    pub holder: Option<&'a Cardholder>,
    pub tries_left: u32,
    pub max_tries: u32,
    pub audit: &'a AuditEntries,
    pub before: Option<cardcore_domain::AuditId>,
    pub events: &'a [EventDeliveries],
    pub can_reveal: bool,
    pub notice: Option<Notice>,
}

fn amount(v: Option<u64>, currency: &str) -> String {
    match v {
        Some(minor) => format!("{}.{:02} {}", minor / 100, minor % 100, currency),
        None => "no limit".into(),
    }
}

fn actor(e: &AuditEntry) -> String {
    let kind = serde_json::to_value(e.actor.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let channel = serde_json::to_value(&e.actor.channel)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    match e.actor.api_key_id {
        Some(k) => format!(
            r#"{} <span class="muted">via {}</span><div class="mono muted">key {}</div>"#,
            esc(&kind),
            esc(&channel),
            k
        ),
        None => format!(r#"{} <span class="muted">via {}</span>"#, esc(&kind), esc(&channel)),
    }
}

fn action_form(user: &ConsoleUser, card: &Card, action: &str, label: &str, class: &str, extra: &str) -> String {
    format!(
        r#"<form method="post" action="/console/cards/{}/{}">{}{}<button type="submit" class="{}">{}</button></form>"#,
        card.id,
        action,
        hidden("csrf_token", &user.csrf_token),
        extra,
        class,
        esc(label)
    )
}

const REASONS: [&str; 9] = [
    "CUST_REQ",
    "FRAUD_SUSPECTED",
    "FRAUD_CONFIRMED",
    "LOST_CARD",
    "STOLEN_CARD",
    "DAMAGED_CARD",
    "CARD_CLOSURE",
    "PIN_TRIES_EXCEEDED",
    "EXPIRED",
];

fn reason_fields(card: &Card, action: &str) -> String {
    let id = format!("{}-{}", action, card.id.as_uuid().simple());
    let mut s = format!(
        r#"<div><label for="rc-{id}">Reason code</label><select id="rc-{id}" name="reason_code"><option value="">(none)</option>"#
    );
    for r in REASONS {
        let _ = write!(s, r#"<option value="{r}">{r}</option>"#);
    }
    let _ = write!(
        s,
        r#"</select></div><div><label for="rm-{id}">Message</label><input type="text" id="rm-{id}" name="reason_message" maxlength="200"></div>"#
    );
    s
}

/// The card page.
pub fn card(user: &ConsoleUser, v: &CardView<'_>) -> String {
    let c = v.card;
    let mut m = String::with_capacity(16 * 1024);
    if let Some(n) = &v.notice {
        m.push_str(&notice_html(n));
    }
    let name = c.card_name.clone().unwrap_or_else(|| format!("{:?} card", c.card_type));
    let _ = write!(
        m,
        r#"<div class="cardhead"><div class="cardart" aria-hidden="true"><span>{brand}</span><span class="num">•••• •••• •••• {last4}</span><span>{exp}</span></div>
<div><h1>{name} <span class="muted">•••• {last4}</span></h1><p>{status} PIN {pin}</p></div></div>"#,
        brand = esc(&format!("{:?}", c.brand)),
        last4 = esc(&c.last_four),
        exp = esc(&format!("{:02}/{:02}", c.expiry.month(), c.expiry.year() % 100)),
        name = esc(&name),
        status = badge(c.status.as_str()),
        pin = badge(c.pin_status.as_str()),
    );

    // Facts.
    m.push_str(r#"<div class="grid"><section class="panel" aria-labelledby="h-status"><h2 id="h-status">Status</h2><dl class="facts">"#);
    let _ = write!(m, "<dt>Status</dt><dd>{}</dd>", badge(c.status.as_str()));
    match &c.status_reason {
        Some(r) => {
            let _ = write!(
                m,
                r#"<dt>Reason</dt><dd><span class="mono">{}</span>{}</dd>"#,
                esc(r.code.as_str()),
                r.message
                    .as_deref()
                    .map(|msg| format!(" — {}", esc(msg)))
                    .unwrap_or_default()
            );
        }
        None => m.push_str("<dt>Reason</dt><dd class=\"muted\">none</dd>"),
    }
    let _ = write!(m, "<dt>PIN</dt><dd>{}</dd>", badge(c.pin_status.as_str()));
    let tries = match c.pin_status.as_str() {
        "SET" => format!("{} of {}", v.tries_left, v.max_tries),
        "BLOCKED" => "0 (blocked)".into(),
        _ => "—".into(),
    };
    let _ = write!(m, "<dt>PIN tries left</dt><dd>{}</dd>", esc(&tries));
    let _ = write!(
        m,
        r#"<dt>Card id</dt><dd class="mono">{}</dd><dt>Kit number</dt><dd class="mono">{}</dd><dt>Type</dt><dd>{}</dd><dt>Expiry</dt><dd>{:02}/{}</dd><dt>Created</dt><dd>{}</dd>"#,
        c.id,
        esc(c.kit_number.as_str()),
        esc(&format!("{:?}", c.card_type).to_lowercase()),
        c.expiry.month(),
        c.expiry.year(),
        esc(&when(&c.created_at)),
    );
    if let Some(prev) = c.replacement_for {
        let _ = write!(
            m,
            r#"<dt>Replaces</dt><dd><a class="mono" href="/console/cards/{prev}">{prev}</a></dd>"#
        );
    }
    m.push_str("</dl></section>");

    m.push_str(
        r#"<section class="panel" aria-labelledby="h-holder"><h2 id="h-holder">Cardholder</h2><dl class="facts">"#,
    );
    match v.holder {
        Some(h) => {
            let _ = write!(
                m,
                r#"<dt>Name</dt><dd>{}</dd><dt>External id</dt><dd class="mono">{}</dd><dt>Phone</dt><dd>+{} {}</dd><dt>Id</dt><dd class="mono">{}</dd>"#,
                esc(&h.name),
                esc(h.external_id.as_str()),
                esc(&h.phone.country_code),
                esc(&h.phone.number),
                h.id
            );
        }
        None => {
            let _ = write!(m, r#"<dt>Id</dt><dd class="mono">{}</dd>"#, c.cardholder_id);
        }
    }
    m.push_str("</dl></section></div>");

    // Limits.
    let _ = write!(
        m,
        r#"<section class="panel" aria-labelledby="h-limits"><h2 id="h-limits">Limits ({})</h2><div class="scroll" tabindex="0" role="region" aria-label="Limits (scrolls sideways)"><table><thead><tr><th scope="col">Channel</th><th scope="col">Enabled</th><th scope="col">Per transaction</th><th scope="col">Daily</th></tr></thead><tbody>"#,
        esc(&c.limits.currency)
    );
    for (channel, l) in c.limits.channels.named() {
        let _ = write!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(channel),
            if l.enabled { "yes" } else { "no" },
            esc(&amount(l.per_transaction, &c.limits.currency)),
            esc(&amount(l.daily, &c.limits.currency)),
        );
    }
    m.push_str("</tbody></table></div></section>");

    // Spend and controls.
    if let Some(spend) = v.spend {
        let _ = write!(
            m,
            r#"<section class="panel" aria-labelledby="h-spend"><h2 id="h-spend">Spend ({}, {})</h2><div class="scroll" tabindex="0" role="region" aria-label="Spend (scrolls sideways)"><table><thead><tr><th scope="col">Channel</th><th scope="col">Today</th><th scope="col">This month</th><th scope="col">Count today</th></tr></thead><tbody>"#,
            esc(&spend.currency),
            esc(&spend.time_zone)
        );
        for (channel, c) in &spend.channels {
            let window = |w: &cardcore_service::authorizations::WindowSpend| match w.limit {
                Some(l) => format!(
                    "{} of {}",
                    amount(Some(w.used), &spend.currency),
                    amount(Some(l), &spend.currency)
                ),
                None => amount(Some(w.used), &spend.currency),
            };
            let _ = write!(
                m,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(channel),
                esc(&window(&c.daily)),
                esc(&window(&c.monthly)),
                c.daily.count,
                c.daily_count_limit.map(|l| format!(" of {l}")).unwrap_or_default(),
            );
        }
        m.push_str("</tbody></table></div>");
        if let Some(controls) = v.controls {
            let json = serde_json::to_string_pretty(&controls.controls).unwrap_or_default();
            let _ = write!(
                m,
                r#"<details><summary>Spending controls ({})</summary><pre class="mono">{}</pre></details>"#,
                esc(controls.source),
                esc(&json)
            );
        }
        m.push_str("</section>");
    }

    // Actions.
    m.push_str(r#"<section class="panel" aria-labelledby="h-actions"><h2 id="h-actions">Actions</h2><p class="muted">Each action asks for confirmation first, and follows the API's rules.</p><div class="actions">"#);
    m.push_str(&action_form(user, c, "lock", "Lock", "", ""));
    m.push_str(&action_form(user, c, "unlock", "Unlock", "secondary", ""));
    m.push_str(&action_form(user, c, "pin-unblock", "Unblock PIN", "secondary", ""));
    m.push_str(&action_form(
        user,
        c,
        "resend-activation",
        "Resend activation code",
        "secondary",
        "",
    ));
    if v.can_reveal {
        m.push_str(&action_form(user, c, "reveal", "Reveal PAN and CVV", "secondary", ""));
    }
    m.push_str("</div><div class=\"actions\" style=\"margin-top:1rem\">");
    m.push_str(&action_form(
        user,
        c,
        "block",
        "Block",
        "danger",
        &reason_fields(c, "block"),
    ));
    let rid = format!("rr-{}", c.id.as_uuid().simple());
    let replace_fields = format!(
        r#"<div><label for="{rid}">Replacement reason</label><select id="{rid}" name="reason"><option value="lost">lost</option><option value="stolen">stolen</option><option value="damaged">damaged</option><option value="expired">expired</option></select></div>"#
    );
    m.push_str(&action_form(
        user,
        c,
        "replace",
        "Replace",
        "secondary",
        &replace_fields,
    ));
    m.push_str(&action_form(user, c, "close", "Close", "danger", ""));
    m.push_str("</div></section>");

    // Audit trail.
    m.push_str(r#"<section class="panel" aria-labelledby="h-audit"><h2 id="h-audit">Audit trail</h2><div class="scroll" tabindex="0" role="region" aria-label="Audit trail (scrolls sideways)"><table><thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">Who</th><th scope="col">Why</th><th scope="col" class="hide-sm">Request</th></tr></thead><tbody>"#);
    for e in &v.audit.data {
        let why = match &e.reason {
            Some(r) => format!(
                r#"<span class="mono">{}</span>{}"#,
                esc(r.code.as_str()),
                r.message
                    .as_deref()
                    .map(|msg| format!(" — {}", esc(msg)))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        let _ = write!(
            m,
            r#"<tr><td>{}</td><td class="mono">{}</td><td>{}</td><td>{}</td><td class="hide-sm mono muted">{}</td></tr>"#,
            esc(&when(&e.created_at)),
            esc(&e.entry_type),
            actor(e),
            why,
            esc(e.request_id.as_deref().unwrap_or("")),
        );
    }
    if v.audit.data.is_empty() {
        m.push_str(r#"<tr><td colspan="5" class="muted">No entries.</td></tr>"#);
    }
    m.push_str(r#"</tbody></table></div><nav class="pager" aria-label="Audit pages">"#);
    if v.before.is_some() {
        let _ = write!(m, r#"<a href="/console/cards/{}">Newest</a>"#, c.id);
    }
    if let Some(next) = v.audit.next_cursor {
        let _ = write!(
            m,
            r##"<a href="/console/cards/{}?before={}#h-audit">Older entries</a>"##,
            c.id,
            esc(&query(&next.to_string()))
        );
    }
    m.push_str("</nav></section>");

    // Events and deliveries.
    m.push_str(
        r#"<section class="panel" aria-labelledby="h-events"><h2 id="h-events">Events and webhook deliveries</h2>"#,
    );
    m.push_str(&events_table(user, v.events, false));
    m.push_str("</section>");

    shell(Some(user), &format!("•••• {}", c.last_four), &m)
}

fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "pending",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Succeeded => "succeeded",
        DeliveryState::Dead => "dead",
    }
}

fn events_table(user: &ConsoleUser, events: &[EventDeliveries], with_card: bool) -> String {
    let mut m = String::from(
        r#"<div class="scroll" tabindex="0" role="region" aria-label="Events and deliveries (scrolls sideways)"><table><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">Deliveries</th><th scope="col">Redeliver</th></tr></thead><tbody>"#,
    );
    if events.is_empty() {
        m.push_str(r#"<tr><td colspan="4" class="muted">No events.</td></tr>"#);
    }
    for e in events {
        let mut deliveries = String::new();
        if e.deliveries.is_empty() {
            deliveries.push_str(r#"<span class="muted">none</span>"#);
        }
        for d in &e.deliveries {
            let _ = write!(
                deliveries,
                r#"<details><summary>{} · {} attempt{}{}</summary><div class="muted mono">endpoint {}</div><ul>"#,
                badge(state_name(d.state)),
                d.attempts,
                if d.attempts == 1 { "" } else { "s" },
                d.last_status.map(|s| format!(" · HTTP {s}")).unwrap_or_default(),
                d.endpoint_id,
            );
            for a in &d.attempts_log {
                let _ = write!(
                    deliveries,
                    "<li>{} — {}{} ({} ms)</li>",
                    esc(&when(&a.at)),
                    a.status
                        .map(|s| format!("HTTP {s}"))
                        .unwrap_or_else(|| "no answer".into()),
                    a.error.as_deref().map(|e| format!(": {}", esc(e))).unwrap_or_default(),
                    a.duration_ms
                );
            }
            if let Some(next) = d.next_attempt_at {
                let _ = write!(deliveries, "<li>next attempt {}</li>", esc(&when(&next)));
            }
            deliveries.push_str("</ul></details>");
        }
        let card = match (with_card, e.card_id) {
            (true, Some(id)) => format!(r#"<div><a class="mono" href="/console/cards/{id}">card {id}</a></div>"#),
            _ => String::new(),
        };
        let _ = write!(
            m,
            r#"<tr><td>{}</td><td class="mono">{}{}</td><td>{}</td><td><form method="post" action="/console/events/{}/redeliver">{}<button type="submit" class="secondary" aria-label="Redeliver {} of {}">Redeliver</button></form></td></tr>"#,
            esc(&when(&e.created_at)),
            esc(e.event_type.as_str()),
            card,
            deliveries,
            e.id,
            hidden("csrf_token", &user.csrf_token),
            esc(e.event_type.as_str()),
            esc(&when(&e.created_at)),
        );
    }
    m.push_str("</tbody></table></div>");
    m
}

fn action_title(action: &str) -> &'static str {
    match action {
        "lock" => "Lock this card?",
        "unlock" => "Unlock this card?",
        "block" => "Block this card?",
        "close" => "Close this card? This cannot be undone.",
        "replace" => "Replace this card?",
        "pin-unblock" => "Unblock this card's PIN?",
        "resend-activation" => "Send a new activation code?",
        "reveal" => "Reveal the PAN and CVV? The reveal is audited.",
        _ => "Confirm",
    }
}

/// The confirmation step: the same form again, with `confirm=yes`.
pub fn confirm(user: &ConsoleUser, card: &Card, action: &str, fields: &HashMap<String, String>) -> String {
    let mut carried = String::new();
    for name in ["reason_code", "reason_message", "reason"] {
        if let Some(v) = fields.get(name) {
            carried.push_str(&hidden(name, v));
        }
    }
    let mut details = String::new();
    for (name, label) in [
        ("reason_code", "Reason code"),
        ("reason_message", "Message"),
        ("reason", "Reason"),
    ] {
        if let Some(v) = fields.get(name).filter(|v| !v.trim().is_empty()) {
            let _ = write!(details, "<dt>{}</dt><dd>{}</dd>", label, esc(v));
        }
    }
    let m = format!(
        r#"<div class="panel login"><h1>{title}</h1><p>Card <strong>•••• {last4}</strong> <span class="mono muted">{id}</span>, now {status}.</p>{details}
<form method="post" action="/console/cards/{id}/{action}">{csrf}{carried}{confirm}<div class="actions"><button type="submit" class="{class}">Yes, {verb}</button><a class="button secondary" href="/console/cards/{id}">Cancel</a></div></form></div>"#,
        title = esc(action_title(action)),
        last4 = esc(&card.last_four),
        id = card.id,
        status = badge(card.status.as_str()),
        details = if details.is_empty() {
            String::new()
        } else {
            format!(r#"<dl class="facts">{details}</dl>"#)
        },
        action = esc(action),
        csrf = hidden("csrf_token", &user.csrf_token),
        carried = carried,
        confirm = hidden("confirm", "yes"),
        class = if matches!(action, "block" | "close") {
            "danger"
        } else {
            ""
        },
        verb = esc(&action.replace('-', " ")),
    );
    shell(Some(user), action_title(action), &m)
}

/// PAN and CVV, once (the answer is `no-store`).
pub fn revealed(user: &ConsoleUser, card: &Card, data: &SensitiveData) -> String {
    let pan = data.pan.expose();
    let grouped: Vec<String> = pan
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let m = format!(
        r#"<div class="panel login"><h1>Card data</h1><p>Shown once; this reveal is in the audit trail. Do not copy it anywhere unsafe.</p><dl class="facts"><dt>PAN</dt><dd class="secret">{}</dd><dt>CVV</dt><dd class="secret">{}</dd><dt>Expiry</dt><dd>{:02}/{}</dd></dl><p><a class="button" href="/console/cards/{}">Done</a></p></div>"#,
        esc(&grouped.join(" ")),
        esc(data.cvv.expose()),
        data.expiry.month(),
        data.expiry.year(),
        card.id
    );
    shell(Some(user), "Card data", &m)
}

/// The webhooks page.
pub fn webhooks(
    user: &ConsoleUser,
    endpoints: &[WebhookEndpoint],
    events: &[EventDeliveries],
    notice: Option<super::Notice>,
) -> String {
    let mut m = String::from("<h1>Webhooks</h1>");
    if let Some(n) = &notice {
        m.push_str(&notice_html(n));
    }
    m.push_str(r#"<section class="panel" aria-labelledby="h-endpoints"><h2 id="h-endpoints">Endpoints</h2><div class="scroll" tabindex="0" role="region" aria-label="Endpoints (scrolls sideways)"><table><thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Format</th><th scope="col" class="hide-sm">Created</th><th scope="col">Remove</th></tr></thead><tbody>"#);
    if endpoints.is_empty() {
        m.push_str(r#"<tr><td colspan="5" class="muted">No endpoints yet.</td></tr>"#);
    }
    for e in endpoints {
        let _ = write!(
            m,
            r#"<tr><td class="mono">{}<div class="muted">{}</div></td><td class="mono">{}</td><td>{}</td><td class="hide-sm">{}</td><td><form method="post" action="/console/webhooks/{}/remove">{}<button type="submit" class="secondary" aria-label="Remove {}">Remove</button></form></td></tr>"#,
            esc(&e.url),
            e.id,
            esc(&e.events.join(", ")),
            esc(e.format.as_str()),
            esc(&when(&e.created_at)),
            e.id,
            hidden("csrf_token", &user.csrf_token),
            esc(&e.url),
        );
    }
    m.push_str("</tbody></table></div></section>");
    let _ = write!(
        m,
        r#"<section class="panel" aria-labelledby="h-add"><h2 id="h-add">Add an endpoint</h2><form method="post" action="/console/webhooks">{}
<div class="field"><label for="wh-url">URL (HTTPS; private addresses only where the operator allows them)</label><input type="url" id="wh-url" name="url" required style="width:100%"></div>
<div class="field"><label for="wh-events">Event types, comma-separated (empty: every type)</label><input type="text" id="wh-events" name="events" style="width:100%"></div>
<div class="field"><label for="wh-format">Format</label><select id="wh-format" name="format"><option value="standard">standard</option><option value="p100">p100</option></select></div>
<button type="submit">Add endpoint</button></form></section>"#,
        hidden("csrf_token", &user.csrf_token)
    );
    m.push_str(
        r#"<section class="panel" aria-labelledby="h-recent"><h2 id="h-recent">Latest events and deliveries</h2>"#,
    );
    m.push_str(&events_table(user, events, true));
    m.push_str("</section>");
    shell(Some(user), "Webhooks", &m)
}

/// The confirmation step of removing an endpoint.
pub fn confirm_remove(user: &ConsoleUser, id: &str) -> String {
    let m = format!(
        r#"<div class="panel login"><h1>Remove this endpoint?</h1><p class="mono">{id}</p><p>Deliveries not yet made to it are abandoned.</p>
<form method="post" action="/console/webhooks/{id}/remove">{}{}<div class="actions"><button type="submit" class="danger">Yes, remove</button><a class="button secondary" href="/console/webhooks">Cancel</a></div></form></div>"#,
        hidden("csrf_token", &user.csrf_token),
        hidden("confirm", "yes"),
        id = esc(id),
    );
    shell(Some(user), "Remove endpoint", &m)
}
