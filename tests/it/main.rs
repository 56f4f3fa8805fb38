//! The integration tests: one binary, one module per area.

mod serial;
mod tcp;
mod support;
