//! `asna bench`: end-to-end scoring throughput (pairs/s at several batch sizes), training
//! steps/s at batch 16, peak GPU memory, and with `--profile` the GPU time of every kernel
//! from timestamp queries (share of the total, achieved GFLOP/s and GB/s).

use crate::data::Batch;
use crate::gpu::Gpu;
use crate::model::asna::{self, SIZE};
use crate::model::params::ParamStore;
use crate::model::sorter;
use crate::optim::Adam;
use crate::rng::Rng;
use anyhow::Result;
use std::time::Instant;

// `asna bench`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Scoring batch sizes (pairs, each 1-4096)
    #[arg(long, value_delimiter = ',', default_value = "1,16,64", value_parser = |s: &str| crate::options::between::<usize>("--batch", s, 1.0, 4096.0))]
    pub batch: Vec<usize>,
    /// Timed iterations per measurement
    #[arg(long, default_value_t = 3, value_parser = |s: &str| crate::options::between::<usize>("--iters", s, 1.0, 10000.0))]
    pub iters: usize,
    /// Only the scoring measurements
    #[arg(long, conflicts_with = "train_only")]
    pub score_only: bool,
    /// Only the training measurement
    #[arg(long)]
    pub train_only: bool,
    /// GPU time per kernel from timestamp queries
    #[arg(long)]
    pub profile: bool,
    /// Compare tuned kernels (`asna tune`) with the defaults: on, off or both
    /// [default: both when this adapter has tuned kernels, else off]
    #[arg(long, value_parser = ["on", "off", "both"])]
    pub tuning: Option<String>,
    /// Storage precision of the scoring measurements (f16 needs shader-f16)
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::scorer::Precision,
    /// Distorted images per reference in the scoring measurements (as in PIPAL's 116 or
    /// KADID-10k's 125): above 1, the encoder runs once per distinct reference of a batch
    #[arg(long, default_value_t = 1, value_parser = |s: &str| crate::options::between::<usize>("--dists-per-ref", s, 1.0, 4096.0))]
    pub dists_per_ref: usize,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// What to measure. Tuned kernels are compared with the defaults when the adapter has
    /// any; `--tuning both` without them is refused, since it would compare the defaults
    /// with themselves.
    fn plan(&self, gpu: &Gpu) -> Result<BenchPlan> {
        let tuned = !gpu.kernels.borrow().tuned().is_empty();
        let tuning = match self.tuning.as_deref() {
            Some("off") => vec![false],
            Some("on") => vec![true],
            Some(_) if tuned => vec![false, true],
            Some(_) => anyhow::bail!(
                "--tuning both: no tuned kernels for {} in the tuning cache; run `asna tune` first",
                gpu.info.name
            ),
            None if tuned => vec![false, true],
            None => vec![false],
        };
        Ok(BenchPlan {
            batches: self.batch.clone(),
            iters: self.iters.max(1),
            train: !self.score_only,
            score: !self.train_only,
            profile: self.profile,
            json: self.json,
            tuning,
            precision: self.precision,
            dists_per_ref: self.dists_per_ref.max(1),
        })
    }
}

/// What one `asna bench` run measures.
pub struct BenchPlan {
    pub batches: Vec<usize>,
    pub iters: usize,
    pub train: bool,
    pub score: bool,
    pub profile: bool,
    pub json: bool,
    /// Tuning settings to measure (false: defaults, true: the tuning cache).
    pub tuning: Vec<bool>,
    /// Storage precision of the scoring measurements.
    pub precision: crate::scorer::Precision,
    /// Distorted images per reference in the scoring measurements.
    pub dists_per_ref: usize,
}

fn random_pixels(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n * SIZE * SIZE * 3)
        .map(|_| rng.below(256) as u8)
        .collect()
}

fn profile_table(gpu: &Gpu) -> serde_json::Value {
    let prof = gpu.profiler.borrow();
    let total: f64 = prof.stats.values().map(|s| s.seconds).sum();
    let mut rows: Vec<_> = prof.stats.iter().collect();
    rows.sort_by(|a, b| b.1.seconds.partial_cmp(&a.1.seconds).unwrap());
    serde_json::Value::Array(
        rows.iter()
            .map(|(k, s)| {
                serde_json::json!({
                    "kernel": k, "calls": s.calls, "seconds": s.seconds,
                    "share": if total > 0.0 { s.seconds / total } else { 0.0 },
                    "gflops": if s.seconds > 0.0 { s.flops / s.seconds / 1e9 } else { 0.0 },
                    "gbytes_per_s": if s.seconds > 0.0 { s.bytes / s.seconds / 1e9 } else { 0.0 },
                })
            })
            .collect(),
    )
}

/// The kernel configuration that ran each convolution shape of a measurement.
fn print_conv_kernels(title: &str, report: &serde_json::Value) {
    let Some(kernels) = report["conv_kernels"].as_object() else {
        return;
    };
    let shared = if report["shared_loads"].as_bool() == Some(true) {
        "shared through subgroups"
    } else {
        "loaded by every invocation"
    };
    eprintln!("{title}: convolution kernels by shape (Winograd filter loads {shared})");
    for (key, configs) in kernels {
        let names: Vec<&str> = configs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        eprintln!("  {key:<36} {}", names.join("; "));
    }
}

