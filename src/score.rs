//! `asna score`: predicted MOS for one pair, or for a list of pairs streamed through the GPU in
//! batches (decoding on background threads), written as CSV or JSON; `--shard K/N` splits a
//! large list across the jobs of a cluster array without any coordinator.

use crate::data::{decode_pairs_in_background, load_pair_at_least};
use crate::files::AtomicFile;
use crate::gpu::Gpu;
use crate::model::asna::SIZE;
use crate::model::checkpoint::load_models;
use crate::scorer::{Precision, Scorer};
use anyhow::{anyhow, bail, Result};
use image::RgbImage;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard \"{s}\" must be K/N, e.g. 0/8"))?;
        let index: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("shard index \"{k}\" is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count \"{n}\" is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= K < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Every N-th item starting at K.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip(self.index)
            .step_by(self.count)
            .cloned()
            .collect()
    }
}

// `asna score`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["reference", "pairs", "ref_dir"])))]
pub struct ScoreArgs {
    /// Reference image (with DIST: score one pair)
    #[arg(value_name = "REF", requires = "distorted")]
    pub reference: Option<PathBuf>,
    /// Distorted image
    #[arg(value_name = "DIST")]
    pub distorted: Option<PathBuf>,
    /// CSV list of pairs with columns ref,dist (paths relative to the list)
    #[arg(long, value_name = "LIST.csv", conflicts_with_all = ["reference", "ref_dir"])]
    pub pairs: Option<PathBuf>,
    /// Directory of reference images (pairs are matched by file name with --dist-dir)
    #[arg(
        long,
        value_name = "DIR",
        requires = "dist_dir",
        conflicts_with = "reference"
    )]
    pub ref_dir: Option<PathBuf>,
    /// Directory of distorted images
    #[arg(long, value_name = "DIR", requires = "ref_dir")]
    pub dist_dir: Option<PathBuf>,
    /// Model file (.safetensors or a training run directory); repeat to average an
    /// ensemble. Default: the embedded model
    #[arg(long, value_name = "FILE")]
    pub weights: Vec<PathBuf>,
    /// Pairs (288x288 windows) per GPU batch (1-4096); capped by the adapter's largest binding
    #[arg(long, default_value_t = 16, value_parser = |s: &str| crate::options::between::<usize>("--batch", s, 1.0, 4096.0))]
    pub batch: usize,
    /// Average over the authors' test-time variants (rotations, flips, L scales)
    #[arg(long)]
    pub tta: bool,
    /// Write a degradation map of the pair to this PNG (same size as the input)
    #[arg(long, value_name = "OUT.png")]
    pub map: Option<PathBuf>,
    /// Output format for lists
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Output file (written atomically); default stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Score only every N-th pair starting at K (0-based), e.g. 3/16 for job 3 of 16
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Storage precision of the model's activations and weights (f16 needs shader-f16)
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

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

/// Loads a pair and checks it is large enough for the model, with errors naming the file.
fn load_scorable(r: &Path, d: &Path) -> Result<(RgbImage, RgbImage)> {
    load_pair_at_least(r, d, SIZE as u32)
}

/// Writes rows to an atomic file (it appears complete at the end, or not at all), or to
/// stdout.
struct Output {
    file: Option<AtomicFile>,
    w: Box<dyn Write>,
    format: Format,
    rows: usize,
}

