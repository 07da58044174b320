//! The monitoring pipeline: runs started and submitted for capture ([`runs`]), received
//! captures judged into verdicts and alerts ([`processor`]), runs whose result never came
//! ([`reconciler`]), and the monitors and runs API ([`api`]).

pub mod api;
pub mod processor;
pub mod reconciler;
pub mod runs;

pub use api::MonitorsApi;
pub use processor::Processor;
pub use reconciler::Reconciler;
