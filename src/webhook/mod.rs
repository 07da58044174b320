//! Webhooks: the receiver of finished captures (`POST /hooks/capture`) and the delivery outbox
//! that sends the capture API's completion webhooks, with retries. Signing is [`crate::signing`].

pub mod delivery;
pub mod receiver;
