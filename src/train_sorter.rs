//! `asna train-sorter`: trains the surrogate ranking network on synthetic score vectors (half
//! N(0, 2), half U(-10, 10)) against their true 1-based ranks with mean absolute error, then
//! measures it on held-out vectors: the mean absolute rank error, and how far the Spearman
//! correlation computed from its approximate ranks is from the true Spearman correlation.

use crate::autograd::Tape;
use crate::gpu::Gpu;
use crate::model::asna::{BnContext, Bound, SPEC_VERSION};
use crate::model::checkpoint;
use crate::model::params::ParamStore;
use crate::model::sorter::{self, LENGTH};
use crate::ops::adam::AdamConfig;
use crate::optim::{optimiser_step, Adam};
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;

// `asna train-sorter`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct SorterArgs {
    /// Output file
    #[arg(long, default_value = "sorter.safetensors")]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub config: SorterConfig,
    #[arg(long)]
    pub quiet: bool,
}

/// `asna train-sorter`: trains, prints the held-out measures as JSON and a summary line.
pub fn run(gpu: &Gpu, args: &SorterArgs) -> Result<()> {
    let r = train(gpu, &args.config, &args.out, !args.quiet)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    eprintln!(
        "sorter written to {} ({} on {:.0} s)",
        args.out.display(),
        gpu.info.name,
        r.seconds
    );
    Ok(())
}

/// What determines a sorter's training, with the command line's defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct SorterConfig {
    #[arg(long, default_value_t = 2000, value_parser = |s: &str| crate::options::between::<u64>("--steps", s, 1.0, 1e9))]
    pub steps: u64,
    #[arg(long, default_value_t = 1024, value_parser = |s: &str| crate::options::between::<usize>("--batch", s, 1.0, 65536.0))]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = |s: &str| crate::options::positive::<f32>("--lr", s, 1.0), allow_negative_numbers = true)]
    pub lr: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Held-out vectors for the final measures
    #[arg(long, default_value_t = 4096, value_parser = |s: &str| crate::options::between::<usize>("--eval-vectors", s, 1.0, 1e7))]
    pub eval_vectors: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SorterReport {
    pub steps: u64,
    pub final_train_mae: f32,
    pub mean_abs_rank_error: f64,
    pub mean_abs_spearman_error: f64,
    pub seconds: f64,
}

/// `count` vectors of LENGTH scores: the first half N(0, 2), the rest U(-10, 10).
pub fn synthetic_vectors(rng: &mut Rng, count: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(count * LENGTH);
    for i in 0..count {
        for _ in 0..LENGTH {
            v.push(if i < count / 2 {
                (rng.normal() * 2.0) as f32
            } else {
                rng.range(-10.0, 10.0) as f32
            });
        }
    }
    v
}

/// 1-based ranks of each row (average ranks for ties, as scipy's rankdata).
pub fn true_ranks(v: &[f32]) -> Vec<f32> {
    v.chunks(LENGTH)
        .flat_map(|row| {
            crate::metrics::rankdata(&row.iter().map(|x| *x as f64).collect::<Vec<_>>())
                .into_iter()
                .map(|r| r as f32)
        })
        .collect()
}

/// Evaluation-mode approximate ranks of vectors [count, LENGTH].
pub fn predict(gpu: &Gpu, store: &ParamStore, v: &[f32]) -> Result<Vec<f32>> {
    let count = v.len() / LENGTH;
    let mut tape = Tape::inference(gpu);
    let params = Bound::new(&mut tape, store, false);
    let x = tape.leaf(gpu.upload(&[count, LENGTH], v), false);
    let mut bn = BnContext::eval(store);
    gpu.download(&sorter::forward(&mut tape, &params, &mut bn, &x).t)
}

