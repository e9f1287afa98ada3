//! Integration tests: a real server on port 0 with a fresh SQLite file,
//! spoken to over HTTP, read as user stories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod activation;
mod api_keys;
mod authorization_endpoint;
mod authorization_tenant;
mod authorizations;
mod bad_input;
mod cardholders;
mod cards;
mod cli;
mod console;
mod dialect_cross;
mod dialect_m2p;
mod dialect_p100;
mod dialect_qitech;
mod dialect_toy;
mod dynamic_cvv;
mod events;
mod idempotency;
mod idempotency_secrets;
mod import;
mod isolation;
mod lifecycle;
mod limits;
mod logs;
mod observability;
mod openapi;
mod otp;
mod p100_users;
mod pan_unique;
mod pin_block_oracle;
mod pin_order;
mod pins;
mod readme;
mod seeds;
mod sms;
mod transport_keys;
mod webhook_targets;
mod webhooks;
