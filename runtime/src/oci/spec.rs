//! `spec`: writes a starting config.json into a bundle.

use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};

/// Writes `bundle/config.json` as `runc spec` does: a shell on a terminal in
/// the read-only `rootfs`, with the usual mounts, namespaces and
/// capabilities. An existing file is left alone.
pub fn write_default_spec(bundle: &Path) -> Result<()> {
    let path = bundle.join("config.json");
    let mut spec = oci_spec::runtime::Spec::default();
    spec.set_hostname(Some("freezeframe".into()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| match path.exists() {
            true => Error::SpecExists {
                path: path.clone(),
                source,
            },
            false => Error::SpecWrite {
                op: "creating",
                path: path.clone(),
                source,
            },
        })?;
    let write = |source| Error::SpecWrite {
        op: "writing",
        path: path.clone(),
        source,
    };
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, &spec).map_err(|e| write(e.into()))?;
    writeln!(out).map_err(write)?;
    out.flush().map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_spec_once_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        write_default_spec(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let spec: oci_spec::runtime::Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("freezeframe"));
        assert!(text.ends_with("}\n"));
        let e = write_default_spec(dir.path()).unwrap_err().to_string();
        assert!(e.ends_with("config.json: remove it first"), "{e}");
        let e = write_default_spec(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("creating ") && e.ends_with("missing/config.json"),
            "{e}"
        );
    }
}
