//! `asna eval`: scores a labelled dataset and reports how well the scores agree with the human
//! labels (PLCC, SRCC, KRCC, RMSE and PLCC after the 4-parameter logistic mapping), with PSNR,
//! SSIM, MS-SSIM and GMSD computed on the GPU for the same pairs as baselines in the same table
//! (GMSD negated, so that every row rises with quality).

use crate::data::{self, DatasetFormat, Direction};
use crate::gpu::Gpu;
use crate::metrics::{correlations, fit_logistic4, Correlations};
use crate::model::asna::SIZE;

use crate::ops::quality;
use crate::scorer::Precision;
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use std::rc::Rc;

// `asna eval`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Dataset format: pipal, kadid, tid2013, tid2008, csv
    #[arg(long)]
    pub dataset: String,
    /// Dataset root directory
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Label file (csv format; default ROOT/labels.csv)
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Whether labels rise (higher) or fall (lower) with quality; default per dataset
    #[arg(long)]
    pub direction: Option<String>,
    /// Model file(s); default: the embedded model
    #[arg(long, value_name = "FILE")]
    pub weights: Vec<PathBuf>,
    /// Pairs (288x288 windows) per GPU batch (1-4096)
    #[arg(long, default_value_t = 16, value_parser = |s: &str| crate::options::between::<usize>("--batch", s, 1.0, 4096.0))]
    pub batch: usize,
    /// Average over test-time variants
    #[arg(long)]
    pub tta: bool,
    /// Scatter plot of predicted against true scores
    #[arg(long, value_name = "OUT.png")]
    pub plot: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Only the first N pairs
    #[arg(long, value_name = "N", value_parser = |s: &str| crate::options::between::<usize>("--limit", s, 1.0, 1e15))]
    pub limit: Option<usize>,
    /// Only the baselines (PSNR, SSIM, MS-SSIM, GMSD), without a model
    #[arg(long)]
    pub baselines_only: bool,
    /// Storage precision of the model's activations and weights (f16 needs shader-f16)
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

pub struct EvalReport {
    pub rows: Vec<(String, Correlations)>,
    pub predictions: Vec<f64>,
    pub truth: Vec<f64>,
}

fn row_json(name: &str, c: &Correlations) -> serde_json::Value {
    serde_json::json!({"method": name, "n": c.n, "plcc": c.plcc, "srcc": c.srcc, "krcc": c.krcc, "rmse": c.rmse, "plcc_logistic": c.plcc_logistic})
}

pub fn print_table(rows: &[(String, Correlations)]) {
    println!(
        "{:<8} {:>6} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "method", "pairs", "PLCC", "SRCC", "KRCC", "RMSE", "PLCC(log)"
    );
    for (name, c) in rows {
        println!(
            "{:<8} {:>6} {:>8.4} {:>8.4} {:>8.4} {:>9.4} {:>10.4}",
            name, c.n, c.plcc, c.srcc, c.krcc, c.rmse, c.plcc_logistic
        );
    }
}

/// The baselines' rows of the table, each rising with quality (GMSD, lower for better images,
/// enters negated): PSNR, SSIM, MS-SSIM, GMSD.
pub fn baseline_rows(b: &[quality::Baselines], truth: &[f64]) -> Vec<(String, Correlations)> {
    let column = |f: fn(&quality::Baselines) -> f64| b.iter().map(f).collect::<Vec<f64>>();
    vec![
        ("PSNR".into(), correlations(&column(|b| b.psnr), truth)),
        ("SSIM".into(), correlations(&column(|b| b.ssim), truth)),
        (
            "MS-SSIM".into(),
            correlations(&column(|b| b.ms_ssim), truth),
        ),
        ("GMSD".into(), correlations(&column(|b| -b.gmsd), truth)),
    ]
}

