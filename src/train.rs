//! `asna train`: the ASNA training loop. Data from a dataset reader, split by reference image,
//! labels standardised on the training set; batches of 16 pairs decoded and augmented on
//! background threads; loss `m*mse + (1-m)*(1-r^2) + s*rank + l2` with the frozen sorter; Adam
//! with a linear warm-up and a step or cosine schedule; validation every epoch, with batch-norm
//! statistics recomputed over fixed training batches ("precise BN"); checkpoints that resume
//! exactly.

use crate::autograd::Tape;
use crate::data::{
    self, BatchLoader, Dataset, DatasetFormat, Direction, LabelScaler, LoaderConfig,
};
use crate::files::write_atomic;
use crate::gpu::{DType, Gpu, Tensor};
use crate::metrics;
use crate::model::asna::{self, forward, stacked_input, BnContext, Bound, SIZE};
use crate::model::checkpoint::{self, check_architecture, load_store, model_metadata};
use crate::model::loss::LossWeights;
use crate::model::params::ParamStore;
use crate::model::sorter;
use crate::model::weights::TensorFile;
use crate::ops::adam::AdamConfig;
use crate::optim::{train_step, Adam};
use crate::run_dir::BASELINES_FILE;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shipped sorter, used unless `--sorter` names another.
pub const DEFAULT_SORTER: &[u8] = include_bytes!("../weights/sorter.safetensors");

/// Everything that determines a run; stored in every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub dataset: String,
    pub root: PathBuf,
    pub labels: Option<PathBuf>,
    pub direction: Option<String>,
    pub val_fraction: f64,
    pub seed: u64,
    pub epochs: u64,
    pub max_steps: Option<u64>,
    pub batch: usize,
    pub loss: LossWeights,
    pub lr: f32,
    pub lr_decay_epoch: u64,
    pub lr_decay: f32,
    pub augment: bool,
    pub checkpoint_every: u64,
    pub skip_nonfinite: bool,
    pub sorter: Option<PathBuf>,
    pub init: Option<PathBuf>,
    /// Training batches whose batch-norm statistics replace the running ones for validation
    /// and in saved models; 0 keeps the running statistics. Absent from checkpoints made
    /// before the option existed: 0, as those runs were trained.
    #[serde(default)]
    pub precise_bn: usize,
    /// Steps over which the learning rate rises linearly from 0.
    #[serde(default)]
    pub warmup_steps: u64,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// The run's length in steps, fixed when it starts (the cosine schedule ends here), so
    /// that a resumed run follows the same schedule whatever its --max-steps.
    #[serde(default)]
    pub schedule_steps: u64,
    /// Validate (and keep the best checkpoint) every N steps as well as at each epoch's end;
    /// 0: at epochs' ends only.
    #[serde(default)]
    pub val_every: u64,
}

/// How the learning rate falls after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Multiplied by 0.1 from --lr-decay-epoch on.
    #[default]
    Step,
    /// Half a cosine from --lr down to 0 at the run's last step.
    Cosine,
}

/// Precise-BN batches unless `--precise-bn` says otherwise: 10 batches of 16 pairs put 320
/// images through each layer (the deepest layers still see 200k values per channel), enough for
/// statistics that no longer move with the choice of batches, at the cost of about three
/// training steps per validation or checkpoint.
pub const DEFAULT_PRECISE_BN: usize = 10;

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: "csv".into(),
            root: PathBuf::new(),
            labels: None,
            direction: None,
            val_fraction: 0.2,
            seed: 0,
            epochs: 20,
            max_steps: None,
            batch: sorter::LENGTH,
            loss: LossWeights::default(),
            lr: 1e-4,
            lr_decay_epoch: 10,
            lr_decay: 0.1,
            augment: true,
            checkpoint_every: 200,
            skip_nonfinite: false,
            sorter: None,
            init: None,
            precise_bn: DEFAULT_PRECISE_BN,
            warmup_steps: 0,
            lr_schedule: LrSchedule::Step,
            schedule_steps: 0,
            val_every: 0,
        }
    }
}

