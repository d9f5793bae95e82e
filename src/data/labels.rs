//! Low-level label-file parsing shared by the dataset readers: BOM, CRLF, quoting, UTF-8
//! checks, score and path validation. Every error is one line `FILE:LINE: problem`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail};

/// One parsed line of a label file: 1-based line number and trimmed UTF-8 fields.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Reads a label file into memory, with a one-line error naming it; strips a UTF-8 BOM.
pub(crate) fn read_label_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let p = path.display();
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{p}: labels file not found"),
        Err(e) => bail!("{p}: cannot open labels file: {e}"),
        Ok(m) if m.is_dir() => bail!("{p}: is a directory, expected a labels file"),
        Ok(_) => {}
    }
    let mut bytes =
        crate::files::read_bounded(path, crate::files::MAX_LIST_BYTES, "a labels file")?;
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    Ok(bytes)
}

/// Parses comma-separated records (quotes, CRLF, ragged rows allowed). Blank lines are skipped.
pub(crate) fn csv_rows(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let (mut counted_to, mut counted_line) = (0usize, 1usize);
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e
                    .position()
                    .map(|p| p.line().to_string())
                    .unwrap_or_else(|| "?".into());
                bail!(
                    "{}:{line}: cannot parse CSV: {}",
                    path.display(),
                    one_line(&e.to_string())
                );
            }
        }
        // Line from the byte offset (csv's own line count is off after CRLF line ends).
        let mut off = rec
            .position()
            .map(|p| p.byte() as usize)
            .unwrap_or(0)
            .min(bytes.len());
        while off < bytes.len() && (bytes[off] == b'\r' || bytes[off] == b'\n') {
            off += 1;
        }
        if off >= counted_to {
            counted_line += bytes[counted_to..off]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            counted_to = off;
        }
        let line = counted_line;
        let mut fields = Vec::with_capacity(rec.len());
        for (k, f) in rec.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s.trim().to_string()),
                Err(_) => bail!(
                    "{}:{line}: field {} is not valid UTF-8",
                    path.display(),
                    k + 1
                ),
            }
        }
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        rows.push(Row { line, fields });
    }
    Ok(rows)
}

/// Parses whitespace-separated lines (TID's `mos_with_names.txt`); surrounding quotes are removed.
pub(crate) fn whitespace_rows(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let s = std::str::from_utf8(raw)
            .map_err(|_| anyhow!("{}:{line}: line is not valid UTF-8", path.display()))?;
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        let fields = s
            .split_whitespace()
            .map(|f| f.trim_matches(|c| c == '"' || c == '\'').to_string())
            .collect();
        rows.push(Row { line, fields });
    }
    Ok(rows)
}

/// Index of the columns named in `wanted` in the header row; `None` for optional columns absent.
pub(crate) fn header_columns(
    path: &Path,
    header: Option<&Row>,
    required: &[&str],
    optional: &[&str],
) -> anyhow::Result<(Vec<usize>, Vec<Option<usize>>)> {
    let Some(h) = header else {
        bail!(
            "{}: empty labels file (expected a header with columns {})",
            path.display(),
            required.join(",")
        );
    };
    let mut req = Vec::new();
    for name in required {
        match unique_column(path, h, name)? {
            Some(i) => req.push(i),
            None => bail!(
                "{}:{}: missing column \"{name}\" (header has: {})",
                path.display(),
                h.line,
                h.fields.join(",")
            ),
        }
    }
    let opt = optional
        .iter()
        .map(|n| unique_column(path, h, n))
        .collect::<anyhow::Result<_>>()?;
    Ok((req, opt))
}

/// The header column named `name` (in any case), if there is one; two are ambiguous, and
/// refused rather than one of them taken silently.
pub(crate) fn unique_column(path: &Path, h: &Row, name: &str) -> anyhow::Result<Option<usize>> {
    let mut hits = (0..h.fields.len()).filter(|&i| h.fields[i].eq_ignore_ascii_case(name));
    let first = hits.next();
    if let (Some(a), Some(b)) = (first, hits.next()) {
        bail!(
            "{}:{}: the header names the column \"{name}\" twice (columns {} and {}), which is ambiguous",
            path.display(),
            h.line,
            a + 1,
            b + 1
        );
    }
    Ok(first)
}

