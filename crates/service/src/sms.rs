//! OTPs sent by SMS: a tenant's settings (on or off, the message template,
//! whether `otp.created` still carries the code) and the message of one
//! `otp.created` event. The node's provider (Twilio, a generic HTTP one)
//! and the sending live in `cardcore-webhooks`: an SMS is a delivery of
//! the tenant's `sms` endpoint, so it goes through the outbox with the
//! webhooks' leases, attempts and retries.

use cardcore_domain::{EventType, TenantId, WebhookEndpointId};
use cardcore_store::{EndpointFormat, SealedData, StoredEvent, TenantSmsRecord, WebhookEndpointRecord};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::{Service, ServiceError, ServiceResult};

/// The message when the tenant set none.
pub const DEFAULT_TEXT: &str = "Your verification code is {code}. It expires in {minutes} minutes.";

/// Longest template accepted (a long SMS is several messages).
pub const MAX_TEXT_LEN: usize = 320;

/// The key under which an event keeps the code for the SMS when the tenant
/// has the code left out of `otp.created`; never shown (see `open_event`).
pub(crate) const HIDDEN_CODE: &str = "sms_otp";

/// A tenant's SMS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSettings {
    /// OTPs go out by SMS (the tenant has an `sms` endpoint).
    pub enabled: bool,
    /// The template (the default when the tenant set none).
    pub text: String,
    /// `otp.created` carries the code.
    pub otp_in_events: bool,
}

/// A change of settings; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct SmsSettingsChange {
    pub enabled: Option<bool>,
    /// `Some(None)`: back to the default.
    pub text: Option<Option<String>>,
    pub otp_in_events: Option<bool>,
}

/// One text message to send. The text holds the code: never log it.
pub struct SmsMessage {
    /// E.164: `+` and digits.
    pub to: String,
    pub text: Zeroizing<String>,
    /// The OTP's trace number, for the provider's deduplication.
    pub otp_id: String,
}

impl std::fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmsMessage({}, [redacted])", self.otp_id)
    }
}

