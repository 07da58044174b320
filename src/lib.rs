//! vigil: a self-hosted visual regression monitoring daemon.
//!
//! [`app`] is the composition root: [`run`] takes a validated [`config::Config`], a bound
//! listener and a shutdown signal, so tests start the whole daemon on port 0 with nothing global.
//! docs/architecture.md maps the modules and the data flow.

#![forbid(unsafe_code)]

pub mod alert;
pub mod app;
pub mod baseline;
pub mod capture;
pub mod commands;
pub mod config;
pub mod diff;
pub mod disk;
pub mod http;
pub mod ids;
pub mod ignore;
pub mod masks;
pub mod pipeline;
pub mod queue;
pub mod reload;
pub mod retention;
pub mod review;
pub mod scheduler;
pub mod signing;
pub mod store;
pub mod time;
pub mod ui;
pub mod webhook;

pub use app::{Roles, RunError, RunOptions, init_tls, run, run_with, shutdown_signal, signal_count};
