//! App state: the clients and configuration that steps need but that are not part of what a
//! step does (an HTTP client, a pool, a token). Registered once on the [`Flow`](crate::Flow)
//! (`Flow::builder().state(client)`, or returned by `#[flow::main]`'s setup) and read by type
//! inside a run with [`state`]. It is never serialized, keyed or stored; workflow code hands it
//! to steps as `#[step(skip(client))]` parameters.
//!
//! This module owns the type map and its lookup; where the current run is comes from `context`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A set of app state values, one per type.
///
/// ```
/// # use flow_runtime as flow;
/// #[derive(Clone)]
/// struct Api { base_url: String }
///
/// let state = flow::AppState::new().with(Api { base_url: "http://127.0.0.1:8080".into() });
/// assert_eq!(state.get::<Api>().map(|api| api.base_url.clone()).as_deref(), Some("http://127.0.0.1:8080"));
/// ```
#[derive(Clone, Default)]
pub struct AppState {
    values: HashMap<TypeId, Entry>,
}

#[derive(Clone)]
struct Entry {
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl AppState {
    /// No state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value`, replacing an earlier value of the same type.
    pub fn with<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Adds `value`, replacing an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(
            TypeId::of::<T>(),
            Entry {
                type_name: std::any::type_name::<T>(),
                value: Arc::new(value),
            },
        );
    }

    /// Adds every value of `other`, replacing values of the same types.
    pub fn merge(&mut self, other: AppState) {
        self.values.extend(other.values);
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let entry = self.values.get(&TypeId::of::<T>())?;
        entry.value.clone().downcast::<T>().ok()
    }

    /// The registered types, sorted, for messages.
    fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.values.values().map(|e| e.type_name).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.type_names()).finish()
    }
}

/// The app state of type `T` registered on the [`Flow`](crate::Flow) that executes the current
/// run; `None` outside a run or when no value of that type was registered.
pub fn try_state<T: Send + Sync + 'static>() -> Option<Arc<T>> {
    crate::engine::context::current_run()?.state()?.get::<T>()
}

/// The app state of type `T` registered on the [`Flow`](crate::Flow) that executes the current
/// run. Call it in a workflow (or a step body) and pass what it returns to the steps that need
/// it as `skip` parameters.
///
/// # Panics
/// Outside a run, or when no value of type `T` was registered: a mistake in the program, which
/// fails the run with a message naming the type and how to register it. Use [`try_state`] to
/// handle that case yourself.
///
/// ```no_run
/// # use flow_runtime as flow;
/// # #[derive(Clone)] struct Api;
/// # impl Api { async fn push(&self, _: u64) -> Result<(), flow::Failure> { Ok(()) } }
/// #[flow::step(idempotent, skip(api))]
/// async fn push(api: &Api, id: u64) -> Result<(), flow::Failure> {
///     api.push(id).await
/// }
///
/// #[flow::workflow]
/// async fn sync(ids: Vec<u64>) -> Result<(), flow::Failure> {
///     let api = flow::state::<Api>();
///     for id in ids {
///         push(&api, id).await?;
///     }
///     Ok(())
/// }
/// ```
#[track_caller]
pub fn state<T: Send + Sync + 'static>() -> Arc<T> {
    let wanted = std::any::type_name::<T>();
    let Some(run) = crate::engine::context::current_run() else {
        panic!(
            "flow::state::<{wanted}>() was called outside a run; app state exists only while a Flow executes a run: outside one, pass the value to the step directly"
        );
    };
    let registered = run.state();
    match registered.and_then(AppState::get::<T>) {
        Some(value) => value,
        None => {
            let known = registered.map(AppState::type_names).unwrap_or_default();
            let known = if known.is_empty() {
                "none is registered".to_owned()
            } else {
                format!("registered: {}", known.join(", "))
            };
            panic!(
                "no app state of type `{wanted}` ({known}); register it with `Flow::builder().state(value)`, or return it from the setup of `#[flow::main]` as `flow::AppState::new().with(value)`"
            )
        }
    }
}
