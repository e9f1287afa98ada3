//! The native API (v1): clean JSON, snake_case, one shape for every tenant.

mod authorization_endpoint;
mod authorizations;
mod cardholders;
pub(crate) mod cards;
mod events;
mod pins;
mod webhooks;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// Routes under `/v1`, each with its documentation (`routes!` takes the
/// method and path from the handler's `#[utoipa::path]`, so a route cannot
/// exist without its entry in the OpenAPI document). One `routes!` per path.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cardholders::create, cardholders::find))
        .routes(routes!(cardholders::get))
        .routes(routes!(cards::create, cards::list))
        .routes(routes!(cards::get, cards::delete))
        .routes(routes!(cards::sensitive))
        .routes(routes!(cards::activate))
        .routes(routes!(cards::lock))
        .routes(routes!(cards::unlock))
        .routes(routes!(cards::block))
        .routes(routes!(cards::close))
        .routes(routes!(cards::replace))
        .routes(routes!(cards::get_limits, cards::put_limits))
        .routes(routes!(events::card_audit))
        .routes(routes!(pins::set))
        .routes(routes!(pins::verify))
        .routes(routes!(pins::change))
        .routes(routes!(pins::unblock))
        .routes(routes!(pins::create_otp))
        .routes(routes!(pins::create_pin_session))
        .routes(routes!(pins::encryption_key))
        .routes(routes!(events::list))
        .routes(routes!(webhooks::event))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(authorizations::create))
        .routes(routes!(authorizations::get))
        .routes(routes!(authorizations::capture))
        .routes(routes!(authorizations::reverse))
        .routes(routes!(authorizations::list))
        .routes(routes!(authorizations::transactions))
        .routes(routes!(authorizations::refund))
        .routes(routes!(authorizations::get_controls, authorizations::put_controls))
        .routes(routes!(authorizations::spend))
        .routes(routes!(
            authorization_endpoint::put,
            authorization_endpoint::get,
            authorization_endpoint::delete
        ))
}
