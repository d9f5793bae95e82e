//! The pairs `asna score` reads: a CSV pair list, or two folders matched by file name.

use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// Reads a pair list: CSV with header `ref,dist` (extra columns ignored; a column named twice
/// is refused as ambiguous), paths relative to the list's own directory and inside it (an
/// absolute path or `..` is refused), each pair once (a repeated row is refused). Errors name
/// the list and the line, with control characters escaped.
pub fn read_pair_list(path: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    use crate::data::labels::{csv_rows, escape_controls, relative_within, unique_column};
    let src = path.display();
    let bytes = crate::files::read_bounded(path, crate::files::MAX_LIST_BYTES, "a pair list")?;
    let text = String::from_utf8(bytes).map_err(|e| anyhow!("{src}: not UTF-8 text ({e})"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        bail!("{src}: empty list (expected a header \"ref,dist\" and one pair per line)");
    }
    let rows = csv_rows(path, text.as_bytes())?;
    let Some((header, rows)) = rows.split_first() else {
        bail!("{src}: empty list (expected a header \"ref,dist\" and one pair per line)");
    };
    let (ri, di) = match (
        unique_column(path, header, "ref")?,
        unique_column(path, header, "dist")?,
    ) {
        (Some(r), Some(d)) => (r, d),
        _ => bail!(
            "{src}:{}: header must name the columns \"ref\" and \"dist\" (found: {})",
            header.line,
            escape_controls(&header.fields.join(","))
        ),
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let within = "the list's folder";
    let mut first_line = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let get = |i: usize| row.fields.get(i).map_or("", String::as_str);
        let (r, d) = (get(ri), get(di));
        if r.is_empty() || d.is_empty() {
            bail!("{src}:{line}: empty \"ref\" or \"dist\" field");
        }
        let pair = (
            relative_within(path, line, r, within)?,
            relative_within(path, line, d, within)?,
        );
        if let Some(first) = first_line.insert(pair.clone(), line) {
            bail!(
                "{src}:{line}: the pair {},{} is listed twice (first at line {first})",
                escape_controls(r),
                escape_controls(d)
            );
        }
        out.push((base.join(&pair.0), base.join(&pair.1)));
    }
    if out.is_empty() {
        bail!("{src}: the list holds no pairs");
    }
    Ok(out)
}

/// Pairs of files with the same name in two directories.
pub fn pairs_from_dirs(ref_dir: &Path, dist_dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| anyhow!("{}: cannot list ({e})", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        Ok(v)
    };
    let dists = list(dist_dir)?;
    let mut out = Vec::new();
    for d in dists {
        let r = ref_dir.join(d.file_name().unwrap());
        if r.is_file() {
            out.push((r, d));
        }
    }
    if out.is_empty() {
        bail!(
            "{} and {}: no file names in common",
            ref_dir.display(),
            dist_dir.display()
        );
    }
    Ok(out)
}
