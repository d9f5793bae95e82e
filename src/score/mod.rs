//! `asna score`: predicted MOS for one pair, or for a list of pairs streamed through the GPU in
//! batches (decoding on background threads), written as CSV, JSON or JSON lines as they are
//! scored; `--resume` finishes a file a killed run left; `--shard K/N` splits a large list
//! across the jobs of a cluster array without any coordinator.

mod list;
pub mod rows;

pub use list::{pairs_from_dirs, read_pair_list};

use crate::api::Model;
use crate::data::load_pair_at_least;
use crate::gpu::Gpu;
use crate::model::asna::SIZE;
use crate::scorer::Precision;
use anyhow::{bail, Result};
use rows::{Rows, RunRecord};
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    /// One JSON object per line
    Jsonl,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
        }
    }
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
    /// Output file, written as pairs are scored (beside it FILE.resume.json records what
    /// --resume checks); default stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Finish the --out file a stopped run left: keep its complete rows, score the rest
    #[arg(long, requires = "out")]
    pub resume: bool,
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

pub fn run(gpu: Rc<Gpu>, args: &ScoreArgs) -> Result<()> {
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
    let mut builder = Model::builder()
        .precision(args.precision)
        .tta(args.tta)
        .batch(args.batch);
    for w in &args.weights {
        builder = builder.weights(w);
    }
    let model = builder.build_on(gpu)?;

    // A single pair is decoded first, so that the kernels prepared are those of its windows.
    let first = if single {
        Some(load_pair_at_least(&list[0].0, &list[0].1, SIZE as u32)?)
    } else {
        None
    };
    let windows = match &first {
        Some((r, _)) => model.windows_of(r.width(), r.height()),
        None => model.batch(),
    };
    crate::progress::show_kernel_compilation(&model, windows, args.quiet);
    if let (Some((r, d)), true) = (
        &first,
        args.out.is_none() && args.map.is_none() && args.format == Format::Csv,
    ) {
        println!("{:.4}", model.score(r, d)?);
        return Ok(());
    }
    if let Some(map_path) = &args.map {
        if !single {
            bail!("--map needs a single pair (REF DIST)");
        }
        let (r, d) = first.as_ref().expect("a single pair, decoded above");
        let map = model.quality_map(r, d)?;
        crate::plot::quality_map_png(
            map_path,
            d.as_raw(),
            d.width(),
            d.height(),
            &map.values,
            d.width(),
            d.height(),
            "feature difference",
            false,
        )?;
        let s = model.score(r, d)?;
        if args.out.is_none() {
            println!("{s:.4}");
            eprintln!("map written to {}", map_path.display());
            return Ok(());
        }
    }

    let (mut out, done) = match &args.out {
        None => (Rows::stdout(args.format)?, 0),
        Some(path) => {
            let record = RunRecord {
                version: rows::RECORD_VERSION,
                asna_version: env!("CARGO_PKG_VERSION").into(),
                format: args.format.name().into(),
                pairs: list.len(),
                list: rows::list_digest(&list),
                weights: model
                    .models()
                    .iter()
                    .map(|m| format!("{:016x}", m.digest))
                    .collect(),
                tta: args.tta,
                precision: format!("{:?}", args.precision).to_lowercase(),
                batch: model.batch(),
                shard: args.shard.map(|s| format!("{}/{}", s.index, s.count)),
                adapter: model.adapter(),
                complete: false,
            };
            if args.resume {
                Rows::resume(path, args.format, record, &list)?
            } else {
                (Rows::create(path, args.format, record)?, 0)
            }
        }
    };
    if args.resume && !args.quiet {
        eprintln!(
            "{}: {done} of {} pairs already scored",
            args.out.as_deref().unwrap_or(Path::new("")).display(),
            list.len()
        );
    }
    let bar = crate::progress::bar(
        list.len() as u64,
        !args.quiet && list.len() > 1,
        crate::progress::PAIRS,
    );
    bar.set_position(done as u64);
    bar.reset_eta();
    let rest = &list[done..];
    let scored = model.score_file_chunks(rest, |start, scores| {
        for (s, (r, d)) in scores.iter().zip(&rest[start..]) {
            out.row(r, d, *s)?;
        }
        out.flush()?;
        bar.inc(scores.len() as u64);
        Ok(())
    });
    bar.finish_and_clear();
    if let (Err(e), Some(path), true) = (&scored, &args.out, out.in_file()) {
        bail!(
            "{}; {} holds the pairs scored before it: run the same command with --resume to \
             finish it",
            crate::one_line(e),
            path.display()
        );
    }
    scored?;
    out.finish()
}