// `asna train`: the command line (a doc comment here would replace the help text).
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Dataset format: pipal, kadid, tid2013, tid2008, csv
    #[arg(long, default_value = "csv")]
    pub dataset: String,
    /// Dataset root directory
    #[arg(long, value_name = "DIR", required_unless_present = "resume")]
    pub root: Option<PathBuf>,
    /// Label file (csv format; default ROOT/labels.csv)
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Whether labels rise (higher) or fall (lower) with quality; default per dataset
    #[arg(long)]
    pub direction: Option<String>,
    /// Run directory for checkpoints and logs
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// Stop after this many steps in all
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// m: weight of the MSE term (the Pearson term gets 1 - m)
    #[arg(long, default_value_t = 1.0)]
    pub mse_weight: f32,
    /// s: weight of the sorter's ranking term
    #[arg(long, default_value_t = 0.01)]
    pub rank_weight: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// Pairs per batch; must be 16 (the sorter's length) unless --rank-weight is 0
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Epoch from which the learning rate is multiplied by 0.1 (--lr-schedule step)
    #[arg(long, default_value_t = 10)]
    pub lr_decay_epoch: u64,
    /// After the warm-up: step (x0.1 from --lr-decay-epoch) or cosine (down to 0 at the last step)
    #[arg(long, value_enum, default_value = "step")]
    pub lr_schedule: LrSchedule,
    /// Raise the learning rate linearly from 0 to --lr over the first N steps
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warmup_steps: u64,
    /// Recompute the batch-norm statistics over N fixed training batches for each validation and every saved model (0: use the running statistics)
    #[arg(long, default_value_t = DEFAULT_PRECISE_BN, value_name = "N")]
    pub precise_bn: usize,
    /// Fraction of reference images held out for validation
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No rotation, flip or lightness augmentation
    #[arg(long)]
    pub no_augment: bool,
    /// Save last.safetensors every N steps (and at each epoch's end)
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Also validate every N steps, keeping best.safetensors (0: at each epoch's end only)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub val_every: u64,
    /// Skip batches whose loss is not finite instead of stopping
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Sorter weights (default: the shipped sorter)
    #[arg(long, value_name = "FILE")]
    pub sorter: Option<PathBuf>,
    /// Start from these weights instead of a random initialisation
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Image decoding threads
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The run's configuration (with --resume, only how far it goes is taken from here).
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            dataset: self.dataset.clone(),
            root: self.root.clone().unwrap_or_default(),
            labels: self.labels.clone(),
            direction: self.direction.clone(),
            val_fraction: self.val_fraction,
            seed: self.seed,
            epochs: self.epochs,
            max_steps: self.max_steps,
            loss: LossWeights {
                mse: self.mse_weight,
                rank: self.rank_weight,
                ..Default::default()
            },
            lr: self.lr,
            lr_decay_epoch: self.lr_decay_epoch,
            batch: self.batch,
            augment: !self.no_augment,
            checkpoint_every: self.checkpoint_every.max(1),
            skip_nonfinite: self.skip_nonfinite,
            sorter: self.sorter.clone(),
            init: self.init.clone(),
            precise_bn: self.precise_bn,
            warmup_steps: self.warmup_steps,
            lr_schedule: self.lr_schedule,
            val_every: self.val_every,
            ..Default::default()
        }
    }
}

/// `asna train`: trains and prints a one-line summary.
pub fn run(gpu: &Gpu, args: &TrainArgs) -> Result<()> {
    let opts = TrainOptions {
        workers: args.workers,
        progress_bar: !args.quiet,
    };
    let s = train(gpu, args.config(), &args.out, args.resume, &opts)?;
    let best = s
        .best_main_score
        .filter(|v| v.is_finite())
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "n/a".into());
    eprintln!(
        "trained {} steps on {}; last loss {:.4}; best validation PLCC+SRCC {best}; checkpoints in {}",
        s.steps,
        gpu.info.name,
        s.last_loss,
        args.out.display()
    );
    Ok(())
}

/// Where a run stands: the next batch to run is `batch` of `epoch`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub epoch: u64,
    pub batch: usize,
    pub step: u64,
    pub best_main_score: Option<f64>,
    pub last_metrics: Option<serde_json::Value>,
}

pub struct TrainOptions {
    pub workers: usize,
    pub progress_bar: bool,
}

pub struct TrainSummary {
    pub steps: u64,
    pub last_loss: f32,
    pub losses: Vec<f32>,
    pub best_main_score: Option<f64>,
}

