//! `asna tune`: finds the fastest convolution configuration for every shape the model uses on
//! this adapter and stores the winners in the tuning cache (src/gpu/tuning.rs), where every
//! later run on the same adapter and driver picks them up.
//!
//! The model's shapes are collected by running one scoring forward pass and/or one training
//! step with the shape recorder on; each shape is then timed alone at the requested batch for
//! its default configuration and every candidate (GPU time from timestamp queries where the
//! adapter has them, wall time otherwise; the best of `reps` runs).

use crate::autograd::Tape;
use crate::gpu::tuning;
use crate::gpu::{DType, Gpu};
use crate::model::asna::{self, BnContext, Bound, SIZE};
use crate::model::params::ParamStore;
use crate::ops::conv::policy::{pick_winner, Seen, TunedKernel};
use crate::ops::conv::{self, ConvGeom, Product, TileConfig};
use crate::ops::Act;
use crate::optim::{optimiser_step, Adam};
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Score,
    Train,
    All,
}

// `asna tune`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Pairs per batch to time at [default: 16 on GPUs, 1 on CPU drivers]
    #[arg(long, value_parser = |s: &str| crate::options::between::<usize>("--batch", s, 1.0, 4096.0))]
    pub batch: Option<usize>,
    /// Shapes of: score, train or all
    #[arg(long, value_enum, default_value = "all")]
    pub workload: Workload,
    /// Tune only the N most expensive shapes
    #[arg(long, value_name = "N", value_parser = |s: &str| crate::options::between::<usize>("--limit", s, 1.0, 1e6))]
    pub limit: Option<usize>,
    /// Timed runs per configuration (the best counts)
    #[arg(long, default_value_t = 3, value_parser = |s: &str| crate::options::between::<usize>("--reps", s, 1.0, 1000.0))]
    pub reps: usize,
    /// Print the cached table for this adapter and exit
    #[arg(long)]
    pub show: bool,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `asna tune`: tunes and reports, or with --show prints the cached table.
pub fn run_command(gpu: &Gpu, cli: &TuneArgs) -> Result<()> {
    if cli.show {
        println!("{}", serde_json::to_string_pretty(&show(gpu))?);
        return Ok(());
    }
    let opts = TuneOptions {
        batch: cli
            .batch
            .unwrap_or_else(|| gpu.kernels.borrow().tuning_batch())
            .max(1),
        workload: cli.workload,
        limit: cli.limit,
        reps: cli.reps.max(1),
        progress: !cli.json,
    };
    let results = run(gpu, &opts)?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(gpu, &results))?
        );
    } else {
        print_report(gpu, &results);
    }
    Ok(())
}

/// This adapter's cached table (`asna tune --show`).
pub fn show(gpu: &Gpu) -> serde_json::Value {
    serde_json::json!({
        "adapter": tuning::adapter_key(&gpu.info),
        "cache": tuning::cache_path().map(|p| p.display().to_string()),
        "shapes": gpu.kernels.borrow().tuned(),
    })
}

/// How one tuning run goes.
pub struct TuneOptions {
    /// Pairs per batch the shapes are timed at.
    pub batch: usize,
    pub workload: Workload,
    /// Tune only the most expensive shapes (by FLOPs times uses per step).
    pub limit: Option<usize>,
    /// Timed runs per configuration (the best counts).
    pub reps: usize,
    pub progress: bool,
}

/// One tuned shape.
#[derive(Clone, Debug)]
pub struct ShapeResult {
    pub key: String,
    pub calls: usize,
    pub images: usize,
    pub default: TileConfig,
    pub default_s: f64,
    pub best: TileConfig,
    pub best_s: f64,
    /// Distinct configurations timed, the default included (candidates that resolve to the
    /// same kernel count once).
    pub candidates: usize,
}

