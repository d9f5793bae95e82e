//! The `asna` command line: argument parsing only; each command lives in its own module.

use asna::gpu::{AdapterChoice, Gpu};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "asna",
    version,
    about = "ASNA perceptual image quality: score, train and evaluate on any GPU (wgpu: Vulkan, Metal, DX12, lavapipe)",
    after_help = "Adapter choice: high-performance GPUs first; --adapter, WGPU_ADAPTER_NAME and WGPU_BACKEND override it.\nSee `asna devices`."
)]
struct Cli {
    /// Use the adapter whose name contains this text (see `asna devices`)
    #[arg(long, global = true, value_name = "NAME")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, type, driver, limits and features
    Devices {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Predict the quality (MOS) of distorted images against their references
    #[command(group(clap::ArgGroup::new("input").required(true).args(["reference", "pairs", "ref_dir"])))]
    Score {
        /// Reference image (with DIST: score one pair)
        #[arg(value_name = "REF", requires = "distorted")]
        reference: Option<PathBuf>,
        /// Distorted image
        #[arg(value_name = "DIST")]
        distorted: Option<PathBuf>,
        /// CSV list of pairs with columns ref,dist (paths relative to the list)
        #[arg(long, value_name = "LIST.csv", conflicts_with_all = ["reference", "ref_dir"])]
        pairs: Option<PathBuf>,
        /// Directory of reference images (pairs are matched by file name with --dist-dir)
        #[arg(
            long,
            value_name = "DIR",
            requires = "dist_dir",
            conflicts_with = "reference"
        )]
        ref_dir: Option<PathBuf>,
        /// Directory of distorted images
        #[arg(long, value_name = "DIR", requires = "ref_dir")]
        dist_dir: Option<PathBuf>,
        /// Model file (.safetensors or a training run directory); repeat to average an
        /// ensemble. Default: the embedded model
        #[arg(long, value_name = "FILE")]
        weights: Vec<PathBuf>,
        /// Pairs (288x288 windows) per GPU batch; capped by the adapter's largest binding
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Average over the authors' test-time variants (rotations, flips, L scales)
        #[arg(long)]
        tta: bool,
        /// Write a degradation map of the pair to this PNG (same size as the input)
        #[arg(long, value_name = "OUT.png")]
        map: Option<PathBuf>,
        /// Output format for lists
        #[arg(long, value_enum, default_value = "csv")]
        format: asna::score::Format,
        /// Output file (written atomically); default stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Score only every N-th pair starting at K (0-based), e.g. 3/16 for job 3 of 16
        #[arg(long, value_name = "K/N")]
        shard: Option<asna::score::Shard>,
        /// Storage precision of the model's activations and weights (f16 needs shader-f16)
        #[arg(long, value_enum, default_value = "f32")]
        precision: asna::scorer::Precision,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Evaluate on a labelled dataset: PLCC, SRCC, KRCC, RMSE, with PSNR and SSIM baselines
    Eval {
        /// Dataset format: pipal, kadid, tid2013, tid2008, csv
        #[arg(long)]
        dataset: String,
        /// Dataset root directory
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Label file (csv format; default ROOT/labels.csv)
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Whether labels rise (higher) or fall (lower) with quality; default per dataset
        #[arg(long)]
        direction: Option<String>,
        /// Model file(s); default: the embedded model
        #[arg(long, value_name = "FILE")]
        weights: Vec<PathBuf>,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Average over test-time variants
        #[arg(long)]
        tta: bool,
        /// Scatter plot of predicted against true scores
        #[arg(long, value_name = "OUT.png")]
        plot: Option<PathBuf>,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Only the first N pairs
        #[arg(long)]
        limit: Option<usize>,
        /// Only the PSNR and SSIM baselines, without a model
        #[arg(long)]
        baselines_only: bool,
        /// Storage precision of the model's activations and weights (f16 needs shader-f16)
        #[arg(long, value_enum, default_value = "f32")]
        precision: asna::scorer::Precision,
        #[arg(long)]
        quiet: bool,
    },
    /// Train ASNA on a labelled dataset
    Train(TrainArgs),
    /// Train the surrogate ranking network (the sorter) on synthetic vectors
    TrainSorter {
        /// Output file
        #[arg(long, default_value = "sorter.safetensors")]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        steps: u64,
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Held-out vectors for the final measures
        #[arg(long, default_value_t = 4096)]
        eval_vectors: usize,
        #[arg(long)]
        quiet: bool,
    },
    /// Measure scoring and training throughput, GPU memory and (--profile) time per kernel
    Bench {
        /// Scoring batch sizes (pairs)
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        batch: Vec<usize>,
        /// Timed iterations per measurement
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Only the scoring measurements
        #[arg(long, conflicts_with = "train_only")]
        score_only: bool,
        /// Only the training measurement
        #[arg(long)]
        train_only: bool,
        /// GPU time per kernel from timestamp queries
        #[arg(long)]
        profile: bool,
        /// Compare tuned kernels (`asna tune`) with the defaults: on, off or both
        #[arg(long, value_parser = ["on", "off", "both"])]
        tuning: Option<String>,
        /// Storage precision of the scoring measurements (f16 needs shader-f16)
        #[arg(long, value_enum, default_value = "f32")]
        precision: asna::scorer::Precision,
        /// Print JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Time candidate convolution tiles for every shape of the model on this adapter and cache the fastest
    Tune {
        /// Pairs per batch to time at [default: 16 on GPUs, 1 on CPU drivers]
        #[arg(long)]
        batch: Option<usize>,
        /// Shapes of: score, train or all
        #[arg(long, default_value = "all", value_parser = ["score", "train", "all"])]
        workload: String,
        /// Tune only the N most expensive shapes
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Timed runs per configuration (the best counts)
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Print the cached table for this adapter and exit
        #[arg(long)]
        show: bool,
        /// Print JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Build a synthetic full-reference dataset labelled with TID2013's human MOS
    Synth {
        /// Directory of reference photographs
        #[arg(long, value_name = "DIR")]
        refs: PathBuf,
        /// Output directory (images and labels.csv)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// 288x288 crops per reference image
        #[arg(long, default_value_t = 1)]
        crops: usize,
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Dataset format: pipal, kadid, tid2013, tid2008, csv
    #[arg(long, default_value = "csv")]
    dataset: String,
    /// Dataset root directory
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Label file (csv format; default ROOT/labels.csv)
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Whether labels rise (higher) or fall (lower) with quality; default per dataset
    #[arg(long)]
    direction: Option<String>,
    /// Run directory for checkpoints and logs
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 20)]
    epochs: u64,
    /// Stop after this many steps in all
    #[arg(long)]
    max_steps: Option<u64>,
    /// m: weight of the MSE term (the Pearson term gets 1 - m)
    #[arg(long, default_value_t = 1.0)]
    mse_weight: f32,
    /// s: weight of the sorter's ranking term
    #[arg(long, default_value_t = 0.01)]
    rank_weight: f32,
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Pairs per batch; must be 16 (the sorter's length) unless --rank-weight is 0
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Epoch from which the learning rate is multiplied by 0.1
    #[arg(long, default_value_t = 10)]
    lr_decay_epoch: u64,
    /// Fraction of reference images held out for validation
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No rotation, flip or lightness augmentation
    #[arg(long)]
    no_augment: bool,
    /// Save last.safetensors every N steps (and at each epoch's end)
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    /// Skip batches whose loss is not finite instead of stopping
    #[arg(long)]
    skip_nonfinite: bool,
    /// Sorter weights (default: the shipped sorter)
    #[arg(long, value_name = "FILE")]
    sorter: Option<PathBuf>,
    /// Start from these weights instead of a random initialisation
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Image decoding threads
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long)]
    quiet: bool,
}

