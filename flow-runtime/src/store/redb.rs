//! The embedded redb store. (stub)

/// The redb store.
pub struct RedbStore {}
impl RedbStore {
    /// stub
    pub fn open(_path: &std::path::Path) -> Result<RedbStore, super::StoreError> {
        Err(super::StoreError::Closed)
    }
}
impl super::Store for RedbStore {
    fn create_run(&self, _run: super::RunRecord) -> crate::registry::BoxFuture<'_, Result<super::CreateRun, super::StoreError>> { todo!() }
    fn commit(&self, _w: Vec<super::Write>) -> crate::registry::BoxFuture<'_, Result<(), super::StoreError>> { todo!() }
    fn run(&self, _id: &super::RunId) -> crate::registry::BoxFuture<'_, Result<Option<super::RunRecord>, super::StoreError>> { todo!() }
    fn runs(&self, _f: &super::RunFilter) -> crate::registry::BoxFuture<'_, Result<Vec<super::RunRecord>, super::StoreError>> { todo!() }
    fn steps(&self, _id: &super::RunId) -> crate::registry::BoxFuture<'_, Result<Vec<super::StepRecord>, super::StoreError>> { todo!() }
    fn cancel_requests(&self, _ids: &[super::RunId]) -> crate::registry::BoxFuture<'_, Result<Vec<super::RunId>, super::StoreError>> { todo!() }
}
