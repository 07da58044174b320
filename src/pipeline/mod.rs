//! The monitoring pipeline: from a received capture to a verdict and its alerts; the reconciler for runs whose result never came.

pub mod api;
pub mod processor;
pub mod reconciler;
pub mod request;

pub use processor::Processor;
pub use reconciler::Reconciler;
pub use request::capture_request;
