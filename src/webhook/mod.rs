//! Webhooks: Standard Webhooks signing (pure) and the delivery outbox with retries.

pub mod delivery;
pub mod receiver;
pub mod signing;