pub fn run(shared_gpu: Rc<Gpu>, args: &EvalArgs) -> Result<EvalReport> {
    let gpu: &Gpu = &shared_gpu;
    let format: DatasetFormat = args
        .dataset
        .parse()
        .map_err(|e| anyhow!("--dataset: {e}"))?;
    let direction = match &args.direction {
        Some(d) => Some(
            d.parse::<Direction>()
                .map_err(|_| anyhow!("--direction must be \"higher\" or \"lower\""))?,
        ),
        None => None,
    };
    crate::scorer::check_precision(gpu, args.precision.dtype())?;
    let ds = data::open_dataset(format, &args.root, args.labels.as_deref(), direction)?;
    let mut pairs = ds.pairs.clone();
    if let Some(l) = args.limit {
        pairs.truncate(l);
    }
    if let Some(plot) = &args.plot {
        crate::files::refuse_overwriting_inputs(
            &[("--plot", plot.as_path())],
            pairs
                .iter()
                .flat_map(|p| [p.ref_path.as_path(), p.dist_path.as_path()])
                .chain(std::iter::once(ds.labels_file.as_path()))
                .chain(args.weights.iter().map(|w| w.as_path())),
        )?;
    }
    let model = if args.baselines_only {
        None
    } else {
        let mut builder = crate::Model::builder()
            .precision(args.precision)
            .tta(args.tta)
            .batch(args.batch);
        for w in &args.weights {
            builder = builder.weights(w);
        }
        Some(builder.build_on(shared_gpu.clone())?)
    };
    let batch = model
        .as_ref()
        .map_or(crate::scorer::max_batch(gpu, args.batch), |m| m.batch());
    if let Some(m) = &model {
        crate::progress::show_kernel_compilation(m, m.batch(), args.quiet);
    }
    let bar = crate::progress::bar(pairs.len() as u64, !args.quiet, crate::progress::PAIRS);
    let list: Vec<(PathBuf, PathBuf)> = pairs
        .iter()
        .map(|p| (p.ref_path.clone(), p.dist_path.clone()))
        .collect();
    let mut decoded = data::decode_pairs_in_background(list, SIZE as u32, batch * 8);
    let mut pred = Vec::new();
    let mut baselines = Vec::with_capacity(pairs.len());
    let chunk = batch * 4;
    let mut done = 0;
    while done < pairs.len() {
        let imgs = data::next_chunk(&mut decoded, chunk)?;
        if imgs.is_empty() {
            anyhow::bail!("image decoding ended before pair {}", done + 1);
        }
        let end = done + imgs.len();
        if let Some(m) = &model {
            pred.extend(m.score_batch(&imgs)?);
        }
        for (r, d) in &imgs {
            baselines.push(quality::baselines(gpu, r, d)?);
        }
        bar.inc((end - done) as u64);
        done = end;
    }
    bar.finish_and_clear();
    // Everything compared as "higher is better": labels that fall with quality are negated.
    let sign = if ds.direction == Direction::LowerIsBetter {
        -1.0
    } else {
        1.0
    };
    let truth: Vec<f64> = pairs.iter().map(|p| sign * p.score).collect();
    let flip = model
        .as_ref()
        .is_some_and(|m| m.scale().direction == Direction::LowerIsBetter);
    let pred_up: Vec<f64> = pred.iter().map(|v| if flip { -v } else { *v }).collect();
    let mut rows = Vec::new();
    if !args.baselines_only {
        rows.push(("ASNA".to_string(), correlations(&pred_up, &truth)));
    }
    rows.extend(baseline_rows(&baselines, &truth));
    if let Some(plot) = args.plot.as_ref().filter(|_| !args.baselines_only) {
        let f = fit_logistic4(&pred_up, &truth);
        let c = &rows[0].1;
        let title = format!("ASNA  PLCC {:.3}  SRCC {:.3}  n {}", c.plcc, c.srcc, c.n);
        crate::plot::scatter_png_with_curve(
            plot,
            &pred_up,
            &truth,
            "predicted score",
            "label",
            &title,
            Some(&|x| f.eval(x)),
        )?;
    }
    if args.json {
        let v = serde_json::json!({"dataset": ds.format.as_str(), "labels": ds.labels_file.display().to_string(), "rows": rows.iter().map(|(n, c)| row_json(n, c)).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&rows);
    }
    Ok(EvalReport {
        rows,
        predictions: pred,
        truth,
    })
}