impl Output {
    fn open(path: Option<&Path>, format: Format) -> Result<Output> {
        let file = path.map(AtomicFile::create).transpose()?;
        let w: Box<dyn Write> = match file {
            Some(_) => Box::new(std::io::sink()),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let mut o = Output {
            file,
            w,
            format,
            rows: 0,
        };
        match format {
            Format::Csv => writeln!(o.out(), "ref,dist,score")?,
            Format::Json => write!(o.out(), "[")?,
        }
        Ok(o)
    }
    fn out(&mut self) -> &mut dyn Write {
        match &mut self.file {
            Some(f) => f,
            None => &mut self.w,
        }
    }
    fn row(&mut self, r: &Path, d: &Path, score: f64) -> Result<()> {
        match self.format {
            Format::Csv => {
                let mut wtr = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(vec![]);
                wtr.write_record([
                    r.display().to_string(),
                    d.display().to_string(),
                    format!("{score:.6}"),
                ])?;
                let line = wtr.into_inner().map_err(|e| anyhow!("{e}"))?;
                self.out().write_all(&line)?;
            }
            Format::Json => {
                let sep = if self.rows == 0 { "\n" } else { ",\n" };
                let obj = serde_json::json!({"ref": r.display().to_string(), "dist": d.display().to_string(), "score": score});
                write!(self.out(), "{sep}  {obj}")?;
            }
        }
        self.rows += 1;
        Ok(())
    }
    fn finish(mut self) -> Result<()> {
        if self.format == Format::Json {
            writeln!(self.out(), "\n]")?;
        }
        match self.file.take() {
            Some(f) => f.commit(),
            None => Ok(self.w.flush()?),
        }
    }
}

pub fn run(gpu: &Gpu, args: &ScoreArgs) -> Result<()> {
    let list: Vec<(PathBuf, PathBuf)> = match (
        &args.reference,
        &args.distorted,
        &args.pairs,
        &args.ref_dir,
        &args.dist_dir,
    ) {
        (Some(r), Some(d), None, None, None) => vec![(r.clone(), d.clone())],
        (None, None, Some(p), None, None) => read_pair_list(p)?,
        (None, None, None, Some(a), Some(b)) => pairs_from_dirs(a, b)?,
        _ => bail!("give REF DIST, or --pairs LIST.csv, or --ref-dir A --dist-dir B"),
    };
    let outputs: Vec<(&str, &Path)> = [("--out", &args.out), ("--map", &args.map)]
        .into_iter()
        .filter_map(|(opt, p)| p.as_deref().map(|p| (opt, p)))
        .collect();
    crate::files::refuse_overwriting_inputs(
        &outputs,
        list.iter()
            .flat_map(|(r, d)| [r.as_path(), d.as_path()])
            .chain(args.pairs.as_deref())
            .chain(args.weights.iter().map(|w| w.as_path())),
    )?;
    let single = args.reference.is_some();
    let list = match args.shard {
        Some(s) => s.select(&list),
        None => list,
    };
    crate::scorer::check_precision(gpu, args.precision.dtype())?;
    let models = load_models(gpu, &args.weights)?;
    let scorer =
        Scorer::new(gpu, models, args.batch, args.tta).with_precision(args.precision.dtype())?;

    if single && args.out.is_none() && args.map.is_none() && args.format == Format::Csv {
        let (r, d) = load_scorable(&list[0].0, &list[0].1)?;
        let s = scorer.score_pairs(&[(r, d)], |_| {})?;
        println!("{:.4}", s[0]);
        return Ok(());
    }
    if let Some(map_path) = &args.map {
        if !single {
            bail!("--map needs a single pair (REF DIST)");
        }
        let (r, d) = load_scorable(&list[0].0, &list[0].1)?;
        let map = scorer.degradation_map(&r, &d)?;
        crate::plot::quality_map_png(
            map_path,
            d.as_raw(),
            d.width(),
            d.height(),
            &map,
            d.width(),
            d.height(),
            "feature difference",
            false,
        )?;
        let s = scorer.score_pairs(&[(r, d)], |_| {})?;
        if args.out.is_none() {
            println!("{:.4}", s[0]);
            eprintln!("map written to {}", map_path.display());
            return Ok(());
        }
    }

    let mut out = Output::open(args.out.as_deref(), args.format)?;
    let bar = crate::progress::bar(
        list.len() as u64,
        !args.quiet && list.len() > 1,
        crate::progress::PAIRS,
    );
    // Chunks of a few batches (and at most half the decoding budget): decoding of the next
    // chunk overlaps the GPU on this one.
    let chunk = scorer.batch * 4;
    let mut decoded = decode_pairs_in_background(list.clone(), SIZE as u32, chunk * 2);
    let mut start = 0;
    while start < list.len() {
        let imgs = crate::data::next_chunk(&mut decoded, chunk)?;
        let end = start + imgs.len();
        if imgs.is_empty() {
            bail!("image decoding ended before pair {}", start + 1);
        }
        let scores = scorer.score_pairs(&imgs, |_| {})?;
        for (i, s) in scores.iter().enumerate() {
            let (r, d) = &list[start + i];
            out.row(r, d, *s)?;
        }
        bar.inc((end - start) as u64);
        start = end;
    }
    bar.finish_and_clear();
    out.finish()
}