/// Checks a template: it must place `{code}`, and name only the known
/// placeholders (`{code}`, `{minutes}`, `{tenant}`).
pub fn validate_text(text: &str) -> ServiceResult<()> {
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_LEN {
        return Err(ServiceError::invalid(
            "text",
            format!("must be 1 to {MAX_TEXT_LEN} characters"),
        ));
    }
    if !text.contains("{code}") {
        return Err(ServiceError::invalid("text", "must contain {code}"));
    }
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !matches!(name, "code" | "minutes" | "tenant") {
            return Err(ServiceError::invalid(
                "text",
                format!("unknown placeholder {{{name}}}; expected {{code}}, {{minutes}} or {{tenant}}"),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The message: the template with its placeholders filled in.
pub fn render(template: &str, code: &str, minutes: i64, tenant: &str) -> Zeroizing<String> {
    Zeroizing::new(
        template
            .replace("{minutes}", &minutes.to_string())
            .replace("{tenant}", tenant)
            .replace("{code}", code),
    )
}

/// `+` country code and number, digits only.
pub fn e164(country_code: &str, number: &str) -> String {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    format!("+{}{}", digits(country_code), digits(number))
}

impl Service {
    /// A tenant's SMS settings (the defaults when it changed none).
    pub async fn sms_settings(&self, tenant: TenantId) -> ServiceResult<SmsSettings> {
        let stored = self.store.tenant_sms(tenant).await?;
        let enabled = self.sms_endpoint(tenant).await?.is_some();
        Ok(SmsSettings {
            enabled,
            text: stored
                .as_ref()
                .and_then(|s| s.text.clone())
                .unwrap_or_else(|| DEFAULT_TEXT.to_owned()),
            otp_in_events: stored.is_none_or(|s| s.otp_in_events),
        })
    }

    async fn sms_endpoint(&self, tenant: TenantId) -> ServiceResult<Option<WebhookEndpointRecord>> {
        Ok(self
            .store
            .webhook_endpoints(tenant)
            .await?
            .into_iter()
            .find(|e| e.format == EndpointFormat::Sms))
    }

    /// Changes a tenant's SMS settings (operator command). Turning SMS on
    /// adds the tenant's `sms` endpoint (OTPs made from then on are sent);
    /// turning it off deletes it (SMS not yet sent are given up).
    pub async fn update_sms_settings(&self, tenant: TenantId, change: SmsSettingsChange) -> ServiceResult<SmsSettings> {
        self.tenant(tenant).await?;
        if let Some(Some(text)) = &change.text {
            validate_text(text)?;
        }
        let current = self.store.tenant_sms(tenant).await?;
        let record = TenantSmsRecord {
            tenant_id: tenant,
            text: match change.text {
                Some(text) => text,
                None => current.as_ref().and_then(|c| c.text.clone()),
            },
            otp_in_events: change
                .otp_in_events
                .unwrap_or_else(|| current.as_ref().is_none_or(|c| c.otp_in_events)),
            updated_at: self.now(),
        };
        self.store.put_tenant_sms(&record).await?;
        let existing = self.sms_endpoint(tenant).await?;
        match (change.enabled, existing) {
            (Some(true), None) => {
                // The endpoint's secret is never used (the provider's
                // credentials are the node's); it is made like any other so
                // the row is the same shape.
                let id = WebhookEndpointId::new();
                let (version, key) = self.keys.data_key(None).await?;
                let mut filler = [0u8; 32];
                rand::RngCore::fill_bytes(&mut OsRng, &mut filler);
                let sealed = key.seal(crate::webhooks::secret_aad(tenant, id).as_bytes(), &filler, &mut OsRng);
                let record = WebhookEndpointRecord {
                    id,
                    tenant_id: tenant,
                    url: String::new(),
                    event_types: Some(vec![EventType::OtpCreated]),
                    secret: SealedData {
                        ciphertext: sealed,
                        key_version: version,
                    },
                    format: EndpointFormat::Sms,
                    created_at: self.now(),
                };
                let record = &record;
                self.unit_of_work(|| async move {
                    let mut tx = self.store.begin().await?;
                    tx.insert_webhook_endpoint(record).await?;
                    tx.commit().await?;
                    Ok(())
                })
                .await?;
            }
            (Some(false), Some(endpoint)) => {
                let endpoint = &endpoint;
                self.unit_of_work(|| async move {
                    let mut tx = self.store.begin().await?;
                    tx.delete_webhook_endpoint(tenant, endpoint.id, self.now()).await?;
                    tx.commit().await?;
                    Ok(())
                })
                .await?;
            }
            _ => {}
        }
        self.sms_settings(tenant).await
    }

    /// The text message of an `otp.created` event for the cardholder, or
    /// `Ok(None)` when there is nothing to send any more (not an OTP event,
    /// no phone, or the code has expired).
    pub async fn sms_message(&self, stored: StoredEvent) -> ServiceResult<Option<SmsMessage>> {
        if stored.event.event_type != EventType::OtpCreated {
            return Ok(None);
        }
        let tenant_id = stored.event.tenant_id;
        let created_at = stored.event.created_at;
        let event = self.open_event_raw(stored).await?;
        let data = &event.data;
        let code = data
            .get("otp")
            .or_else(|| data.get(HIDDEN_CODE))
            .and_then(|c| c.as_str())
            .map(|c| Zeroizing::new(c.to_owned()));
        let (Some(code), Some(phone)) = (code, data.get("phone")) else {
            return Ok(None);
        };
        let (Some(cc), Some(number)) = (
            phone.get("country_code").and_then(|v| v.as_str()),
            phone.get("number").and_then(|v| v.as_str()),
        ) else {
            return Ok(None);
        };
        let expires_at: Option<cardcore_domain::Timestamp> = data
            .get("expires_at")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let Some(expires_at) = expires_at else {
            return Ok(None);
        };
        if expires_at <= self.now() {
            return Ok(None);
        }
        let minutes = ((expires_at - created_at).num_seconds() + 59) / 60;
        let tenant = self.tenant(tenant_id).await?;
        let settings = self.sms_settings(tenant_id).await?;
        let otp_id = data
            .get("trace_number")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(Some(SmsMessage {
            to: e164(cc, number),
            text: render(&settings.text, &code, minutes, &tenant.name),
            otp_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_the_code_and_known_placeholders() {
        assert!(validate_text(DEFAULT_TEXT).is_ok());
        assert!(validate_text("Your {tenant} code is {code}.").is_ok());
        for bad in ["", "   ", "no code here", "{code} {pin}", &"x{code}".repeat(60)] {
            assert!(validate_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_message_fills_every_placeholder() {
        let text = render(
            "Your {tenant} code is {code}. It expires in {minutes} minutes.",
            "123456",
            5,
            "acme",
        );
        assert_eq!(text.as_str(), "Your acme code is 123456. It expires in 5 minutes.");
        assert_eq!(e164("+91", "96003 89470"), "+919600389470");
    }
}
