//! `vigil deliveries list|replay`: the webhook outbox, from the command line.

use std::path::Path;
use std::process::ExitCode;

use crate::ids::MessageId;
use crate::store::OutboxStatus;

#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries (dead letters by default).
    List {
        #[arg(long, value_enum, default_value_t = StatusArg::Dead)]
        status: StatusArg,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead-lettered delivery back in the queue; the daemon sends it again at once.
    Replay { id: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusArg {
    Pending,
    Sent,
    Dead,
}

pub fn run(config: &Path, command: &DeliveriesCommand) -> ExitCode {
    let config = match crate::config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("async runtime");
    let result = runtime.block_on(async {
        let store = super::open_store(&config).await?;
        match command {
            DeliveriesCommand::List { status, limit } => {
                let status = match status {
                    StatusArg::Pending => OutboxStatus::Pending,
                    StatusArg::Sent => OutboxStatus::Sent,
                    StatusArg::Dead => OutboxStatus::Dead,
                };
                let rows = store.list_deliveries(status, *limit).await.map_err(|e| e.to_string())?;
                println!(
                    "{:<30}  {:<30}  {:>8}  {:>6}  {:<24}  URL / LAST ERROR",
                    "ID", "JOB OR RUN", "ATTEMPTS", "STATUS", "CREATED"
                );
                for d in &rows {
                    println!(
                        "{:<30}  {:<30}  {:>8}  {:>6}  {:<24}  {} / {}",
                        d.id,
                        d.subject,
                        d.attempts,
                        d.last_status.map_or("-".to_owned(), |s| s.to_string()),
                        d.created_at.to_string(),
                        shown_url(d),
                        d.last_error.as_deref().unwrap_or("-")
                    );
                }
                println!("{} {} deliver{}", rows.len(), status, if rows.len() == 1 { "y" } else { "ies" });
                Ok(())
            }
            DeliveriesCommand::Replay { id } => {
                let id: MessageId = id.parse().map_err(|e| format!("{e}"))?;
                if store
                    .replay_delivery(&id, crate::time::Timestamp::now())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("{id} queued again; a running daemon sends it within a second");
                    Ok(())
                } else {
                    Err(format!("{id} is not a dead-lettered delivery"))
                }
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A capture client's webhook URL as it is; an event's only as its origin and destination name
/// (a Discord or Teams URL is the secret that lets anyone post to the channel).
fn shown_url(d: &crate::store::Delivery) -> String {
    if d.sender.is_empty() {
        return d.url.clone();
    }
    match url::Url::parse(&d.url).map(|u| u.origin()) {
        Ok(origin @ url::Origin::Tuple(..)) => {
            format!("{}/… (alerts: {})", origin.ascii_serialization(), d.sender)
        }
        // `smtp://server:port`: no secret in it.
        _ => format!("{} (alerts: {})", d.url, d.sender),
    }
}