fn sorter_store(gpu: &Gpu, path: Option<&Path>) -> Result<ParamStore> {
    let (bytes, source) = match path {
        Some(p) => (
            crate::model::weights::read_weights_file(p)?,
            p.display().to_string(),
        ),
        None => (
            DEFAULT_SORTER.to_vec(),
            "embedded sorter (weights/sorter.safetensors)".to_string(),
        ),
    };
    let file = TensorFile::parse(&bytes, &source)?;
    check_architecture(&file, sorter::ARCHITECTURE, &source)?;
    load_store(gpu, &file, &sorter::specs(), &source)
}

fn open(cfg: &TrainConfig) -> Result<Dataset> {
    let format: DatasetFormat = cfg.dataset.parse().map_err(|e| anyhow!("--dataset: {e}"))?;
    let direction = match &cfg.direction {
        Some(d) => Some(
            d.parse::<Direction>()
                .map_err(|_| anyhow!("--direction must be \"higher\" or \"lower\""))?,
        ),
        None => None,
    };
    data::open_dataset(format, &cfg.root, cfg.labels.as_deref(), direction)
}

/// Learning rate of the step with 0-based index `step`, in `epoch`: linear from 0 over the
/// first `warmup_steps` (the first step gets lr / warmup_steps), then the schedule (the cosine
/// runs from the warm-up's end to `schedule_steps`).
pub fn lr_at(cfg: &TrainConfig, step: u64, epoch: u64) -> f32 {
    let after_warmup = match cfg.lr_schedule {
        LrSchedule::Step if epoch >= cfg.lr_decay_epoch => cfg.lr * cfg.lr_decay,
        LrSchedule::Step => cfg.lr,
        LrSchedule::Cosine => {
            let span = cfg.schedule_steps.saturating_sub(cfg.warmup_steps).max(1);
            let t = (step.saturating_sub(cfg.warmup_steps) as f64 / span as f64).min(1.0);
            (cfg.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
        }
    };
    if step < cfg.warmup_steps {
        after_warmup * (step + 1) as f32 / cfg.warmup_steps as f32
    } else {
        after_warmup
    }
}

/// Validation: evaluation-mode predictions on centre crops of the validation pairs.
pub fn validate(
    gpu: &Gpu,
    store: &ParamStore,
    ds: &Dataset,
    val: &[usize],
    targets: &Arc<Vec<f32>>,
    workers: usize,
) -> Result<metrics::Correlations> {
    let cfg = LoaderConfig {
        batch: crate::scorer::max_batch(gpu, 16),
        size: SIZE,
        train: false,
        augment: false,
        workers,
        seed: 0,
        drop_last: false,
    };
    let loader = BatchLoader::new(
        Arc::new(ds.pairs.clone()),
        val.to_vec(),
        targets.clone(),
        cfg,
        0,
        0,
    );
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    for b in loader {
        let b = b?;
        let z = gpu.download(&crate::model::asna::predict(
            gpu, store, &b.ref_u8, &b.dist_u8, b.n, None,
        ))?;
        pred.extend(z.iter().map(|v| *v as f64));
        truth.extend(b.targets.iter().map(|v| *v as f64));
    }
    Ok(metrics::correlations(&pred, &truth))
}

fn metadata(
    scaler: &LabelScaler,
    cfg: &TrainConfig,
    progress: &Progress,
) -> Result<BTreeMap<String, String>> {
    let mut m = model_metadata(scaler);
    m.insert("train_config".into(), serde_json::to_string(cfg)?);
    m.insert("progress".into(), serde_json::to_string(progress)?);
    m.insert("epoch".into(), progress.epoch.to_string());
    m.insert("step".into(), progress.step.to_string());
    if let Some(v) = &progress.last_metrics {
        m.insert("metrics".into(), v.to_string());
    }
    Ok(m)
}

/// Reads a run's last checkpoint for `--resume`.
fn read_resume(
    gpu: &Gpu,
    run_dir: &Path,
) -> Result<(TrainConfig, Progress, ParamStore, Adam, LabelScaler)> {
    let path = run_dir.join("last.safetensors");
    let source = path.display().to_string();
    if !path.is_file() {
        bail!("{source}: no checkpoint to resume from");
    }
    let file = TensorFile::read(&path)?;
    check_architecture(&file, asna::ARCHITECTURE, &source)?;
    let get = |k: &str| {
        file.metadata
            .get(k)
            .ok_or_else(|| anyhow!("{source}: not a training checkpoint (no \"{k}\")"))
    };
    let cfg: TrainConfig = serde_json::from_str(get("train_config")?)
        .map_err(|e| anyhow!("{source}: bad train_config ({e})"))?;
    let progress: Progress = serde_json::from_str(get("progress")?)
        .map_err(|e| anyhow!("{source}: bad progress ({e})"))?;
    let mut store = load_store(gpu, &file, &asna::specs(), &source)?;
    restore_running_statistics(gpu, &file, &mut store, &source)?;
    let adam = Adam::load(gpu, &file, &store, &source)?
        .ok_or_else(|| anyhow!("{source}: holds no optimiser state"))?;
    let scaler = checkpoint::scaler_from_metadata(&file.metadata, &source)?;
    Ok((cfg, progress, store, adam, scaler))
}

/// A run being trained: its data and split, the model and optimiser, and where it stands.
struct Run<'g> {
    gpu: &'g Gpu,
    cfg: TrainConfig,
    run_dir: PathBuf,
    ds: Dataset,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    scaler: LabelScaler,
    /// Standardised label of every pair of the dataset.
    targets: Arc<Vec<f32>>,
    sorter: Option<ParamStore>,
    store: ParamStore,
    adam: Adam,
    progress: Progress,
    total_steps: u64,
    /// Image decoding threads.
    workers: usize,
    /// Precise batch-norm statistics and the step they were computed at.
    precise: Option<(u64, BTreeMap<String, Tensor>)>,
    /// The step last validated, so that an epoch's end falling on a `val_every` step
    /// validates once.
    validated_step: Option<u64>,
}

