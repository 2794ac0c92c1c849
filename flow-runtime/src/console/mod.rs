//! What an operator meets: the generated main and its CLI, settings, and logging.

pub(crate) mod alert_settings;
pub(crate) mod api;
pub(crate) mod cli;
pub(crate) mod retention;
pub(crate) mod schedule_settings;
pub(crate) mod settings;
pub(crate) mod telemetry;