fn print_profile(title: &str, table: &serde_json::Value) {
    eprintln!("  {title}: GPU time per kernel");
    eprintln!(
        "    {:<28} {:>7} {:>10} {:>7} {:>9} {:>8}",
        "kernel", "calls", "ms", "share", "GFLOP/s", "GB/s"
    );
    for r in table.as_array().into_iter().flatten() {
        eprintln!(
            "    {:<28} {:>7} {:>10.2} {:>6.1}% {:>9.1} {:>8.1}",
            r["kernel"].as_str().unwrap_or(""),
            r["calls"],
            r["seconds"].as_f64().unwrap_or(0.0) * 1e3,
            r["share"].as_f64().unwrap_or(0.0) * 100.0,
            r["gflops"].as_f64().unwrap_or(0.0),
            r["gbytes_per_s"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Runs `once` (given the run's index) once to warm up, then `args.iters` times timed, and
/// reports `rate` = `per_run` units per run over the wall time, the peak GPU memory of live
/// tensors, the memory the pool holds, the buffers the timed runs had to allocate (none, once
/// the warm-up has filled the pool), the configuration that ran each convolution shape
/// (product and layer shape: `conv_kernels`) and (with --profile) the time per kernel.
fn timed(
    gpu: &Gpu,
    args: &BenchPlan,
    rate: &str,
    per_run: usize,
    mut once: impl FnMut(u64) -> Result<()>,
) -> Result<serde_json::Value> {
    // The pool is emptied before the warm-up, not after: the warm-up then fills it with what
    // this measurement needs (`pool_mib`), and the timed runs reuse it as every batch after
    // the first of a long job does, instead of paying the driver's allocation and first-use
    // clearing (a sixth of a second in the first timed scoring pass at batch 16, lavapipe).
    gpu.trim_pool();
    gpu.kernels.borrow_mut().start_noting_use();
    let first = once(0);
    let used = gpu.kernels.borrow_mut().take_use();
    first?;
    gpu.reset_peak();
    let allocations_before = gpu.pool_allocations();
    let profiling = args.profile && gpu.profiler.borrow_mut().set_enabled(true);
    let t = Instant::now();
    for i in 0..args.iters {
        once(i as u64 + 1)?;
    }
    let dt = t.elapsed().as_secs_f64();
    let mut out = serde_json::json!({
        "batch": per_run,
        "peak_gpu_mib": gpu.pool_peak_live_bytes() as f64 / 1048576.0,
        "pool_mib": gpu.pool_allocated_bytes() as f64 / 1048576.0,
        "timed_allocations": gpu.pool_allocations() - allocations_before,
    });
    out[rate] = ((per_run * args.iters) as f64 / dt).into();
    out["conv_kernels"] = used
        .iter()
        .map(|(key, configs)| {
            let names: Vec<String> = configs.iter().map(|c| c.describe()).collect();
            (key.clone(), names.into())
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    out["shared_loads"] = gpu.kernels.borrow().shared_loads().into();
    if profiling {
        out["profile"] = profile_table(gpu);
        gpu.profiler.borrow_mut().set_enabled(false);
    }
    Ok(out)
}

/// Scoring pairs/s of `b` pairs per batch.
fn measure_score(
    gpu: &Gpu,
    store: &ParamStore,
    rng: &mut Rng,
    b: usize,
    args: &BenchPlan,
) -> Result<serde_json::Value> {
    if args.dists_per_ref > 1 {
        // Pair i compares distorted image i with reference i / dists_per_ref.
        let refs = b.div_ceil(args.dists_per_ref);
        let (r, d) = (random_pixels(rng, refs), random_pixels(rng, b));
        let ref_of: Vec<usize> = (0..b).map(|i| i / args.dists_per_ref).collect();
        return timed(gpu, args, "pairs_per_s", b, |_| {
            gpu.download(&crate::model::asna::predict_shared(
                gpu, store, &r, &d, &ref_of, None,
            ))
            .map(|_| ())
        });
    }
    let (r, d) = (random_pixels(rng, b), random_pixels(rng, b));
    timed(gpu, args, "pairs_per_s", b, |_| {
        gpu.download(&crate::model::asna::predict(gpu, store, &r, &d, b, None))
            .map(|_| ())
    })
}

/// Training steps/s at batch 16 (the sorter's length) with the full loss and Adam.
fn measure_train(gpu: &Gpu, rng: &mut Rng, args: &BenchPlan) -> Result<serde_json::Value> {
    let sorter_store = ParamStore::init(gpu, &sorter::specs(), 1);
    let mut train_store = ParamStore::init(gpu, &asna::specs(), 2);
    let mut adam = Adam::new(Default::default());
    let n = sorter::LENGTH;
    let batch = Batch {
        ref_u8: random_pixels(rng, n),
        dist_u8: random_pixels(rng, n),
        targets: (0..n).map(|_| rng.normal() as f32).collect(),
        indices: (0..n).collect(),
        n,
        size: SIZE,
    };
    let w = Default::default();
    let mut out = timed(gpu, args, "steps_per_s", 1, |step| {
        crate::optim::train_step(
            gpu,
            &mut train_store,
            &mut adam,
            Some(&sorter_store),
            &w,
            &batch,
            1e-4,
            step,
            false,
        )
        .map(|_| ())
    })?;
    out["batch"] = n.into();
    Ok(out)
}

fn tuning_label(on: bool) -> &'static str {
    if on {
        "tuned"
    } else {
        "default"
    }
}

/// Runs `measure` once per tuning setting, with the kernel policy switched to it (and back
/// after); the report holds each setting's result under `default` or `tuned` and, with both,
/// `tuned_speedup`: the ratio of their `rate` entries, tuned over default (below 1 where the
/// tuned kernels are slower).
pub fn per_tuning(
    gpu: &Gpu,
    settings: &[bool],
    rate: &str,
    mut measure: impl FnMut() -> Result<serde_json::Value>,
) -> Result<serde_json::Value> {
    let was = gpu.kernels.borrow().uses_tuned();
    let mut out = serde_json::json!({});
    for &on in settings {
        gpu.kernels.borrow_mut().set_use_tuned(on);
        let r = measure();
        gpu.kernels.borrow_mut().set_use_tuned(was);
        out[tuning_label(on)] = r?;
    }
    if settings.len() == 2 {
        let (d, t) = (out["default"][rate].as_f64(), out["tuned"][rate].as_f64());
        if let (Some(d), Some(t)) = (d, t) {
            out["tuned_speedup"] = (t / d).into();
        }
    }
    Ok(out)
}

/// `asna bench`: measures, prints a summary on stderr, and the report as JSON with --json.
pub fn run(gpu: &Gpu, cli: &BenchArgs) -> Result<()> {
    let report = measure(gpu, &cli.plan(gpu)?)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Runs the measurements of `args` and returns the report.
pub fn measure(gpu: &Gpu, args: &BenchPlan) -> Result<serde_json::Value> {
    let mut rng = Rng::new(1);
    let store = ParamStore::init(gpu, &asna::specs(), 0);
    let mut report =
        serde_json::json!({ "adapter": gpu.describe(), "max_binding_bytes": gpu.max_binding() });
    if args.profile && !gpu.profiler.borrow().available() {
        eprintln!("note: this adapter has no timestamp queries; --profile is unavailable");
    }
    if args.score {
        let dtype = args.precision.dtype();
        crate::scorer::check_precision(gpu, dtype)?;
        let store = store.to_dtype(gpu, dtype)?;
        let precision = format!("{:?}", args.precision).to_lowercase();
        report["score_precision"] = precision.clone().into();
        for &wanted in &args.batches {
            let b = crate::scorer::max_batch(gpu, wanted);
            let key = format!("score_b{wanted}");
            report[&key] = per_tuning(gpu, &args.tuning, "pairs_per_s", || {
                measure_score(gpu, &store, &mut rng, b, args)
            })?;
            if b != wanted {
                report[&key]["note"] =
                    format!("batch capped at {b} by the adapter's largest binding").into();
            }
            if !args.json {
                for &on in &args.tuning {
                    let r = &report[&key][tuning_label(on)];
                    eprintln!(
                        "score batch {b:>3} ({precision}, {:>7}): {:.2} pairs/s, peak GPU memory {:.0} MiB live, {:.0} MiB pooled",
                        tuning_label(on),
                        r["pairs_per_s"].as_f64().unwrap_or(0.0),
                        r["peak_gpu_mib"].as_f64().unwrap_or(0.0),
                        r["pool_mib"].as_f64().unwrap_or(0.0)
                    );
                    print_conv_kernels(&key, r);
                    if r.get("profile").is_some() {
                        print_profile(&key, &r["profile"]);
                    }
                }
                if let Some(x) = report[&key]["tuned_speedup"].as_f64() {
                    eprintln!("score batch {b:>3}: tuned / default = {x:.2}x");
                }
            }
        }
    }
    if args.train {
        report["train_b16"] = per_tuning(gpu, &args.tuning, "steps_per_s", || {
            measure_train(gpu, &mut rng, args)
        })?;
        if !args.json {
            for &on in &args.tuning {
                let r = &report["train_b16"][tuning_label(on)];
                eprintln!(
                    "train batch 16 ({:>7}): {:.3} steps/s, peak GPU memory {:.0} MiB live, {:.0} MiB pooled",
                    tuning_label(on),
                    r["steps_per_s"].as_f64().unwrap_or(0.0),
                    r["peak_gpu_mib"].as_f64().unwrap_or(0.0),
                    r["pool_mib"].as_f64().unwrap_or(0.0)
                );
                print_conv_kernels("train_b16", r);
                if r.get("profile").is_some() {
                    print_profile("train_b16", &r["profile"]);
                }
            }
            if let Some(x) = report["train_b16"]["tuned_speedup"].as_f64() {
                eprintln!("train batch 16: tuned / default = {x:.2}x");
            }
        }
    }
    Ok(report)
}
