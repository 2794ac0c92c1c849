//! Example workflows for flow. The flagship is `sync_records` (see `src/bin/sync_records.rs`).
#![allow(missing_docs)]

pub mod api;
pub mod sync;

/// The README's code compiles: its first example is checked as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
