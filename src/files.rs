//! File input and output with bounds. Reading: the files asna loads whole (weights, models)
//! must be regular files of bounded size, so that a device, a FIFO or a file that keeps
//! growing is refused instead of filling memory. Writing is atomic: everything goes to a
//! temporary file in the target's directory, which is flushed to disk and then renamed over
//! the target. A crash, a full disk or an error midway leaves the old file (or none) in place,
//! never a half-written one that looks complete.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The largest text inputs read whole: a pair or label list (about 10 million rows), and a
/// run's metrics or baselines file.
pub const MAX_LIST_BYTES: u64 = 1 << 30;
pub const MAX_RUN_LOG_BYTES: u64 = 256 << 20;

/// A 64-bit FNV-1a digest of `bytes`: stable across platforms and releases, for telling files
/// apart (not for security).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = Digest::new();
    h.update(bytes);
    h.finish()
}

/// FNV-1a over bytes given in pieces.
pub struct Digest(u64);

impl Digest {
    pub fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::new()
    }
}

/// What a file system object is, in words, for errors about things that are not regular files.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads the whole of `path`, a regular file of at most `max_bytes` bytes; `what` names the
/// kind of file expected, for the errors ("a .safetensors model file").
///
/// The type is checked before the file is opened (opening a FIFO would block), again on the
/// open handle (the path may have been replaced in between), and the read stops one byte past
/// the limit, so a file that grows while it is read is still bounded.
pub fn read_bounded(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    let source = path.display();
    let check = |meta: &std::fs::Metadata| -> Result<()> {
        if !meta.is_file() {
            bail!(
                "{source}: is {}, expected {what}",
                kind_of(meta.file_type())
            );
        }
        if meta.len() > max_bytes {
            bail!(
                "{source}: {} bytes, more than the {max_bytes} that {what} may have",
                meta.len()
            );
        }
        Ok(())
    };
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
    check(&meta)?;
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("{source}: cannot read ({e})"))?;
    if bytes.len() as u64 > max_bytes {
        bail!("{source}: grew past {max_bytes} bytes while being read, expected {what}");
    }
    Ok(bytes)
}

/// Whether `a` and `b` name the same existing file (through links, `..` or another spelling).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(ca), Ok(cb)) => ca == cb,
            _ => false,
        }
    }
}

/// Refuses, before anything is written, an output that is the same file as one of the inputs
/// (through links or another spelling) or as another output. `outputs` are (option, path);
/// only outputs that exist already are compared, so a fresh output costs nothing per input.
pub fn refuse_overwriting_inputs<'a>(
    outputs: &[(&str, &Path)],
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    let existing: Vec<(&str, &Path)> = outputs
        .iter()
        .copied()
        .filter(|(_, p)| std::fs::metadata(p).is_ok())
        .collect();
    for (i, (opt, out)) in outputs.iter().enumerate() {
        for (other_opt, other) in &outputs[i + 1..] {
            if out == other || same_file(out, other) {
                bail!(
                    "{}: {opt} and {other_opt} name the same file; give each its own",
                    out.display()
                );
            }
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    for input in inputs {
        for (opt, out) in &existing {
            if same_file(out, input) {
                bail!(
                    "{}: {opt} is the input {}; refusing to overwrite an input",
                    out.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

/// A file being written; it appears at its path only on `commit`. Dropped without a commit,
/// or when the commit fails, it removes its temporary file.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    committed: bool,
}

/// Refuses a target that exists and is not a regular file: renaming over a device node or a
/// FIFO would replace it, and a directory cannot be replaced at all.
pub(crate) fn check_replaceable(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => bail!(
            "{}: is {}, not a regular file; refusing to replace it",
            path.display(),
            kind_of(meta.file_type())
        ),
        _ => Ok(()),
    }
}

impl AtomicFile {
    /// Starts writing `path` (its directory must exist; an existing `path` must be a regular
    /// file).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        check_replaceable(path)?;
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
            committed: false,
        })
    }

    /// Flushes everything to disk and puts the file at its path, with the permissions of the
    /// file it replaces, if any.
    pub fn commit(mut self) -> Result<()> {
        let path = self.path.clone();
        let file = self.file.take().expect("AtomicFile committed twice");
        let file = file
            .into_inner()
            .map_err(|e| anyhow!("{}: write failed ({})", path.display(), e.error()))?;
        // Checked again: the target may have been replaced while the file was written.
        check_replaceable(&path)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            file.set_permissions(meta.permissions())
                .with_context(|| format!("{}: cannot keep its permissions", path.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("{}: flush failed", path.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &path)
            .with_context(|| format!("{}: cannot replace", path.display()))?;
        self.committed = true;
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
        if !self.committed {
            drop(self.file.take());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asna-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn error_of<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn read_bounded_reads_a_small_regular_file() {
        let d = temp_dir("small");
        let p = d.join("a.bin");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5, "a test file").unwrap(), b"12345");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_bounded_refuses_a_file_over_the_limit_before_reading_it() {
        let d = temp_dir("large");
        let p = d.join("large.bin");
        // Sparse: the size is declared, nothing is written.
        std::fs::File::create(&p).unwrap().set_len(1 << 40).unwrap();
        let e = error_of(read_bounded(&p, 1 << 30, "a test file"));
        assert!(
            e.contains("large.bin") && e.contains("1099511627776 bytes, more than the 1073741824"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_bounded_refuses_directories_and_devices() {
        let d = temp_dir("kinds");
        let e = error_of(read_bounded(&d, 1 << 30, "a test file"));
        assert!(e.contains("is a directory, expected a test file"), "{e}");
        #[cfg(unix)]
        {
            let e = error_of(read_bounded(Path::new("/dev/zero"), 1 << 30, "a test file"));
            assert_eq!(e, "/dev/zero: is a character device, expected a test file");
            // Opening a FIFO blocks until a writer comes: it must be refused unopened.
            let fifo = d.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
            let e = error_of(read_bounded(&fifo, 1 << 30, "a test file"));
            assert!(e.contains("is a FIFO, expected a test file"), "{e}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_file_refuses_a_directory_and_leaves_no_temporary_file() {
        let d = temp_dir("out-dir");
        let target = d.join("out");
        std::fs::create_dir(&target).unwrap();
        let e = error_of(write_atomic(&target, &[0u8; 4096]));
        assert!(e.contains("is a directory, not a regular file"), "{e}");
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn atomic_file_refuses_a_device() {
        let e = error_of(AtomicFile::create(Path::new("/dev/null")));
        assert_eq!(
            e,
            "/dev/null: is a character device, not a regular file; refusing to replace it"
        );
    }

    #[test]
    fn a_failed_commit_leaves_no_temporary_file() {
        let d = temp_dir("failed-commit");
        let target = d.join("out");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"data").unwrap();
        // The target becomes a directory while the file is written.
        std::fs::create_dir(&target).unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let d = temp_dir("mode");
        let target = d.join("out");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn same_file_sees_through_other_spellings() {
        let d = temp_dir("same");
        let a = d.join("a");
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(d.join("b"), b"x").unwrap();
        assert!(same_file(&a, &d.join(".").join("a")));
        assert!(!same_file(&a, &d.join("b")));
        assert!(!same_file(&a, &d.join("absent")));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
