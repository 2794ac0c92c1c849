//! Shared helpers for flow tests.
