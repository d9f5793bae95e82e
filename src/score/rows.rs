//! The rows of `asna score --pairs ... --out F`, written as they are scored, and resumed.
//!
//! Rows go to F in input order (F is begun when the first row is ready), flushed after every chunk and synced to disk at least every
//! [`SYNC_EVERY`]. Beside F, `F.resume.json` records what the rows depend on (the list, the
//! models' bytes, the options, the format, asna's version); `--resume` refuses an F whose
//! record differs, keeps every complete row that matches its pair and position, drops a torn
//! last row, and scores the rest, so that the finished F is byte-identical to an uninterrupted
//! run's.

use super::Format;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long rows may sit in the operating system's cache before they are synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

pub const RECORD_VERSION: u32 = 1;
const CSV_HEADER: &[u8] = b"ref,dist,score\n";

/// What the rows of F depend on. A resumed run must agree on every field but `adapter` (a
/// different adapter is warned about: its last digits may differ) and `complete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    pub asna_version: String,
    pub format: String,
    pub pairs: usize,
    /// Digest of the ordered pairs (after `--shard`), as the rows name them.
    pub list: String,
    /// Digest of each model file's bytes, in ensemble order.
    pub weights: Vec<String>,
    pub tta: bool,
    pub precision: String,
    pub batch: usize,
    pub shard: Option<String>,
    pub adapter: String,
    pub complete: bool,
}

impl RunRecord {
    /// The fields a resumed run must share, with names for the message when one differs.
    fn must_match(&self) -> [(&'static str, String); 10] {
        [
            ("record version", self.version.to_string()),
            ("asna version", self.asna_version.clone()),
            ("format", self.format.clone()),
            ("number of pairs", self.pairs.to_string()),
            ("pair list", self.list.clone()),
            ("weights", self.weights.join(", ")),
            ("--tta", self.tta.to_string()),
            ("--precision", self.precision.clone()),
            ("--batch", self.batch.to_string()),
            (
                "--shard",
                self.shard.clone().unwrap_or_else(|| "none".into()),
            ),
        ]
    }
}

/// Digest of an ordered pair list, as the rows name the pairs.
pub fn list_digest(list: &[(PathBuf, PathBuf)]) -> String {
    let mut d = crate::files::Digest::new();
    for (r, dist) in list {
        d.update(r.display().to_string().as_bytes());
        d.update(&[0]);
        d.update(dist.display().to_string().as_bytes());
        d.update(&[0]);
    }
    format!("{:016x}", d.finish())
}

/// Where F's record lives.
pub fn record_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".resume.json");
    PathBuf::from(name)
}

/// Rows going to F (with its record) or to stdout.
pub struct Rows {
    target: Target,
    format: Format,
    rows: usize,
}

enum Target {
    Stdout(BufWriter<std::io::Stdout>),
    /// F before its first row: a run that fails or is killed before it scores a pair leaves
    /// F as it was.
    Pending {
        path: PathBuf,
        record: RunRecord,
    },
    File {
        path: PathBuf,
        file: BufWriter<File>,
        record: RunRecord,
        last_sync: Instant,
    },
}

impl Rows {
    pub fn stdout(format: Format) -> Result<Rows> {
        let mut rows = Rows {
            target: Target::Stdout(BufWriter::new(std::io::stdout())),
            format,
            rows: 0,
        };
        rows.begin()?;
        Ok(rows)
    }

    /// Starts F afresh when its first row comes: then it is emptied, its record written, and
    /// its header.
    pub fn create(path: &Path, format: Format, record: RunRecord) -> Result<Rows> {
        crate::files::check_replaceable(path)?;
        Ok(Rows {
            target: Target::Pending {
                path: path.to_path_buf(),
                record,
            },
            format,
            rows: 0,
        })
    }

