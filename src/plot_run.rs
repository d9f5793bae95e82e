//! `asna plot-run`: a training run's learning curve. Reads the run's `metrics.jsonl` (one line
//! per validation) and `baselines.json` (the correlations of PSNR, SSIM, MS-SSIM and GMSD on the
//! same validation pairs; runs made before MS-SSIM and GMSD hold only the first two), draws validation PLCC and SRCC against steps with the baselines' SRCC as horizontal
//! lines, and prints the same numbers as a Markdown table. Needs no GPU.

use crate::plot::{line_chart_png, Level, Series};
use crate::run_dir::{BASELINES_FILE, METRICS_FILE};
use anyhow::{anyhow, bail, Result};
use image::Rgb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// `asna plot-run`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct PlotRunArgs {
    /// Run directory of `asna train` (holding metrics.jsonl)
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Where to write the PNG (default RUN_DIR/curve.png)
    #[arg(long, value_name = "OUT.png")]
    pub out: Option<PathBuf>,
}

/// One validation of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Validation {
    pub step: u64,
    pub epoch: Option<u64>,
    /// NaN when the predictions were constant (the file holds null).
    pub plcc: f64,
    pub srcc: f64,
}

/// The baselines' SRCC on the validation pairs, in the order of `BASELINE_METHODS`, for those
/// the file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baselines {
    pub srcc: Vec<(&'static str, f64)>,
    pub val_pairs: Option<u64>,
}

/// The baselines a run's `baselines.json` may hold: its key, the name shown, the chart colour.
pub const BASELINE_METHODS: [(&str, &str, Rgb<u8>); 4] = [
    ("psnr", "PSNR", Rgb([44, 160, 44])),
    ("ssim", "SSIM", Rgb([148, 103, 189])),
    ("ms_ssim", "MS-SSIM", Rgb([255, 127, 14])),
    ("gmsd", "GMSD", Rgb([127, 127, 127])),
];

/// The validations in `metrics.jsonl`, by step (a step logged twice, as after a resume that
/// repeated a validation, keeps its last line). Lines of runs without a validation set (no
/// "srcc") are skipped; a file with none is an error, as is a line that is not a JSON object
/// with a step.
pub fn read_metrics(path: &Path) -> Result<Vec<Validation>> {
    let src = path.display();
    let bytes = crate::files::read_bounded(path, crate::files::MAX_RUN_LOG_BYTES, "a metrics log")?;
    let text = String::from_utf8(bytes).map_err(|e| anyhow!("{src}: not UTF-8 text ({e})"))?;
    if text.trim().is_empty() {
        bail!("{src}: empty, no validation logged yet");
    }
    let mut by_step = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow!("{src}: line {}: not JSON ({e})", i + 1))?;
        let step = v["step"]
            .as_u64()
            .ok_or_else(|| anyhow!("{src}: line {}: no \"step\"", i + 1))?;
        if v.get("srcc").is_none() {
            continue;
        }
        let num = |k: &str| -> Result<f64> {
            match &v[k] {
                serde_json::Value::Null => Ok(f64::NAN),
                x => x
                    .as_f64()
                    .ok_or_else(|| anyhow!("{src}: line {}: \"{k}\" is not a number", i + 1)),
            }
        };
        by_step.insert(
            step,
            Validation {
                step,
                epoch: v["epoch"].as_u64(),
                plcc: num("plcc")?,
                srcc: num("srcc")?,
            },
        );
    }
    if by_step.is_empty() {
        bail!("{src}: no validation metrics (was the run trained without a validation set?)");
    }
    Ok(by_step.into_values().collect())
}

/// The baselines of a run directory; none when `baselines.json` is absent (runs made before
/// it existed), an error when it is unreadable.
pub fn read_baselines(run_dir: &Path) -> Result<Baselines> {
    let path = run_dir.join(BASELINES_FILE);
    if !path.exists() {
        return Ok(Baselines::default());
    }
    let src = path.display();
    let bytes =
        crate::files::read_bounded(&path, crate::files::MAX_RUN_LOG_BYTES, "a baselines file")?;
    let text = String::from_utf8(bytes).map_err(|e| anyhow!("{src}: not UTF-8 text ({e})"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow!("{src}: not JSON ({e})"))?;
    Ok(Baselines {
        srcc: BASELINE_METHODS
            .iter()
            .filter_map(|(key, name, _)| v[key]["srcc"].as_f64().map(|s| (*name, s)))
            .collect(),
        val_pairs: v["val_pairs"].as_u64(),
    })
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".into()
    }
}

