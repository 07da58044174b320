//! vigil: a self-hosted visual regression monitoring daemon.
//!
//! [`run`] is the composition root: it takes a validated [`config::Config`], a bound listener and
//! a shutdown signal, so tests start the whole daemon on port 0 with nothing global.

#![forbid(unsafe_code)]

pub mod config;