    fn open_pending(&mut self) -> Result<()> {
        if let Target::Pending { path, record } = &self.target {
            let (path, record) = (path.clone(), record.clone());
            crate::files::check_replaceable(&path)?;
            let file = File::create(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            write_record(&path, &record)?;
            *self = Rows::to_file(&path, file, self.format, record, 0);
            self.begin()?;
        }
        Ok(())
    }

    /// Whether rows have gone to a file (which `--resume` can finish).
    pub fn in_file(&self) -> bool {
        matches!(self.target, Target::File { .. })
    }

    /// Reopens F for `--resume`: checks its record against `record`, keeps the complete rows
    /// that match `list` from the start, cuts the rest off, and returns how many were kept.
    /// Without F, begins it (so a job array can pass `--resume` every time).
    pub fn resume(
        path: &Path,
        format: Format,
        record: RunRecord,
        list: &[(PathBuf, PathBuf)],
    ) -> Result<(Rows, usize)> {
        let shown = path.display();
        let record_file = record_path(path);
        if !path.exists() {
            // Nothing was scored yet (a job stopped before its first rows): start it.
            return Ok((Rows::create(path, format, record)?, 0));
        }
        if !record_file.exists() {
            bail!(
                "{shown}: --resume: {} is missing, so what these rows were scored with is \
                 unknown (run without --resume to score them afresh)",
                record_file.display()
            );
        }
        let text = crate::files::read_bounded(&record_file, 1 << 20, "a resume record")?;
        let stored: RunRecord = serde_json::from_slice(&text)
            .map_err(|e| anyhow!("{}: not a resume record ({e})", record_file.display()))?;
        for ((name, was), (_, now)) in stored.must_match().into_iter().zip(record.must_match()) {
            if was != now {
                bail!(
                    "{shown}: --resume: these rows were scored with another {name} ({was}; this \
                     run: {now}); run without --resume to start over"
                );
            }
        }
        if stored.adapter != record.adapter {
            eprintln!(
                "warning: {shown} was begun on {} and goes on on {}: the last digits of the \
                 scores may differ between the two",
                stored.adapter, record.adapter
            );
        }
        let bytes = crate::files::read_bounded(path, 1 << 40, "a score file")?;
        let (kept, end) = kept_rows(&bytes, format, list);
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("{shown}: cannot open to resume"))?;
        file.set_len(end as u64)
            .with_context(|| format!("{shown}: cannot cut off its torn rows"))?;
        file.seek(std::io::SeekFrom::End(0))?;
        let mut record = record;
        record.complete = false;
        write_record(path, &record)?;
        let mut rows = Rows::to_file(path, file, format, record, kept);
        if end == 0 {
            rows.begin()?;
        }
        Ok((rows, kept))
    }

    fn to_file(path: &Path, file: File, format: Format, record: RunRecord, rows: usize) -> Rows {
        Rows {
            target: Target::File {
                path: path.to_path_buf(),
                file: BufWriter::new(file),
                record,
                last_sync: Instant::now(),
            },
            format,
            rows,
        }
    }

    fn out(&mut self) -> &mut dyn Write {
        match &mut self.target {
            Target::Stdout(w) => w,
            Target::File { file, .. } => file,
            Target::Pending { .. } => unreachable!("F is opened before it is written"),
        }
    }

    fn begin(&mut self) -> Result<()> {
        match self.format {
            Format::Csv => self.out().write_all(CSV_HEADER)?,
            Format::Json => self.out().write_all(b"[")?,
            Format::Jsonl => {}
        }
        Ok(())
    }

    pub fn row(&mut self, r: &Path, d: &Path, score: f64) -> Result<()> {
        self.open_pending()?;
        let bytes = row_bytes(self.format, self.rows, r, d, score);
        self.out().write_all(&bytes)?;
        self.rows += 1;
        Ok(())
    }

    /// Hands the rows so far to the operating system, and to the disk when the last sync is
    /// [`SYNC_EVERY`] old.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.target {
            Target::Stdout(w) => w.flush()?,
            Target::Pending { .. } => {}
            Target::File {
                path,
                file,
                last_sync,
                ..
            } => {
                file.flush()
                    .with_context(|| format!("{}: write failed", path.display()))?;
                if last_sync.elapsed() >= SYNC_EVERY {
                    file.get_ref()
                        .sync_data()
                        .with_context(|| format!("{}: sync failed", path.display()))?;
                    *last_sync = Instant::now();
                }
            }
        }
        Ok(())
    }

    /// Ends the rows (JSON's closing bracket), syncs them, and marks the record complete.
    pub fn finish(mut self) -> Result<()> {
        self.open_pending()?;
        if self.format == Format::Json {
            self.out().write_all(b"\n]\n")?;
        }
        match self.target {
            Target::Stdout(mut w) => Ok(w.flush()?),
            Target::Pending { .. } => unreachable!("opened above"),
            Target::File {
                path,
                file,
                mut record,
                ..
            } => {
                let file = file
                    .into_inner()
                    .map_err(|e| anyhow!("{}: write failed ({})", path.display(), e.error()))?;
                file.sync_all()
                    .with_context(|| format!("{}: sync failed", path.display()))?;
                record.complete = true;
                write_record(&path, &record)
            }
        }
    }
}

fn write_record(out: &Path, record: &RunRecord) -> Result<()> {
    let text = serde_json::to_string_pretty(record)?;
    crate::files::write_atomic(&record_path(out), text.as_bytes())
}

