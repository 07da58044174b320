//! One integration-test binary: the daemon driven as a user meets it.

mod helpers;

mod capture;
mod cli;
mod containment;
mod diff;
mod events;
mod faults;
mod groups;
mod hostile;
mod ignores;
mod layout;
mod masks;
mod monitoring;
mod outside;
mod pdf;
mod pipeline;
mod quality;
mod receiver;
mod replicas;
mod retention;
mod review;
mod roles;
mod server;
mod steps;
mod storage;
mod store;
mod ui;
mod words;
