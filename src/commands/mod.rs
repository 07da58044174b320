//! Subcommands that do their work and exit (as opposed to `vigil run`): file I/O and printing
//! around the pure library parts.

pub mod capture;
pub mod check;
pub mod deliveries;
pub mod diff;
pub mod once;
pub mod review;

/// The database the config names, for a command: an error says which database and why.
async fn open_store(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    let url = config.storage.database_url.expose();
    crate::store::connect(url, 1).await.map_err(|e| {
        let (at, why) = (crate::store::describe_url(url), crate::http::client::error_chain(&e));
        format!("cannot open the database {at}: {why}")
    })
}
