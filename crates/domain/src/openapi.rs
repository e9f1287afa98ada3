//! OpenAPI schemas for the domain types whose JSON the derive cannot see:
//! custom `Serialize` impls (`Expiry`, `EventType`) and strings with a
//! format (`KitNumber`, `ReasonCode`). Built from the same constants and
//! functions the serializers use, so the document says exactly what the
//! JSON is. Compiled only with the `openapi` feature (cardcore-http's).

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::card::{Expiry, KitNumber};
use crate::cardholder::ExternalId;
use crate::event::{Channel, EventType};
use crate::reason::ReasonCode;

/// `Expiry` serializes with `Display`: `MM/YY`.
pub const EXPIRY_PATTERN: &str = "^(0[1-9]|1[0-2])/[0-9]{2}$";

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

impl PartialSchema for Expiry {
    fn schema() -> RefOr<Schema> {
        string("Card expiry as `MM/YY`; the card is valid through the end of that month.")
            .pattern(Some(EXPIRY_PATTERN))
            .into()
    }
}

impl ToSchema for Expiry {}

impl PartialSchema for KitNumber {
    fn schema() -> RefOr<Schema> {
        string("The card's kit number: 6 to 16 digits, unique per tenant (M2P `kit`/`kitNo`); 10 generated digits when none is given.")
            .pattern(Some(KitNumber::PATTERN))
            .into()
    }
}

impl ToSchema for KitNumber {}

impl PartialSchema for ExternalId {
    fn schema() -> RefOr<Schema> {
        string("The tenant's own id for the person (P100 `externalUserId`, M2P `entityId`).")
            .pattern(Some("^[A-Za-z0-9_.:@-]{1,64}$"))
            .into()
    }
}

impl ToSchema for ExternalId {}

impl PartialSchema for ReasonCode {
    fn schema() -> RefOr<Schema> {
        string(&format!(
            "A status reason code from the catalog: {}.",
            ReasonCode::CATALOG.join(", ")
        ))
        .into()
    }
}

impl ToSchema for ReasonCode {}

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        string(
            "The event type. `card.activation_code` and `otp.created` carry a code for the cardholder \
             (their data is sealed at rest and delivered only to the tenant).",
        )
        .enum_values(Some(EventType::ALL.map(EventType::as_str)))
        .into()
    }
}

impl ToSchema for EventType {}

impl PartialSchema for Channel {
    fn schema() -> RefOr<Schema> {
        string(
            "The API the request came through: `native`, a dialect's name (`p100`, `qitech`, `m2p`), `cli` or \
             `system`.",
        )
        .pattern(Some(Channel::PATTERN))
        .examples(["native"])
        .into()
    }
}

impl ToSchema for Channel {}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn custom_schemas_describe_what_the_serializers_write() {
        let expiry = Expiry::new(3, 2029).unwrap();
        assert_eq!(serde_json::to_value(expiry).unwrap(), "03/29");
        assert_eq!(json::<Expiry>()["pattern"], EXPIRY_PATTERN);
        assert_eq!(json::<Expiry>()["type"], "string");
        let types: Vec<serde_json::Value> = EventType::ALL
            .iter()
            .map(|t| serde_json::to_value(t).unwrap())
            .collect();
        assert_eq!(json::<EventType>()["enum"], serde_json::Value::Array(types));
        assert_eq!(json::<KitNumber>()["pattern"], "^[0-9]{6,16}$");
    }
}