/// Every convolution shape one scoring pass and/or one training step dispatches, recorded at
/// one pair per batch (images per shape: 2 for the Siamese encoder, 1 after it).
pub fn collect_shapes(gpu: &Gpu, workload: Workload) -> Result<BTreeMap<String, Seen>> {
    let mut store = ParamStore::init(gpu, &asna::specs(), 0);
    let mut adam = Adam::new(Default::default());
    let mut rng = Rng::new(7);
    let pixels: Vec<u8> = (0..2 * SIZE * SIZE * 3)
        .map(|_| rng.below(256) as u8)
        .collect();
    let (ref_px, dist_px) = pixels.split_at(SIZE * SIZE * 3);
    gpu.kernels.borrow_mut().start_recording();
    let mut run = || -> Result<()> {
        if workload != Workload::Train {
            let z = asna::predict(gpu, &store, ref_px, dist_px, 1, None);
            gpu.download(&z)?;
        }
        if workload != Workload::Score {
            let mut tape = Tape::new(gpu);
            let params = Bound::new(&mut tape, &store, true);
            let x = asna::stacked_input(&mut tape, ref_px, dist_px, 1, SIZE, DType::F32);
            let mut bn = BnContext::train(&store);
            let pred = asna::forward(&mut tape, &params, &mut bn, &x, None);
            let bn_updates = std::mem::take(&mut bn.updates);
            let target = tape.leaf(gpu.zeros(&[1]), false);
            let loss = tape.mse(&pred, &target);
            tape.backward(&loss);
            gpu.download(&loss.t)?;
            // Any rate will do: the step is run for the shapes it dispatches.
            optimiser_step(gpu, tape, &params, &mut store, &mut adam, bn_updates, 1e-4);
        }
        Ok(())
    };
    let result = run();
    let seen = gpu.kernels.borrow_mut().take_recording();
    result?;
    Ok(seen)
}

/// Operands of one shape, random but fixed.
pub struct Operands {
    pub geom: ConvGeom,
    x: crate::gpu::Tensor,
    w: crate::gpu::Tensor,
    b: crate::gpu::Tensor,
    dz: crate::gpu::Tensor,
}

impl Operands {
    pub fn new(gpu: &Gpu, geom: ConvGeom, seed: u64) -> Operands {
        let mut rng = Rng::new(seed);
        let mut random = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.1).collect();
            gpu.upload(shape, &v)
        };
        let g = geom;
        Operands {
            x: random(&[g.n, g.h, g.w, g.cin]),
            w: random(&[g.kh, g.kw, g.cin, g.cout]),
            b: random(&[g.cout]),
            dz: random(&g.out_shape()),
            geom,
        }
    }

    /// Records one run of `product` with `cfg`; the result goes back to the pool.
    pub fn run(&self, gpu: &Gpu, product: Product, cfg: TileConfig) {
        let g = &self.geom;
        let _ = match product {
            Product::Forward => conv::forward_with(
                gpu,
                &self.x,
                &self.w,
                Some(&self.b),
                g.stride,
                Act::LeakyRelu,
                cfg,
            ),
            Product::GradInput => conv::backward_input_with(gpu, &self.dz, &self.w, g, cfg),
            Product::GradWeight => conv::backward_weight_with(gpu, &self.x, &self.dz, g, cfg),
        };
    }
}

/// Seconds of one run of `product` with `cfg` (the best of `reps`, after a warm-up run that
/// also compiles the pipeline).
pub fn time_config(
    gpu: &Gpu,
    ops: &Operands,
    product: Product,
    cfg: TileConfig,
    reps: usize,
) -> Result<f64> {
    ops.run(gpu, product, cfg);
    gpu.sync()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        best = best.min(gpu.time_run(|| {
            ops.run(gpu, product, cfg);
            Ok(())
        })?);
    }
    Ok(best)
}

/// Times the default and every candidate for one shape and keeps the winner (`pick_winner`).
pub fn tune_shape(
    gpu: &Gpu,
    key: &str,
    seen: Seen,
    batch: usize,
    reps: usize,
) -> Result<Option<ShapeResult>> {
    let images = seen.images.max(1) * batch.max(1);
    let Some((product, geom)) = conv::parse_tune_key(key, images) else {
        return Ok(None);
    };
    let (_, gn, _) = product.gemm(&geom);
    let ops = Operands::new(gpu, geom, 11);
    // Each candidate as it would run (`ConvFamily::resolve`): one a family hands to another
    // family or a narrower tile is timed, reported and cached as what runs, and once.
    let resolve = |c: TileConfig| {
        c.family
            .resolve(product, &geom, c, product != Product::Forward)
    };
    let default = resolve(gpu.kernels.borrow().default_config(product, &geom));
    let default_s = time_config(gpu, &ops, product, default, reps)?;
    let candidates = gpu.kernels.borrow().candidates(gn);
    let mut timed: Vec<(TileConfig, f64)> = Vec::with_capacity(candidates.len());
    for &c in &candidates {
        let c = resolve(c);
        if c != default && timed.iter().all(|(t, _)| *t != c) {
            timed.push((c, time_config(gpu, &ops, product, c, reps)?));
        }
    }
    let (best, best_s) = pick_winner((default, default_s), &timed);
    Ok(Some(ShapeResult {
        key: key.to_string(),
        calls: seen.calls,
        images,
        default,
        default_s,
        best,
        best_s,
        candidates: timed.len() + 1,
    }))
}

