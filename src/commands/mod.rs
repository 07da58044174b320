//! Subcommands that do their work and exit (as opposed to `vigil run`): file I/O and printing
//! around the pure library parts.

pub mod capture;
pub mod check;
pub mod deliveries;
pub mod diff;
pub mod once;
pub mod review;