/// Field `i` of a row, or an error saying how many fields the line has.
pub(crate) fn field<'a>(
    path: &Path,
    row: &'a Row,
    i: usize,
    what: &str,
) -> anyhow::Result<&'a str> {
    match row.fields.get(i) {
        Some(f) => Ok(f.as_str()),
        None => bail!(
            "{}:{}: missing {what} (field {} of the line; the line has {} field{})",
            path.display(),
            row.line,
            i + 1,
            row.fields.len(),
            if row.fields.len() == 1 { "" } else { "s" }
        ),
    }
}

/// A finite score, or an error naming the file and line.
pub(crate) fn parse_score(path: &Path, line: usize, s: &str) -> anyhow::Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => bail!(
            "{}:{line}: score \"{s}\" is not a finite number",
            path.display()
        ),
        Err(_) => bail!("{}:{line}: score \"{s}\" is not a number", path.display()),
    }
}

/// A path from a label file, which must stay inside the dataset root: relative, without `..`.
/// Backslashes are read as separators (label files written on Windows).
pub(crate) fn safe_relative(path: &Path, line: usize, s: &str) -> anyhow::Result<PathBuf> {
    relative_within(path, line, s, "the dataset root")
}

/// `safe_relative` for a list whose paths are relative to `root` (named in the errors).
pub(crate) fn relative_within(
    path: &Path,
    line: usize,
    s: &str,
    root: &str,
) -> anyhow::Result<PathBuf> {
    let p = path.display();
    let norm = s.replace('\\', "/");
    // Messages show the path with control characters escaped: one line, no terminal codes.
    let shown = escape_controls(s);
    let s = shown.as_str();
    if norm.is_empty() {
        bail!("{p}:{line}: empty image path");
    }
    let b = norm.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if norm.starts_with('/') || drive {
        bail!("{p}:{line}: absolute image path \"{s}\" refused (paths must be relative to {root})");
    }
    let mut out = PathBuf::new();
    for c in Path::new(&norm).components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::ParentDir => {
                bail!("{p}:{line}: image path \"{s}\" uses \"..\" to leave {root} (refused)")
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("{p}:{line}: absolute image path \"{s}\" refused (paths must be relative to {root})")
            }
        }
    }
    if out.as_os_str().is_empty() {
        bail!("{p}:{line}: image path \"{s}\" names no file");
    }
    Ok(out)
}

/// `s` with control characters (line breaks, tabs, ...) written as escapes, e.g. `\r\n`.
pub(crate) fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Case-insensitive index of the files in one folder (file names differ in case between
/// releases of TID and between operating systems).
pub(crate) struct DirIndex {
    pub dir: PathBuf,
    by_lower: HashMap<String, OsString>,
}

impl DirIndex {
    /// Lists `dir`; a missing folder gives an empty index (files are then reported missing).
    pub fn new(dir: PathBuf) -> Self {
        let mut by_lower = HashMap::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                if let Some(s) = name.to_str() {
                    by_lower.entry(s.to_lowercase()).or_insert(name);
                }
            }
        }
        DirIndex { dir, by_lower }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The path of `rel` in this folder, matched case-insensitively when the exact name is absent.
    pub fn find(&self, rel: &Path) -> Option<PathBuf> {
        let mut comps = rel.components();
        let (Some(Component::Normal(name)), None) = (comps.next(), comps.next()) else {
            let p = self.dir.join(rel);
            return p.is_file().then_some(p);
        };
        let lower = name.to_str()?.to_lowercase();
        self.by_lower.get(&lower).map(|n| self.dir.join(n))
    }

    /// First file whose stem equals `stem` case-insensitively, preferring a `.bmp` extension.
    pub fn find_stem(&self, stem: &str) -> Option<PathBuf> {
        let lower = stem.to_lowercase();
        if let Some(n) = self.by_lower.get(&format!("{lower}.bmp")) {
            return Some(self.dir.join(n));
        }
        let mut hits: Vec<&OsString> = self
            .by_lower
            .iter()
            .filter(|(k, _)| {
                Path::new(k.as_str()).file_stem().and_then(|s| s.to_str()) == Some(lower.as_str())
            })
            .map(|(_, v)| v)
            .collect();
        hits.sort();
        hits.first().map(|n| self.dir.join(n))
    }

    /// Where `rel` would be: the found file, or the plain join (reported as missing later).
    pub fn resolve(&self, rel: &Path) -> PathBuf {
        self.find(rel).unwrap_or_else(|| self.dir.join(rel))
    }
}