impl<'g> Run<'g> {
    /// Opens a new run, or the one in `run_dir` with `resume`. The dataset is read and checked
    /// before any GPU work and before the run directory is created, so a bad label file fails
    /// fast and leaves nothing behind.
    fn setup(
        gpu: &'g Gpu,
        cfg: TrainConfig,
        run_dir: &Path,
        resume: bool,
        workers: usize,
    ) -> Result<Run<'g>> {
        let (cfg, ds, progress, store, adam, resumed_scaler) = if resume {
            let (mut c, p, s, a, sc) = read_resume(gpu, run_dir)?;
            // A resumed run keeps its configuration; only how far it goes may change.
            c.max_steps = cfg.max_steps;
            c.epochs = cfg.epochs;
            let ds = open(&c)?;
            (c, ds, p, s, a, Some(sc))
        } else {
            if run_dir.join("last.safetensors").exists() {
                bail!(
                    "{}: holds a run already; use --resume to continue it or choose another --out",
                    run_dir.display()
                );
            }
            let ds = open(&cfg)?;
            let store = match &cfg.init {
                Some(p) => checkpoint::load_model(gpu, Some(p))?.store,
                None => ParamStore::init(gpu, &asna::specs(), cfg.seed),
            };
            let adam = Adam::new(AdamConfig {
                lr: cfg.lr,
                ..Default::default()
            });
            (cfg, ds, Progress::default(), store, adam, None)
        };
        let mut cfg = cfg;
        if cfg.loss.rank != 0.0 && cfg.batch != sorter::LENGTH {
            bail!(
                "--batch must be {} (the sorter's length) when the rank loss is used",
                sorter::LENGTH
            );
        }
        let (train_idx, val_idx) = data::split_by_reference(&ds.pairs, cfg.val_fraction, cfg.seed);
        if train_idx.len() < cfg.batch {
            bail!(
                "{}: only {} training pairs, fewer than one batch of {}",
                ds.labels_file.display(),
                train_idx.len(),
                cfg.batch
            );
        }
        let train_scores: Vec<f64> = train_idx.iter().map(|&i| ds.pairs[i].score).collect();
        let scaler =
            resumed_scaler.unwrap_or_else(|| LabelScaler::fit(&train_scores, ds.direction));
        let targets: Arc<Vec<f32>> = Arc::new(
            ds.pairs
                .iter()
                .map(|p| scaler.to_standard(p.score) as f32)
                .collect(),
        );
        let sorter = if cfg.loss.rank != 0.0 {
            Some(sorter_store(gpu, cfg.sorter.as_deref())?)
        } else {
            None
        };
        let batches_per_epoch = data::num_batches(train_idx.len(), cfg.batch, true) as u64;
        let total_steps = cfg
            .max_steps
            .unwrap_or(u64::MAX)
            .min(batches_per_epoch * cfg.epochs);
        if !resume {
            cfg.schedule_steps = total_steps;
        }
        let run = Run {
            gpu,
            cfg,
            run_dir: run_dir.to_path_buf(),
            ds,
            train_idx,
            val_idx,
            scaler,
            targets,
            sorter,
            store,
            adam,
            progress,
            total_steps,
            workers,
            precise: None,
            validated_step: None,
        };
        run.write_run_files()?;
        run.write_baselines()?;
        Ok(run)
    }

    /// The run directory with the split and the configuration, for the record.
    fn write_run_files(&self) -> Result<()> {
        let refs_of = |idx: &[usize]| -> Vec<String> {
            let set: std::collections::BTreeSet<String> = idx
                .iter()
                .map(|&i| self.ds.pairs[i].ref_path.display().to_string())
                .collect();
            set.into_iter().collect()
        };
        let split = serde_json::json!({
            "train_references": refs_of(&self.train_idx),
            "validation_references": refs_of(&self.val_idx),
        });
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("{}: cannot create run directory", self.run_dir.display()))?;
        write_atomic(
            &self.run_dir.join("split.json"),
            serde_json::to_string_pretty(&split)?.as_bytes(),
        )?;
        write_atomic(
            &self.run_dir.join("config.json"),
            serde_json::to_string_pretty(&self.cfg)?.as_bytes(),
        )
    }

    /// PSNR's and SSIM's correlations with the labels on the validation pairs, once per run,
    /// in `baselines.json`: the lines `asna plot-run` draws beside the learning curve.
    fn write_baselines(&self) -> Result<()> {
        let path = self.run_dir.join(BASELINES_FILE);
        if self.val_idx.is_empty() || path.exists() {
            return Ok(());
        }
        let list: Vec<(PathBuf, PathBuf)> = self
            .val_idx
            .iter()
            .map(|&i| {
                (
                    self.ds.pairs[i].ref_path.clone(),
                    self.ds.pairs[i].dist_path.clone(),
                )
            })
            .collect();
        let truth: Vec<f64> = self
            .val_idx
            .iter()
            .map(|&i| self.targets[i] as f64)
            .collect();
        let (mut psnr, mut ssim) = (Vec::new(), Vec::new());
        for pair in crate::scorer::decode_in_background(list, 16) {
            let (r, d) = pair?;
            let (p, s) = crate::ops::quality::psnr_ssim(self.gpu, &r, &d)?;
            psnr.push(p);
            ssim.push(s);
        }
        let row = |v: &[f64]| {
            let c = metrics::correlations(v, &truth);
            serde_json::json!({"plcc": c.plcc, "srcc": c.srcc, "krcc": c.krcc})
        };
        let v = serde_json::json!({
            "val_pairs": truth.len(),
            "psnr": row(&psnr),
            "ssim": row(&ssim),
        });
        write_atomic(&path, serde_json::to_string_pretty(&v)?.as_bytes())
    }

    /// The model as validated and saved at the current step: the trained parameters with the
    /// precise batch-norm statistics (computed once per step), or the store itself when
    /// precise BN is off.
    fn evaluation_store(&mut self) -> Result<Option<ParamStore>> {
        if self.cfg.precise_bn == 0 {
            return Ok(None);
        }
        let step = self.progress.step;
        if self.precise.as_ref().is_none_or(|(s, _)| *s != step) {
            let stats = self.precise_statistics().map_err(|e| {
                anyhow!("step {step}: {e}; stopped without saving (the last checkpoint is intact)")
            })?;
            self.precise = Some((step, stats));
        }
        let stats = &self.precise.as_ref().expect("computed above").1;
        Ok(Some(with_tensors(&self.store, stats)))
    }

    fn precise_statistics(&self) -> Result<BTreeMap<String, Tensor>> {
        let pairs = precise_bn_pairs(
            &self.train_idx,
            self.cfg.batch,
            self.cfg.precise_bn,
            self.cfg.seed,
        );
        let loader = BatchLoader::new(
            Arc::new(self.ds.pairs.clone()),
            pairs,
            self.targets.clone(),
            precise_bn_loader(self.cfg.batch, self.workers),
            0,
            0,
        );
        precise_bn_statistics(self.gpu, &self.store, loader)
    }

    /// Saves the parameters, Adam's state and the progress as `name` in the run directory.
    /// With precise BN the file's batch-norm statistics are the precise ones (any file of the
    /// run scores as validated), and the running statistics travel beside Adam's moments, so
    /// that training resumes exactly.
    fn save(&mut self, name: &str) -> Result<()> {
        let mut meta = metadata(&self.scaler, &self.cfg, &self.progress)?;
        let path = self.run_dir.join(name);
        match self.evaluation_store()? {
            None => {
                meta.insert(
                    "bn_statistics".into(),
                    format!("running (momentum {})", crate::ops::batchnorm::MOMENTUM),
                );
                checkpoint::save(self.gpu, &path, &self.store, Some(&self.adam), &meta)
            }
            Some(exported) => {
                meta.insert(
                    "bn_statistics".into(),
                    format!(
                        "precise (mean over {} training batches of {} pairs at step {})",
                        self.cfg.precise_bn, self.cfg.batch, self.progress.step
                    ),
                );
                let state = TrainingState {
                    adam: &self.adam,
                    running: &self.store,
                };
                checkpoint::save(self.gpu, &path, &exported, Some(&state), &meta)
            }
        }
    }

    /// Validates and appends the metrics to the run's `metrics.jsonl`.
    fn validate_and_log(&mut self, opts: &TrainOptions, last_loss: f32) -> Result<()> {
        let precise = self.evaluation_store()?;
        end_of_epoch(
            self.gpu,
            precise.as_ref().unwrap_or(&self.store),
            &self.ds,
            &self.val_idx,
            &self.targets,
            opts,
            &mut self.progress,
            &self.run_dir.join("metrics.jsonl"),
            last_loss,
        )
    }

    /// End of an epoch, a `val_every` step or a run stopped inside an epoch: validates
    /// (once per step), logs, and keeps the last checkpoint and, when validation improved,
    /// the best.
    fn checkpoint_validated(&mut self, opts: &TrainOptions, last_loss: f32) -> Result<()> {
        if self.validated_step != Some(self.progress.step) {
            self.validate_and_log(opts, last_loss)?;
            self.validated_step = Some(self.progress.step);
        }
        self.save("last.safetensors")?;
        let improved = self
            .progress
            .last_metrics
            .as_ref()
            .and_then(|m| m["main_score"].as_f64())
            == self.progress.best_main_score
            && self.progress.best_main_score.is_some();
        if improved {
            self.save("best.safetensors")?;
        }
        Ok(())
    }

    /// The training loop: epochs of batches, a checkpoint every `checkpoint_every` steps and
    /// at each epoch's end, until the epochs or `max_steps` are done.
    fn train_loop(&mut self, opts: &TrainOptions) -> Result<TrainSummary> {
        let bar = crate::progress::bar(self.total_steps, opts.progress_bar, crate::progress::STEPS);
        bar.set_position(self.progress.step);
        let pairs = Arc::new(self.ds.pairs.clone());
        let mut losses = Vec::new();
        let mut last_loss = f32::NAN;
        let started = std::time::Instant::now();
        let mut pairs_done = 0usize;
        'epochs: while self.progress.epoch < self.cfg.epochs
            && self.progress.step < self.total_steps
        {
            let order: Vec<usize> = data::epoch_order(
                self.train_idx.len(),
                self.cfg.seed,
                self.progress.epoch,
                true,
            )
            .into_iter()
            .map(|i| self.train_idx[i])
            .collect();
            let lcfg = LoaderConfig {
                batch: self.cfg.batch,
                size: SIZE,
                train: true,
                augment: self.cfg.augment,
                workers: opts.workers,
                seed: self.cfg.seed,
                drop_last: true,
            };
            let loader = BatchLoader::new(
                pairs.clone(),
                order,
                self.targets.clone(),
                lcfg,
                self.progress.epoch,
                self.progress.batch,
            );
            for batch in loader {
                let batch = batch?;
                let lr = lr_at(&self.cfg, self.progress.step, self.progress.epoch);
                let loss = train_step(
                    self.gpu,
                    &mut self.store,
                    &mut self.adam,
                    self.sorter.as_ref(),
                    &self.cfg.loss,
                    &batch,
                    lr,
                    self.progress.step,
                    self.cfg.skip_nonfinite,
                )?;
                self.progress.batch += 1;
                self.progress.step += 1;
                pairs_done += batch.n;
                if let Some(l) = loss {
                    last_loss = l;
                    losses.push(l);
                }
                let rate = pairs_done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_position(self.progress.step);
                bar.set_message(format!(
                    "epoch {} loss {:.4}  {:.1} pairs/s",
                    self.progress.epoch + 1,
                    last_loss,
                    rate
                ));
                if self.cfg.val_every > 0 && self.progress.step % self.cfg.val_every == 0 {
                    self.checkpoint_validated(opts, last_loss)?;
                } else if self.progress.step % self.cfg.checkpoint_every == 0 {
                    self.save("last.safetensors")?;
                }
                if self.progress.step >= self.total_steps {
                    break 'epochs;
                }
            }
            self.progress.epoch += 1;
            self.progress.batch = 0;
            self.checkpoint_validated(opts, last_loss)?;
        }
        if self.progress.batch > 0 {
            // Stopped by --max-steps inside an epoch: the last step is validated too, so that
            // best.safetensors is the best of every model the run validated.
            self.checkpoint_validated(opts, last_loss)?;
        }
        if !self.run_dir.join("best.safetensors").exists() {
            // No validation scored (no validation pairs, or constant predictions): the last
            // model is the best there is.
            self.save("best.safetensors")?;
        }
        bar.finish_and_clear();
        Ok(TrainSummary {
            steps: self.progress.step,
            last_loss,
            losses,
            best_main_score: self.progress.best_main_score,
        })
    }
}

