//! The cardholder: the person cards are issued to.

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, CardholderId, TenantId};
use crate::validation::{self, ValidationErrors};
use crate::Timestamp;

/// The tenant's own id for the person (P100 `externalUserId`, M2P `entityId`).
/// 1 to 64 characters of letters, digits and `-_.:@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExternalId(String);

impl ExternalId {
    /// Validates the characters and length.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters long");
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c)) {
            return Err("may contain only letters, digits and - _ . : @");
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number: country calling code and national number, digits only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Phone {
    pub country_code: String,
    pub number: String,
}

impl Phone {
    /// Checks both parts, reporting under `field`.
    pub fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        let cc = self.country_code.trim_start_matches('+');
        if cc.is_empty() || cc.len() > 4 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            errors.add(
                format!("{field}.country_code"),
                "must be 1 to 4 digits, e.g. \"91\" or \"+351\"",
            );
        }
        if self.number.len() < 4 || self.number.len() > 15 || !self.number.bytes().all(|b| b.is_ascii_digit()) {
            errors.add(format!("{field}.number"), "must be 4 to 15 digits");
        }
    }

    /// The same phone with the country code normalised (no `+`).
    pub fn normalized(&self) -> Self {
        Self {
            country_code: self.country_code.trim_start_matches('+').to_owned(),
            number: self.number.clone(),
        }
    }
}

/// A cardholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cardholder {
    pub id: CardholderId,
    #[serde(skip)]
    pub tenant_id: TenantId,
    pub external_id: ExternalId,
    pub name: String,
    pub phone: Phone,
    #[cfg_attr(feature = "openapi", schema(required = true, format = Email))]
    pub email: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub date_of_birth: Option<chrono::NaiveDate>,
    /// The account a card draws on when none is given at creation.
    pub default_account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The fields of a new cardholder, as validated input.
#[derive(Debug, Clone)]
pub struct NewCardholder {
    pub external_id: ExternalId,
    pub name: String,
    pub phone: Phone,
    pub email: Option<String>,
    pub date_of_birth: Option<chrono::NaiveDate>,
}

impl NewCardholder {
    /// Validates raw input; `today` bounds the date of birth.
    pub fn validate(
        external_id: &str,
        name: &str,
        phone: &Phone,
        email: Option<&str>,
        date_of_birth: Option<chrono::NaiveDate>,
        today: chrono::NaiveDate,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let external = ExternalId::parse(external_id)
            .map_err(|m| errors.add("external_id", m))
            .ok();
        validation::text(&mut errors, "name", name, 1, 200);
        phone.validate("phone", &mut errors);
        if let Some(email) = email {
            let ok = email.len() <= 254
                && email
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                errors.add("email", "must be an email address such as ana@example.com");
            }
        }
        if let Some(dob) = date_of_birth {
            let earliest = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(chrono::NaiveDate::MIN);
            if dob > today || dob < earliest {
                errors.add("date_of_birth", "must be a past date after 1900-01-01 (YYYY-MM-DD)");
            }
        }
        errors.into_result()?;
        Ok(Self {
            external_id: external.ok_or_else(|| ValidationErrors::single("external_id", "is invalid"))?,
            name: name.trim().to_owned(),
            phone: phone.normalized(),
            email: email.map(str::to_owned),
            date_of_birth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    }

    fn phone(cc: &str, n: &str) -> Phone {
        Phone {
            country_code: cc.into(),
            number: n.into(),
        }
    }

    #[test]
    fn accepts_a_good_cardholder_and_normalises_the_phone() {
        let c = NewCardholder::validate(
            "u-1",
            "Ana Silva",
            &phone("+91", "9600389470"),
            Some("ana@example.com"),
            None,
            today(),
        )
        .unwrap();
        assert_eq!(c.phone.country_code, "91");
    }

    #[test]
    fn names_every_bad_field() {
        let dob = chrono::NaiveDate::from_ymd_opt(2030, 1, 1);
        let err = NewCardholder::validate("bad id!", "", &phone("x", "12"), Some("nope"), dob, today()).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "external_id",
                "name",
                "phone.country_code",
                "phone.number",
                "email",
                "date_of_birth"
            ]
        );
    }
}
