//! cems-gateway: the emission data logger ("数采仪") of a CEMS installation.
//!
//! # Layout
//!
//! The daemon is a pipeline of tasks joined by channels:
//!
//! ```text
//!  analyzers ──Modbus RTU/TCP, ASCII──▶ acquire (one task per bus) ──samples──▶ store (one thread, SQLite)
//!                                                 │
//!                                                 └──▶ live (latest values and device health, for display)
//! ```
//!
//! - [`config`]: the TOML file, parsed raw and validated into a typed [`config::Config`].
//! - [`model`]: plain domain types (data flags, samples); [`factors`]: factor names for people.
//! - [`acquire`]: register maps and read planning (pure), and the bus tasks that poll analyzers.
//! - [`store`]: the only module that touches SQLite.
//! - [`sim`]: a simulated CEMS (gas analyzer, dust meter, flow/T/P/humidity) served over Modbus.
//! - [`app`]: wiring for `run`, `demo` and `probe`.
//! - [`commands`]: the commands that read a buffer file (`verify`, `export`, `backup`).
//! - [`mark`]: `cems-gateway mark`, the operators' marks on the box.
//! - [`demo`]: `cems-gateway demo`, with a simulated past recorded through the same pipeline.
//! - [`web`]: the read-only status page, JSON API, CSV export and metrics for officers, and the
//!   operators' marks behind a token of their own.
//!
//! The pure cores (`acquire::registers`, `acquire::flags`, `config::validate`) do no I/O and never panic on input.

pub mod acquire;
pub mod app;
pub mod clock;
pub mod commands;
pub mod compute;
pub mod config;
pub mod demo;
pub mod factors;
pub mod figures;
pub mod hj212;
pub mod lifecycle;
pub mod live;
pub mod mark;
pub mod model;
pub mod report;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod uplink;
pub mod web;
