//! What the two outbox tables (`webhook_deliveries`, `alerts`) share: how a due row is leased
//! and what an attempt writes back.

use super::{Attempt, OutboxStatus};
use crate::time::Timestamp;

/// Leases the next due row of an outbox table (`$1` = now, `$2` = lease end).
///
/// With `one_per` (a column or an expression over the row), a row is not claimed while another
/// with the same value is in flight: one slow destination holds one slot, never all of them.
///
/// `only` adds a condition on the row (its own binds start at `$3`).
pub(crate) fn claim_outbox_sql(table: &str, lock: &str, one_per: Option<&str>, only: &str) -> String {
    let fair = one_per.map_or_else(String::new, |column| {
        format!(
            "AND {column} NOT IN (SELECT {column} FROM {table} \
             WHERE status = 'pending' AND lease_expires_at > $1)"
        )
    });
    format!(
        "UPDATE {table} SET lease_expires_at = $2, updated_at = $1
         WHERE id = (
             SELECT id FROM {table}
             WHERE status = 'pending' AND next_attempt_at <= $1
               AND (lease_expires_at IS NULL OR lease_expires_at <= $1) {only} {fair}
             ORDER BY next_attempt_at, id LIMIT 1 {lock}
         )
         RETURNING *"
    )
}

/// Column values for an outbox row after an attempt:
/// (status, next_attempt_at, last_status, last_error, sent/delivered at).
pub(crate) fn outbox_update(
    attempt: &Attempt,
    now: Timestamp,
) -> (OutboxStatus, Timestamp, Option<i32>, Option<String>, Option<Timestamp>) {
    match attempt {
        Attempt::Sent { status, .. } => (OutboxStatus::Sent, now, *status, None, Some(now)),
        Attempt::Retry { at, status, error } => {
            (OutboxStatus::Pending, *at, *status, Some(error.clone()), None)
        }
        Attempt::Dead { status, error } => (OutboxStatus::Dead, now, *status, Some(error.clone()), None),
    }
}
