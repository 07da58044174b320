//! One integration-test binary: the daemon driven as a user meets it.

mod helpers;

mod cli;
mod server;
mod store;
