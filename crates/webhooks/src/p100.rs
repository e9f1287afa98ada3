//! P100's card webhooks: `{"event_type", "data"}`, the endpoint's secret
//! token in `Authorization`, success = 200.
//!
//! P100 documents the two webhooks by name (Card Activation Code, Card 3DS
//! Code; https://partner-api-docs.p100.io/card-3ds-code-19869100e0) but
//! their bodies were not found in its public pages: the `event_type` names
//! and the `data` fields below are **assumed** (docs/dialects.md), in the
//! camelCase of P100's other answers. So is P100's "Card Transaction"
//! webhook (listed among its Transfers & Payments webhooks; body not found):
//! `CARD_TRANSACTION`, sent for every authorization decision and movement
//! (docs/authorizations.md).

use cardcore_domain::otp::OtpPurpose;
use cardcore_domain::{Event, EventType};
use cardcore_service::Service;
use serde_json::{json, Value};

/// What to send for an event: the body, or None when P100 has no webhook
/// for it (an `otp.created` of another purpose than `three_ds`).
pub(crate) async fn body(service: &Service, event: &Event) -> Result<Option<Value>, String> {
    let (event_type, code_field) = match event.event_type {
        EventType::CardActivationCode => ("CARD_ACTIVATION_CODE", "activation_code"),
        EventType::OtpCreated => {
            let purpose = event.data.get("purpose").and_then(Value::as_str);
            if purpose != Some(OtpPurpose::ThreeDs.as_str()) {
                return Ok(None);
            }
            ("CARD_3DS_CODE", "otp")
        }
        EventType::AuthorizationApproved
        | EventType::AuthorizationDeclined
        | EventType::AuthorizationReversed
        | EventType::AuthorizationExpired
        | EventType::TransactionCaptured
        | EventType::TransactionRefunded => return card_transaction(service, event).await,
        _ => return Ok(None),
    };
    let Some(card_id) = event.card_id else {
        return Ok(None);
    };
    let store = service.store();
    let card = store
        .card(event.tenant_id, card_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the event's card is gone")?
        .card;
    let holder = store
        .cardholder(event.tenant_id, card.cardholder_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the card's cardholder is gone")?;
    // A tenant may keep OTPs out of its events (SMS only): then there is no
    // code to send here either.
    let Some(code) = event.data.get(code_field).and_then(Value::as_str) else {
        return Ok(None);
    };
    let mut data = json!({
        "cardId": card.id,
        "externalUserId": holder.external_id,
        "last4": card.last_four,
        "createdAt": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    match event.event_type {
        EventType::CardActivationCode => data["activationCode"] = json!(code),
        _ => {
            data["code"] = json!(code);
            data["expiresAt"] = event.data.get("expires_at").cloned().unwrap_or(Value::Null);
        }
    }
    Ok(Some(json!({ "event_type": event_type, "data": data })))
}

/// P100's Card Transaction webhook (shape assumed, see the module doc) for
/// an authorization decision, reversal, expiry, capture or refund. Amounts
/// are minor units of `currency` (the card's), as cardcore keeps them.
async fn card_transaction(service: &Service, event: &Event) -> Result<Option<Value>, String> {
    let Some(card_id) = event.card_id else {
        // A decline for no card of the tenant: no card to report it on.
        return Ok(None);
    };
    let store = service.store();
    let card = store
        .card(event.tenant_id, card_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the event's card is gone")?
        .card;
    let holder = store
        .cardholder(event.tenant_id, card.cardholder_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the card's cardholder is gone")?;
    let d = &event.data;
    let auth = match event.event_type {
        EventType::AuthorizationApproved | EventType::AuthorizationDeclined => d.clone(),
        _ => d.get("authorization").cloned().unwrap_or(Value::Null),
    };
    let txn = d.get("transaction").cloned().unwrap_or(Value::Null);
    let (kind, status, amount) = match event.event_type {
        EventType::AuthorizationApproved => ("AUTHORIZATION", "APPROVED", auth["billing_amount"].clone()),
        EventType::AuthorizationDeclined => ("AUTHORIZATION", "DECLINED", auth["billing_amount"].clone()),
        EventType::AuthorizationReversed => ("REVERSAL", "REVERSED", d["amount"].clone()),
        EventType::AuthorizationExpired => ("EXPIRY", "EXPIRED", d["amount"].clone()),
        EventType::TransactionCaptured => ("CAPTURE", "SETTLED", txn["amount"].clone()),
        _ => ("REFUND", "REFUNDED", txn["amount"].clone()),
    };
    let merchant = if txn["merchant"].is_object() {
        txn["merchant"].clone()
    } else {
        auth["merchant"].clone()
    };
    let currency = if txn.is_object() {
        txn["currency"].clone()
    } else {
        auth["billing_currency"].clone()
    };
    let transaction_id = if txn.is_object() {
        txn["id"].clone()
    } else {
        auth["id"].clone()
    };
    Ok(Some(json!({
        "event_type": "CARD_TRANSACTION",
        "data": {
            "cardId": card.id,
            "externalUserId": holder.external_id,
            "last4": card.last_four,
            "transactionId": transaction_id,
            "authorizationId": auth.get("id").cloned().unwrap_or(Value::Null),
            "transactionType": kind,
            "status": status,
            "declineReason": auth.get("decline_reason").cloned().unwrap_or(Value::Null),
            "responseCode": auth.get("response_code").cloned().unwrap_or(Value::Null),
            "amount": amount,
            "currency": currency,
            "merchantName": merchant.get("name").cloned().unwrap_or(Value::Null),
            "merchantCategoryCode": merchant.get("mcc").cloned().unwrap_or(Value::Null),
            "merchantCity": merchant.get("city").cloned().unwrap_or(Value::Null),
            "merchantCountry": merchant.get("country").cloned().unwrap_or(Value::Null),
            "createdAt": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    })))
}