fn open_gpu(adapter: &Option<String>) -> anyhow::Result<std::rc::Rc<Gpu>> {
    Gpu::new(&AdapterChoice::from_arg(adapter.as_deref()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devices { json } => asna::devices::run(json),
        Command::Score {
            reference,
            distorted,
            pairs,
            ref_dir,
            dist_dir,
            weights,
            batch,
            tta,
            map,
            format,
            out,
            shard,
            precision,
            quiet,
        } => {
            let gpu = open_gpu(&cli.adapter)?;
            let args = asna::score::ScoreArgs {
                reference,
                distorted,
                pairs,
                ref_dir,
                dist_dir,
                weights,
                batch,
                tta,
                map,
                format,
                out,
                shard,
                progress: !quiet,
                precision,
            };
            asna::score::run(&gpu, args)
        }
        Command::Eval {
            dataset,
            root,
            labels,
            direction,
            weights,
            batch,
            tta,
            plot,
            json,
            limit,
            baselines_only,
            precision,
            quiet,
        } => {
            let gpu = open_gpu(&cli.adapter)?;
            let args = asna::eval::EvalArgs {
                dataset,
                root,
                labels,
                direction,
                weights,
                batch,
                tta,
                plot,
                json,
                progress: !quiet,
                limit,
                baselines_only,
                precision,
            };
            asna::eval::run(&gpu, &args).map(|_| ())
        }
        Command::Train(a) => {
            let root = a
                .root
                .ok_or_else(|| anyhow::anyhow!("--root is required"))?;
            let gpu = open_gpu(&cli.adapter)?;
            let cfg = asna::train::TrainConfig {
                dataset: a.dataset,
                root,
                labels: a.labels,
                direction: a.direction,
                val_fraction: a.val_fraction,
                seed: a.seed,
                epochs: a.epochs,
                max_steps: a.max_steps,
                loss: asna::model::loss::LossWeights {
                    mse: a.mse_weight,
                    rank: a.rank_weight,
                    ..Default::default()
                },
                lr: a.lr,
                lr_decay_epoch: a.lr_decay_epoch,
                batch: a.batch,
                augment: !a.no_augment,
                checkpoint_every: a.checkpoint_every.max(1),
                skip_nonfinite: a.skip_nonfinite,
                sorter: a.sorter,
                init: a.init,
                ..Default::default()
            };
            let opts = asna::train::TrainOptions {
                workers: a.workers,
                progress_bar: !a.quiet,
            };
            let s = asna::train::train(&gpu, cfg, &a.out, a.resume, &opts)?;
            eprintln!(
                "trained {} steps on {}; last loss {:.4}; best validation PLCC+SRCC {}; checkpoints in {}",
                s.steps,
                gpu.info.name,
                s.last_loss,
                s.best_main_score.filter(|v| v.is_finite()).map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into()),
                a.out.display()
            );
            Ok(())
        }
        Command::TrainSorter {
            out,
            steps,
            batch,
            lr,
            seed,
            eval_vectors,
            quiet,
        } => {
            let gpu = open_gpu(&cli.adapter)?;
            let cfg = asna::train_sorter::SorterConfig {
                steps,
                batch,
                lr,
                seed,
                eval_vectors,
            };
            let r = asna::train_sorter::train(&gpu, &cfg, &out, !quiet)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            eprintln!(
                "sorter written to {} ({} on {:.0} s)",
                out.display(),
                gpu.info.name,
                r.seconds
            );
            Ok(())
        }
        Command::Bench {
            batch,
            iters,
            score_only,
            train_only,
            profile,
            tuning,
            json,
            precision,
        } => {
            let gpu = open_gpu(&cli.adapter)?;
            let tuned = !gpu.tuning.borrow().table.is_empty();
            let tuning = match tuning.as_deref() {
                Some("off") => vec![false],
                Some("on") => vec![true],
                Some(_) if tuned => vec![false, true],
                Some(_) => {
                    anyhow::bail!(
                        "--tuning both: no tuned kernels for {} in the tuning cache; run `asna tune` first",
                        gpu.info.name
                    )
                }
                None if tuned => vec![false, true],
                // Nothing tuned: the defaults, whatever the cache switch says.
                None => vec![false],
            };
            let args = asna::bench::BenchArgs {
                batches: batch,
                iters: iters.max(1),
                train: !score_only,
                score: !train_only,
                profile,
                json,
                tuning,
                precision,
            };
            let report = asna::bench::run(&gpu, &args)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(())
        }
        Command::Tune {
            batch,
            workload,
            limit,
            reps,
            show,
            json,
        } => {
            let gpu = open_gpu(&cli.adapter)?;
            if show {
                let t = gpu.tuning.borrow();
                let path = asna::gpu::tuning::cache_path();
                let report = serde_json::json!({
                    "adapter": asna::gpu::tuning::adapter_key(&gpu.info),
                    "cache": path.map(|p| p.display().to_string()),
                    "shapes": t.table,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let args = asna::tune::TuneArgs {
                batch: batch
                    .unwrap_or_else(|| asna::tune::default_batch(&gpu))
                    .max(1),
                workload: match workload.as_str() {
                    "score" => asna::tune::Workload::Score,
                    "train" => asna::tune::Workload::Train,
                    _ => asna::tune::Workload::All,
                },
                limit,
                reps: reps.max(1),
                progress: !json,
            };
            let results = asna::tune::run(&gpu, &args)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&asna::tune::report_json(&gpu, &results))?
                );
            } else {
                asna::tune::print_report(&gpu, &results);
            }
            Ok(())
        }
        Command::Synth {
            refs,
            out,
            seed,
            crops,
            quiet,
        } => {
            let mut cfg = asna::synth::SynthConfig::new(refs, out);
            cfg.seed = seed;
            cfg.crops_per_ref = crops;
            let s = asna::synth::run(&cfg, !quiet)?;
            eprintln!(
                "{} distorted images of {} references written to {} ({} missed their PSNR target)",
                s.images.len(),
                s.n_refs,
                cfg.out.display(),
                s.out_of_tolerance
            );
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {}", asna::one_line(&e));
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", e.backtrace());
        }
        std::process::exit(1);
    }
}