/// Trains; `resume` continues the run in `run_dir` exactly where its last checkpoint left it.
pub fn train(
    gpu: &Gpu,
    cfg: TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    Run::setup(gpu, cfg, run_dir, resume, opts.workers)?.train_loop(opts)
}

/// Prefix of the running statistics saved beside the precise ones in a checkpoint.
const RUNNING_PREFIX: &str = "running.";

/// Stream label of the precise-BN pair order (apart from the epochs' orders).
const PRECISE_BN_STREAM: u64 = 0x0050_5245_4349_5345; // "PRECISE"

/// The training pairs whose batches give the precise statistics, in batch order: the first
/// `batches` full batches of a seeded shuffle of the training set, the same for the whole run
/// (and after a resume).
pub fn precise_bn_pairs(
    train_idx: &[usize],
    batch: usize,
    batches: usize,
    seed: u64,
) -> Vec<usize> {
    let full = batches.min(train_idx.len() / batch.max(1));
    data::epoch_order(train_idx.len(), seed ^ PRECISE_BN_STREAM, 0, true)
        .into_iter()
        .take(full * batch)
        .map(|i| train_idx[i])
        .collect()
}

/// How the precise-BN batches are read: centre crops without augmentation, as validation
/// and scoring see images (and as the PyTorch reference measured it).
pub fn precise_bn_loader(batch: usize, workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch,
        size: SIZE,
        train: false,
        augment: false,
        workers,
        seed: 0,
        drop_last: true,
    }
}

