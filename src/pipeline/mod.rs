//! The monitoring pipeline: from a received capture to a verdict (and, later, an alert).

pub mod processor;
pub mod request;

pub use processor::Processor;
pub use request::capture_request;