/// The shapes to tune, most expensive first (FLOPs per step, counting repeated uses).
pub fn order_shapes(shapes: &BTreeMap<String, Seen>) -> Vec<(String, Seen)> {
    let cost = |key: &str, seen: &Seen| {
        conv::parse_tune_key(key, seen.images.max(1))
            .map(|(_, g)| g.flops() * seen.calls as f64)
            .unwrap_or(0.0)
    };
    let mut v: Vec<(String, Seen)> = shapes.iter().map(|(k, s)| (k.clone(), *s)).collect();
    v.sort_by(|a, b| cost(&b.0, &b.1).total_cmp(&cost(&a.0, &a.1)));
    v
}

/// Tunes the model's shapes, merges the winners into this adapter's cache entry and saves it.
pub fn run(gpu: &Gpu, args: &TuneOptions) -> Result<Vec<ShapeResult>> {
    let Some(path) = tuning::cache_path() else {
        bail!("no place for the tuning cache: set ASNA_TUNE_CACHE or HOME");
    };
    // Measure from the defaults, whatever an earlier run chose.
    let was = gpu.kernels.borrow_mut().set_use_tuned(false);
    let result = tune_all(gpu, args);
    gpu.kernels.borrow_mut().set_use_tuned(was);
    let results = result?;
    let adapter = tuning::adapter_key(&gpu.info);
    let mut table = tuning::load(&path, &adapter).unwrap_or_default();
    for r in &results {
        table.insert(r.key.clone(), to_entry(r));
    }
    tuning::save(&path, &adapter, &table)?;
    gpu.kernels.borrow_mut().set_tuned(table);
    Ok(results)
}

fn to_entry(r: &ShapeResult) -> TunedKernel {
    r.best.to_tuned(r.images, r.best_s * 1e6, r.default_s * 1e6)
}

fn tune_all(gpu: &Gpu, args: &TuneOptions) -> Result<Vec<ShapeResult>> {
    if args.progress {
        eprintln!("collecting the model's convolution shapes ...");
    }
    let shapes = collect_shapes(gpu, args.workload)?;
    let mut order = order_shapes(&shapes);
    if let Some(limit) = args.limit {
        order.truncate(limit);
    }
    let bar = crate::progress::bar(order.len() as u64, args.progress, crate::progress::ITEMS);
    let mut results = Vec::new();
    for (key, seen) in order {
        bar.set_message(key.clone());
        if let Some(r) = tune_shape(gpu, &key, seen, args.batch, args.reps)? {
            results.push(r);
        }
        gpu.trim_pool();
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(results)
}

/// The report: one row per shape and the estimated convolution time per step.
pub fn print_report(gpu: &Gpu, results: &[ShapeResult]) {
    eprintln!(
        "{:<36} {:>5} {:>11} {:>11} {:>7}  best configuration",
        "shape", "uses", "default ms", "tuned ms", "speedup"
    );
    let (mut before, mut after) = (0.0, 0.0);
    for r in results {
        before += r.default_s * r.calls as f64;
        after += r.best_s * r.calls as f64;
        eprintln!(
            "{:<36} {:>5} {:>11.3} {:>11.3} {:>6.2}x  {}",
            r.key,
            r.calls,
            r.default_s * 1e3,
            r.best_s * 1e3,
            r.default_s / r.best_s.max(1e-12),
            if r.best == r.default {
                "(default)".to_string()
            } else {
                r.best.describe()
            }
        );
    }
    eprintln!(
        "convolution time per pass on {}: {:.2} ms default, {:.2} ms tuned ({:.2}x)",
        gpu.info.name,
        before * 1e3,
        after * 1e3,
        before / after.max(1e-12)
    );
    if let Some(p) = tuning::cache_path() {
        eprintln!("tuning cache: {}", p.display());
    }
}

pub fn report_json(gpu: &Gpu, results: &[ShapeResult]) -> serde_json::Value {
    serde_json::json!({
        "adapter": gpu.describe(),
        "cache": tuning::cache_path().map(|p| p.display().to_string()),
        "shapes": results.iter().map(|r| serde_json::json!({
            "shape": r.key, "uses": r.calls, "images": r.images,
            "default_ms": r.default_s * 1e3, "tuned_ms": r.best_s * 1e3,
            "candidates": r.candidates, "default": r.default.describe(), "best": r.best.describe(),
        })).collect::<Vec<_>>(),
    })
}