/// Precise batch-norm statistics: every batch-norm layer's batch mean and (biased) batch
/// variance in training-mode forward passes of `store` over `batches`, averaged over the
/// batches, under the running statistics' names. The mean of per-batch variances (not the
/// pooled variance of all values) is what the running statistics estimate, without their lag:
/// each training batch is normalised by its own statistics.
///
/// The statistics come from the model's own forward pass: each layer reports its running
/// update, momentum x running + (1 - momentum) x batch; with the running statistics zeroed
/// that is (1 - momentum) x the batch statistic, divided back out here (exact to an ulp).
pub fn precise_bn_statistics(
    gpu: &Gpu,
    store: &ParamStore,
    batches: impl IntoIterator<Item = Result<data::Batch>>,
) -> Result<BTreeMap<String, Tensor>> {
    let zeros: BTreeMap<String, Tensor> = running_statistics(store)
        .map(|s| (s.name.clone(), gpu.zeros(&s.engine_shape())))
        .collect();
    let zeroed = with_tensors(store, &zeros);
    let weight = 1.0 / (1.0 - crate::ops::batchnorm::MOMENTUM) as f64;
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut count = 0usize;
    for b in batches {
        let b = b?;
        let mut tape = Tape::inference(gpu);
        let params = Bound::new(&mut tape, &zeroed, false);
        let x = stacked_input(&mut tape, &b.ref_u8, &b.dist_u8, b.n, b.size, DType::F32);
        let mut bn = BnContext {
            train: true,
            updates: BTreeMap::new(),
            store: &zeroed,
        };
        forward(&mut tape, &params, &mut bn, &x, None);
        for (name, update) in std::mem::take(&mut bn.updates) {
            let values = gpu.download(&update)?;
            let sum = sums.entry(name).or_insert_with(|| vec![0.0; values.len()]);
            for (acc, v) in sum.iter_mut().zip(values) {
                *acc += v as f64 * weight;
            }
        }
        count += 1;
    }
    if count == 0 {
        bail!("precise batch norm: no training batch");
    }
    sums.into_iter()
        .map(|(name, sum)| {
            let mean: Vec<f32> = sum.iter().map(|v| (v / count as f64) as f32).collect();
            if mean.iter().any(|v| !v.is_finite()) {
                bail!("the precise batch-norm statistics of {name} hold NaN or infinity (the weights have diverged)");
            }
            let shape = store.get(&name).shape.clone();
            Ok((name, gpu.upload(&shape, &mean)))
        })
        .collect()
}