fn diff(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if a.is_finite() && b.is_finite() => format!("{:+.3}", a - b),
        _ => "n/a".into(),
    }
}

/// The learning curve as a Markdown table: step, epoch, PLCC, SRCC and SRCC's margin over each
/// baseline's, then one row per baseline.
pub fn table(validations: &[Validation], baselines: &Baselines) -> String {
    let mut t = String::from("| step | epoch | PLCC | SRCC |");
    for (name, _) in &baselines.srcc {
        t.push_str(&format!(" SRCC - {name}'s |"));
    }
    t.push_str("\n|");
    t.push_str(&" --- |".repeat(4 + baselines.srcc.len()));
    t.push('\n');
    let blanks = " |".repeat(baselines.srcc.len());
    for v in validations {
        t.push_str(&format!(
            "| {} | {} | {} | {} |",
            v.step,
            v.epoch.map_or("-".into(), |e| e.to_string()),
            fmt(v.plcc),
            fmt(v.srcc),
        ));
        for (_, b) in &baselines.srcc {
            t.push_str(&format!(" {} |", diff(v.srcc, Some(*b))));
        }
        t.push('\n');
    }
    for (name, b) in &baselines.srcc {
        t.push_str(&format!("| {name} | | | {} |{blanks}\n", fmt(*b)));
    }
    t
}

/// `asna plot-run`: writes the curve and prints the table.
pub fn run(args: &PlotRunArgs) -> Result<()> {
    let validations = read_metrics(&args.run_dir.join(METRICS_FILE))?;
    let baselines = read_baselines(&args.run_dir)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("curve.png"));
    let inputs = [
        args.run_dir.join(METRICS_FILE),
        args.run_dir.join(BASELINES_FILE),
    ];
    crate::files::refuse_overwriting_inputs(
        &[("--out", out.as_path())],
        inputs.iter().map(|p| p.as_path()),
    )?;
    let plcc: Vec<(f64, f64)> = validations
        .iter()
        .map(|v| (v.step as f64, v.plcc))
        .collect();
    let srcc: Vec<(f64, f64)> = validations
        .iter()
        .map(|v| (v.step as f64, v.srcc))
        .collect();
    let series = [
        Series {
            label: "ASNA PLCC",
            points: &plcc,
            color: Rgb([31, 119, 180]),
        },
        Series {
            label: "ASNA SRCC",
            points: &srcc,
            color: Rgb([214, 39, 40]),
        },
    ];
    let labels: Vec<String> = baselines
        .srcc
        .iter()
        .map(|(name, _)| format!("{name} SRCC"))
        .collect();
    let levels: Vec<Level> = baselines
        .srcc
        .iter()
        .zip(&labels)
        .map(|((name, y), label)| Level {
            label,
            y: *y,
            color: BASELINE_METHODS
                .iter()
                .find(|m| m.1 == *name)
                .map_or(Rgb([0, 0, 0]), |m| m.2),
        })
        .collect();
    let title = match baselines.val_pairs {
        Some(n) => format!("validation, {n} pairs"),
        None => "validation".to_string(),
    };
    if validations
        .iter()
        .all(|v| !v.plcc.is_finite() && !v.srcc.is_finite())
    {
        bail!(
            "{}: every validation has undefined correlations (constant predictions); nothing to draw",
            args.run_dir.join(METRICS_FILE).display()
        );
    }
    line_chart_png(
        &out,
        &series,
        &levels,
        "training step",
        "correlation",
        &title,
    )?;
    if baselines.srcc.is_empty() {
        eprintln!(
            "note: {} absent; the curve has no baseline lines",
            args.run_dir.join(BASELINES_FILE).display()
        );
    }
    print!("{}", table(&validations, &baselines));
    eprintln!("learning curve written to {}", out.display());
    Ok(())
}
