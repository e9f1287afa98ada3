//! The node's SMS provider: Twilio's Messages API or a generic HTTP one.
//! The request is built here and sent by the dispatcher's one HTTP client
//! (`Dispatcher::send`), like every other delivery.
//!
//! Never logged: the text (it holds the code), the provider's token, the
//! phone number.

use std::fmt;

use cardcore_service::sms::SmsMessage;
use zeroize::Zeroizing;

/// Which provider sends the node's SMS.
#[derive(Clone, Default)]
pub enum SmsProvider {
    /// No SMS: deliveries of `sms` endpoints fail (and are retried) until
    /// a node with a provider takes them.
    #[default]
    None,
    /// `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form fields
    /// `To`, `From`, `Body`, HTTP Basic auth with the SID and the token.
    Twilio {
        base_url: String,
        account_sid: String,
        auth_token: Zeroizing<String>,
        from: String,
    },
    /// `POST url` with the JSON body template, `{to}`, `{text}` and
    /// `{otp_id}` replaced (JSON-escaped), and the extra headers.
    Http {
        url: String,
        body_template: String,
        headers: Vec<(String, Zeroizing<String>)>,
    },
}

impl fmt::Debug for SmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("SmsProvider::None"),
            Self::Twilio { .. } => f.write_str("SmsProvider::Twilio([redacted])"),
            Self::Http { .. } => f.write_str("SmsProvider::Http([redacted])"),
        }
    }
}

/// Twilio's public API.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// The generic provider's body when none is given.
pub const DEFAULT_HTTP_BODY: &str = r#"{"to":"{to}","text":"{text}"}"#;

/// Why a provider setting is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SmsConfigError(pub String);

/// Checks a JSON body template: with sample values in, it must be JSON.
pub fn validate_body_template(template: &str) -> Result<(), SmsConfigError> {
    let sample = fill_template(template, "+10000000000", "sample \"text\"", "trace");
    serde_json::from_str::<serde_json::Value>(&sample).map_err(|e| {
        SmsConfigError(format!(
            "--sms-http-body: not JSON once {{to}}, {{text}} and {{otp_id}} are filled in ({e})"
        ))
    })?;
    if !template.contains("{text}") {
        return Err(SmsConfigError("--sms-http-body: must contain {text}".into()));
    }
    Ok(())
}

/// Parses `Name: value`.
pub fn parse_header(line: &str) -> Result<(String, Zeroizing<String>), SmsConfigError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| SmsConfigError("--sms-http-header: expected \"Name: value\"".into()))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
        return Err(SmsConfigError(
            "--sms-http-header: the name must be letters, digits, - or _".into(),
        ));
    }
    Ok((name.to_owned(), Zeroizing::new(value.trim().to_owned())))
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn fill_template(template: &str, to: &str, text: &str, otp_id: &str) -> String {
    template
        .replace("{to}", &json_escaped(to))
        .replace("{otp_id}", &json_escaped(otp_id))
        .replace("{text}", &json_escaped(text))
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl SmsProvider {
    /// The request that sends `message`, or None without a provider.
    pub(crate) fn request(&self, client: &reqwest::Client, message: &SmsMessage) -> Option<reqwest::RequestBuilder> {
        match self {
            Self::None => None,
            Self::Twilio {
                base_url,
                account_sid,
                auth_token,
                from,
            } => {
                let url = format!(
                    "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                    base_url.trim_end_matches('/')
                );
                let body = Zeroizing::new(form_encode(&[
                    ("To", &message.to),
                    ("From", from),
                    ("Body", &message.text),
                ]));
                Some(
                    client
                        .post(url)
                        .basic_auth(account_sid, Some(auth_token.as_str()))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.as_bytes().to_vec()),
                )
            }
            Self::Http {
                url,
                body_template,
                headers,
            } => {
                let body = Zeroizing::new(fill_template(
                    body_template,
                    &message.to,
                    &message.text,
                    &message.otp_id,
                ));
                let mut request = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec());
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                Some(request)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_json_escaped() {
        let body = fill_template(DEFAULT_HTTP_BODY, "+15550001111", "say \"hi\"\n", "t-1");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["to"], "+15550001111");
        assert_eq!(v["text"], "say \"hi\"\n");
        assert!(validate_body_template(DEFAULT_HTTP_BODY).is_ok());
        assert!(validate_body_template(r#"{"to": {to}}"#).is_err());
        assert!(validate_body_template(r#"{"to": "{to}"}"#).is_err());
    }

    #[test]
    fn twilio_form_fields_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("To", "+1 555"), ("Body", "a&b=c")]),
            "To=%2B1+555&Body=a%26b%3Dc"
        );
        assert!(parse_header("X-Api-Key: abc").is_ok());
        assert!(parse_header("no colon").is_err());
    }
}