/// The batch-norm running statistics among a store's parameters (the ones not trained).
fn running_statistics(
    store: &ParamStore,
) -> impl Iterator<Item = &crate::model::params::ParamSpec> {
    store.specs.iter().filter(|s| !s.trainable)
}

/// A copy of `store` (sharing its tensors) with some of them replaced.
fn with_tensors(store: &ParamStore, replaced: &BTreeMap<String, Tensor>) -> ParamStore {
    let mut s = ParamStore {
        specs: store.specs.clone(),
        values: store.values.clone(),
    };
    for (name, t) in replaced {
        s.set(name, t.clone());
    }
    s
}

/// What a checkpoint saved with precise statistics needs to resume: Adam's state and the
/// running statistics that training keeps updating.
struct TrainingState<'a> {
    adam: &'a Adam,
    running: &'a ParamStore,
}

impl checkpoint::ResumeState for TrainingState<'_> {
    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        self.adam.metadata()
    }
    fn file_tensors(&self, gpu: &Gpu, store: &ParamStore) -> Result<checkpoint::FileTensors> {
        let mut tensors = self.adam.file_tensors(gpu, store)?;
        for spec in running_statistics(self.running) {
            tensors.push((
                format!("{RUNNING_PREFIX}{}", spec.name),
                spec.file_shape.clone(),
                gpu.download(self.running.get(&spec.name))?,
            ));
        }
        Ok(tensors)
    }
}

