//! Atomic file output, the one way asna writes a file: everything goes to a temporary file in
//! the target's directory, which is flushed to disk and then renamed over the target. A crash,
//! a full disk or an error midway leaves the old file (or none) in place, never a half-written
//! one that looks complete.

use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file being written; it appears at its path only on `commit`. Dropped without a commit,
/// it removes its temporary file.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts writing `path` (its directory must exist).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("{}: not a file path", path.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    /// Flushes everything to disk and puts the file at its path.
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        let file = self.file.take().expect("AtomicFile committed twice");
        let file = file
            .into_inner()
            .map_err(|e| anyhow!("{}: write failed ({})", path.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("{}: flush failed", path.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &path)
            .with_context(|| format!("{}: cannot replace", path.display()))?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file
            .as_mut()
            .expect("AtomicFile written after commit")
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically (see the module comment).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)
        .with_context(|| format!("{}: write failed", path.display()))?;
    f.commit()
}
