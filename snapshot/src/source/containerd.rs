//! Placeholder until the reader lands.
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this store is not read yet")]
    X,
}
pub struct ContainerdStore {
    root: PathBuf,
}
impl ContainerdStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ContainerdStore { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn container_image(&self, _n: &str, _id: &str) -> Result<Option<String>, Error> {
        Ok(None)
    }
    pub fn image(&self, _n: &str, _name: &str) -> Result<oci_spec::image::Descriptor, Error> {
        Err(Error::X)
    }
    pub fn content_dir(&self) -> PathBuf {
        self.root.join("io.containerd.content.v1.content")
    }
}