/// Puts back the running statistics a checkpoint with precise statistics saved beside them
/// (checkpoints without precise BN hold the running ones under their own names).
fn restore_running_statistics(
    gpu: &Gpu,
    file: &TensorFile,
    store: &mut ParamStore,
    source: &str,
) -> Result<()> {
    let specs: Vec<_> = running_statistics(store).cloned().collect();
    for spec in specs {
        let key = format!("{RUNNING_PREFIX}{}", spec.name);
        if let Some((shape, data)) = file.float(&key) {
            if shape != spec.file_shape || data.iter().any(|v| !v.is_finite()) {
                bail!(
                    "{source}: tensor \"{key}\" has shape {shape:?} or values that do not fit {:?}",
                    spec.file_shape
                );
            }
            store.set(&spec.name, gpu.upload(&spec.engine_shape(), &data));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn end_of_epoch(
    gpu: &Gpu,
    store: &ParamStore,
    ds: &Dataset,
    val_idx: &[usize],
    targets: &Arc<Vec<f32>>,
    opts: &TrainOptions,
    progress: &mut Progress,
    log_path: &Path,
    last_loss: f32,
) -> Result<()> {
    let mut line = serde_json::json!({"epoch": progress.epoch, "step": progress.step, "train_loss": last_loss});
    if !val_idx.is_empty() {
        let c = validate(gpu, store, ds, val_idx, targets, opts.workers)?;
        line["val_pairs"] = c.n.into();
        line["plcc"] = c.plcc.into();
        line["srcc"] = c.srcc.into();
        line["krcc"] = c.krcc.into();
        line["main_score"] = c.main_score().into();
        let main = c.main_score();
        if main.is_finite() && progress.best_main_score.is_none_or(|b| main > b) {
            progress.best_main_score = Some(main);
        }
    } else if progress.best_main_score.is_none() {
        progress.best_main_score = Some(f64::NEG_INFINITY);
        line["main_score"] = f64::NEG_INFINITY.into();
    }
    progress.last_metrics = Some(line.clone());
    let mut text = std::fs::read_to_string(log_path).unwrap_or_default();
    text.push_str(&line.to_string());
    text.push('\n');
    write_atomic(log_path, text.as_bytes())
}