/// Held-out measures: mean |approximate rank - true rank|, and mean |surrogate Spearman - true
/// Spearman| over pairs (y, p = y + noise of several strengths).
pub fn evaluate(gpu: &Gpu, store: &ParamStore, seed: u64, count: usize) -> Result<(f64, f64)> {
    let mut rng = Rng::derive(seed, 0xE7A1);
    let y = synthetic_vectors(&mut rng, count);
    let ranks = true_ranks(&y);
    let approx = predict(gpu, store, &y)?;
    let rank_err = approx
        .iter()
        .zip(&ranks)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / ranks.len() as f64;
    let p: Vec<f32> = y
        .chunks(LENGTH)
        .enumerate()
        .flat_map(|(i, row)| {
            let noise = [0.1, 0.5, 1.0, 3.0][i % 4];
            row.iter()
                .map(|v| v + (rng.normal() * noise) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let approx_p = predict(gpu, store, &p)?;
    let ranks_p = true_ranks(&p);
    let mut err = 0.0;
    for i in 0..count {
        let s = i * LENGTH..(i + 1) * LENGTH;
        let f = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<f64>>();
        let truth = crate::metrics::plcc(&f(&ranks[s.clone()]), &f(&ranks_p[s.clone()]));
        let surrogate = crate::metrics::plcc(&f(&approx[s.clone()]), &f(&approx_p[s]));
        err += (surrogate - truth).abs();
    }
    Ok((rank_err, err / count as f64))
}

pub fn train(gpu: &Gpu, cfg: &SorterConfig, out: &Path, progress: bool) -> Result<SorterReport> {
    if cfg.batch < 2 {
        bail!("--batch must be at least 2 (batch normalisation needs a batch)");
    }
    let started = std::time::Instant::now();
    let mut store = ParamStore::init(gpu, &sorter::specs(), cfg.seed);
    let mut adam = Adam::new(AdamConfig {
        lr: cfg.lr,
        ..Default::default()
    });
    let mut rng = Rng::new(cfg.seed);
    let bar = crate::progress::bar(cfg.steps, progress, crate::progress::STEPS);
    let mut last = f32::NAN;
    for step in 0..cfg.steps {
        let v = synthetic_vectors(&mut rng, cfg.batch);
        let ranks = true_ranks(&v);
        let mut tape = Tape::new(gpu);
        let params = Bound::new(&mut tape, &store, true);
        let x = tape.leaf(gpu.upload(&[cfg.batch, LENGTH], &v), false);
        let t = tape.leaf(gpu.upload(&[cfg.batch, LENGTH], &ranks), false);
        let mut bn = BnContext::train(&store);
        let out = sorter::forward(&mut tape, &params, &mut bn, &x);
        let bn_updates = std::mem::take(&mut bn.updates);
        let loss = tape.mae(&out, &t);
        tape.backward(&loss);
        if step % 10 == 0 || step + 1 == cfg.steps {
            last = gpu.download_scalar(&loss.t)?;
            if !last.is_finite() {
                bail!("step {}: the loss is not finite", step + 1);
            }
            bar.set_message(format!("mae {last:.3}"));
        }
        optimiser_step(
            gpu, tape, &params, &mut store, &mut adam, bn_updates, cfg.lr,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (rank_err, spearman_err) = evaluate(gpu, &store, cfg.seed, cfg.eval_vectors)?;
    let report = SorterReport {
        steps: cfg.steps,
        final_train_mae: last,
        mean_abs_rank_error: rank_err,
        mean_abs_spearman_error: spearman_err,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut meta = BTreeMap::new();
    meta.insert("architecture".into(), sorter::ARCHITECTURE.to_string());
    meta.insert("spec_version".into(), SPEC_VERSION.to_string());
    meta.insert("length".into(), LENGTH.to_string());
    meta.insert(
        "trained_by".into(),
        format!(
            "asna train-sorter --steps {} --batch {} --lr {} --seed {}",
            cfg.steps, cfg.batch, cfg.lr, cfg.seed
        ),
    );
    meta.insert("adapter".into(), gpu.describe());
    meta.insert("report".into(), serde_json::to_string(&report)?);
    checkpoint::save(gpu, out, &store, None, &meta)?;
    Ok(report)
}
