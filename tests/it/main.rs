//! The integration tests: one binary, one module per area.

mod ascii;
mod audit;
mod chaos;
mod cli;
mod compliance;
mod config;
mod figures;
mod fuzz_corpus;
mod hj212;
mod hj212_bounds;
mod hj212_input;
mod hostile;
mod http_uplink;
mod platforms;
mod pure_inputs;
mod realtime_split;
mod serial;
mod service;
mod store;
mod support;
mod tcp;
mod tidy;
mod uplink;
mod uplink2025;
mod web;
mod web_limits;