/// The bytes of row `index` (0-based) in `format`.
fn row_bytes(format: Format, index: usize, r: &Path, d: &Path, score: f64) -> Vec<u8> {
    let (r, d) = (r.display().to_string(), d.display().to_string());
    match format {
        Format::Csv => {
            let mut line = csv_prefix(&r, &d);
            line.extend_from_slice(format!("{score:.6}\n").as_bytes());
            line
        }
        Format::Json => {
            let sep = if index == 0 { "\n" } else { ",\n" };
            let obj = serde_json::json!({"ref": r, "dist": d, "score": score});
            format!("{sep}  {obj}").into_bytes()
        }
        Format::Jsonl => {
            let obj = serde_json::json!({"ref": r, "dist": d, "score": score});
            format!("{obj}\n").into_bytes()
        }
    }
}

/// A CSV row up to its score: `ref,dist,` with the quoting the csv crate gives them.
fn csv_prefix(r: &str, d: &str) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(vec![]);
    w.write_record([r, d, ""]).expect("writing to memory");
    let mut line = w.into_inner().expect("writing to memory");
    line.pop(); // the record's "\n"
    line
}

/// How many rows at the start of `bytes` are complete and name `list`'s pairs in order, and
/// where the last of them ends (0: not even the header is whole).
fn kept_rows(bytes: &[u8], format: Format, list: &[(PathBuf, PathBuf)]) -> (usize, usize) {
    let mut at = match format {
        Format::Csv if bytes.starts_with(CSV_HEADER) => CSV_HEADER.len(),
        Format::Json if bytes.starts_with(b"[") => 1,
        Format::Jsonl => 0,
        _ => return (0, 0),
    };
    for (i, (r, d)) in list.iter().enumerate() {
        let (r, d) = (r.display().to_string(), d.display().to_string());
        let rest = &bytes[at..];
        let len = match format {
            Format::Csv => {
                let prefix = csv_prefix(&r, &d);
                rest.strip_prefix(prefix.as_slice()).and_then(|tail| {
                    let n = tail.iter().position(|&b| b == b'\n')?;
                    let score = std::str::from_utf8(&tail[..n]).ok()?;
                    score.parse::<f64>().ok()?;
                    Some(prefix.len() + n + 1)
                })
            }
            Format::Json => {
                let sep: &[u8] = if i == 0 { b"\n  " } else { b",\n  " };
                rest.strip_prefix(sep).and_then(|tail| {
                    let n = tail.iter().position(|&b| b == b'\n').unwrap_or(tail.len());
                    let n = if tail[..n].ends_with(b",") { n - 1 } else { n };
                    row_matches(&tail[..n], &r, &d).then_some(sep.len() + n)
                })
            }
            Format::Jsonl => rest
                .iter()
                .position(|&b| b == b'\n')
                .and_then(|n| row_matches(&rest[..n], &r, &d).then_some(n + 1)),
        };
        match len {
            Some(len) => at += len,
            None => return (i, at),
        }
    }
    (list.len(), at)
}

/// Whether `line` is a whole JSON row naming this pair with a numeric score.
fn row_matches(line: &[u8], r: &str, d: &str) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return false;
    };
    v["ref"] == r && v["dist"] == d && v["score"].is_number()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cut of a finished file keeps exactly the rows wholly before the cut, and ends
    /// where the last of them ends; names that need quoting (a comma, a quote, a newline)
    /// included.
    #[test]
    fn every_cut_keeps_the_whole_rows_before_it() {
        let list: Vec<(PathBuf, PathBuf)> = [
            ("a.png", "b.png"),
            ("with,comma.png", "with\"quote.png"),
            ("new\nline.png", "b.png"),
            ("c.png", "d.png"),
        ]
        .iter()
        .map(|(r, d)| (PathBuf::from(r), PathBuf::from(d)))
        .collect();
        for format in [Format::Csv, Format::Json, Format::Jsonl] {
            let mut bytes = match format {
                Format::Csv => CSV_HEADER.to_vec(),
                Format::Json => b"[".to_vec(),
                Format::Jsonl => Vec::new(),
            };
            let start = bytes.len();
            // Where each row's bytes end (for JSON: at its closing brace).
            let mut ends = Vec::new();
            for (i, (r, d)) in list.iter().enumerate() {
                bytes.extend(row_bytes(format, i, r, d, 1.0 + i as f64 / 3.0));
                ends.push(bytes.len());
            }
            if format == Format::Json {
                bytes.extend_from_slice(b"\n]\n");
            }
            for cut in 0..=bytes.len() {
                let (kept, end) = kept_rows(&bytes[..cut], format, &list);
                let whole = ends.iter().filter(|&&e| e <= cut).count();
                let want_end = match whole {
                    0 if cut < start => 0,
                    0 => start,
                    n => ends[n - 1],
                };
                assert_eq!((kept, end), (whole, want_end), "{format:?} cut at {cut}");
            }
            // A row naming another pair ends what is kept.
            let mut other = list.clone();
            other[2].1 = PathBuf::from("other.png");
            assert_eq!(
                kept_rows(&bytes, format, &other),
                (2, ends[1]),
                "{format:?}"
            );
        }
    }
}
