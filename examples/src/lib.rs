//! Example workflows for flow. The flagship is `sync_records` (see `src/bin/sync_records.rs`).
#![allow(missing_docs)]

pub mod api;
pub mod sync;
