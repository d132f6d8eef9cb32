//! The integration tests, as one test binary with a module per topic: one build of
//! the shared helpers and one link of the library (the AWS SDK, axum, SQLite) instead
//! of one per topic. `cargo test --test it MODULE::` runs one topic.

mod common;

mod api;
mod bad_input;
mod bucket_only;
mod callbacks;
mod cloud_e2e;
mod consistency;
mod drill;
mod encryption;
mod fidelity;
mod formats;
mod hostile;
mod kill_resume;
mod local_runner;
mod many_databases;
mod parquet;
mod props;
mod restore;
mod retention;
mod roundtrip;
mod schedule;
mod secrets;
mod sfn_moto;
mod store_conformance;
mod test_plan;
mod verify;
