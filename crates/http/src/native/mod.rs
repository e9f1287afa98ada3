//! The native API (v1): clean JSON, snake_case, one shape for every tenant.

mod cardholders;
pub(crate) mod cards;
mod events;
mod pins;
mod webhooks;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::AppState;

/// Routes under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/cardholders", post(cardholders::create).get(cardholders::find))
        .route("/v1/cardholders/{id}", get(cardholders::get))
        .route("/v1/cards", post(cards::create).get(cards::list))
        .route("/v1/cards/{id}", get(cards::get).delete(cards::delete))
        .route("/v1/cards/{id}/sensitive", get(cards::sensitive))
        .route("/v1/cards/{id}/activate", post(cards::activate))
        .route("/v1/cards/{id}/lock", post(cards::lock))
        .route("/v1/cards/{id}/unlock", post(cards::unlock))
        .route("/v1/cards/{id}/block", post(cards::block))
        .route("/v1/cards/{id}/close", post(cards::close))
        .route("/v1/cards/{id}/replace", post(cards::replace))
        .route("/v1/cards/{id}/limits", get(cards::get_limits).put(cards::put_limits))
        .route("/v1/cards/{id}/events", get(events::card_audit))
        .route("/v1/cards/{id}/pin", put(pins::set))
        .route("/v1/cards/{id}/pin/verify", post(pins::verify))
        .route("/v1/cards/{id}/pin/change", post(pins::change))
        .route("/v1/cards/{id}/pin/unblock", post(pins::unblock))
        .route("/v1/cards/{id}/otp", post(pins::create_otp))
        .route("/v1/pin-encryption-key", get(pins::encryption_key))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(webhooks::event))
        .route("/v1/events/{id}/redeliver", post(webhooks::redeliver))
        .route("/v1/webhook-endpoints", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhook-endpoints/{id}", delete(webhooks::delete))
}
