//! The embedded redb store. (stub)

/// The redb store.
pub struct RedbStore {}
