//! Placeholder until the reader lands.
use super::stored::{ContainerRecord, StoredImage};
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this store is not read yet")]
    X,
}
pub struct DockerStore {
    root: PathBuf,
}
impl DockerStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DockerStore { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, Error> {
        Ok(Vec::new())
    }
    pub fn container(&self, _id: &str) -> Result<Option<ContainerRecord>, Error> {
        Ok(None)
    }
    pub fn image(&self, _r: &str) -> Result<StoredImage, Error> {
        Err(Error::X)
    }
}
