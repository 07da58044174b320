//! One integration-test binary: the daemon driven as a user meets it.

mod helpers;

mod capture;
mod cli;
mod diff;
mod faults;
mod hostile;
mod monitoring;
mod pipeline;
mod receiver;
mod review;
mod server;
mod store;
mod ui;
