//! `asna train`: the ASNA training loop. Data from a dataset reader, split by reference image,
//! labels standardised on the training set; batches of 16 pairs decoded and augmented on
//! background threads; loss `m*mse + (1-m)*(1-r^2) + s*rank + l2` with the frozen sorter; Adam
//! with the step schedule; validation every epoch; checkpoints that resume exactly.

use crate::autograd::Tape;
use crate::data::{
    self, BatchLoader, Dataset, DatasetFormat, Direction, LabelScaler, LoaderConfig,
};
use crate::gpu::Gpu;
use crate::metrics;
use crate::model::asna::{self, forward, BnContext, Bound, SIZE};
use crate::model::checkpoint::{self, check_architecture, load_adam, load_store, model_metadata};
use crate::model::loss::{asna_loss, LossWeights};
use crate::model::params::ParamStore;
use crate::model::sorter;
use crate::model::weights::{write_atomic, TensorFile};
use crate::ops::adam::AdamConfig;
use crate::optim::Adam;
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
}

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
        }
    }
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
            std::fs::read(p).map_err(|e| anyhow!("{}: cannot read ({e})", p.display()))?,
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

fn lr_at(cfg: &TrainConfig, epoch: u64) -> f32 {
    if epoch >= cfg.lr_decay_epoch {
        cfg.lr * cfg.lr_decay
    } else {
        cfg.lr
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
        let z = gpu.download(&crate::scorer::predict_standard(
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
    let store = load_store(gpu, &file, &asna::specs(), &source)?;
    let adam = load_adam(gpu, &file, &store, &source)?
        .ok_or_else(|| anyhow!("{source}: holds no optimiser state"))?;
    let scaler = checkpoint::scaler_from_metadata(&file.metadata, &source)?;
    Ok((cfg, progress, store, adam, scaler))
}

/// Trains; `resume` continues the run in `run_dir` exactly where its last checkpoint left it.
pub fn train(
    gpu: &Gpu,
    cfg: TrainConfig,
    run_dir: &Path,
    resume: bool,
    opts: &TrainOptions,
) -> Result<TrainSummary> {
    // The dataset is read and checked before any GPU work and before the run directory is
    // created, so a bad label file fails fast and leaves nothing behind.
    let (cfg, ds, mut progress, mut store, mut adam, resumed_scaler) = if resume {
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
    let refs_of = |idx: &[usize]| -> Vec<String> {
        let set: std::collections::BTreeSet<String> = idx
            .iter()
            .map(|&i| ds.pairs[i].ref_path.display().to_string())
            .collect();
        set.into_iter().collect()
    };
    let split_json = serde_json::json!({"train_references": refs_of(&train_idx), "validation_references": refs_of(&val_idx)});
    let scaler = resumed_scaler.unwrap_or_else(|| LabelScaler::fit(&train_scores, ds.direction));
    let targets: Arc<Vec<f32>> = Arc::new(
        ds.pairs
            .iter()
            .map(|p| scaler.to_standard(p.score) as f32)
            .collect(),
    );
    let pairs = Arc::new(ds.pairs.clone());
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
    let log_path = run_dir.join("metrics.jsonl");
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run directory", run_dir.display()))?;
    write_atomic(
        &run_dir.join("split.json"),
        serde_json::to_string_pretty(&split_json)?.as_bytes(),
    )?;
    let config_path = run_dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&cfg)?)
        .with_context(|| format!("{}: cannot write", config_path.display()))?;

    let bar = if opts.progress_bar {
        let b = indicatif::ProgressBar::new(total_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len}  {msg}  ETA {eta}")
                .unwrap(),
        );
        b.set_position(progress.step);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let save = |store: &ParamStore, adam: &Adam, progress: &Progress, name: &str| -> Result<()> {
        checkpoint::save(
            gpu,
            &run_dir.join(name),
            store,
            Some(adam),
            &metadata(&scaler, &cfg, progress)?,
        )
    };

    let mut losses = Vec::new();
    let mut last_loss = f32::NAN;
    let started = std::time::Instant::now();
    let mut pairs_done = 0usize;
    'epochs: while progress.epoch < cfg.epochs && progress.step < total_steps {
        let order: Vec<usize> = data::epoch_order(train_idx.len(), cfg.seed, progress.epoch, true)
            .into_iter()
            .map(|i| train_idx[i])
            .collect();
        let lcfg = LoaderConfig {
            batch: cfg.batch,
            size: SIZE,
            train: true,
            augment: cfg.augment,
            workers: opts.workers,
            seed: cfg.seed,
            drop_last: true,
        };
        let loader = BatchLoader::new(
            pairs.clone(),
            order,
            targets.clone(),
            lcfg,
            progress.epoch,
            progress.batch,
        );
        let lr = lr_at(&cfg, progress.epoch);
        for batch in loader {
            let batch = batch?;
            let loss = train_step(
                gpu,
                &mut store,
                &mut adam,
                sorter.as_ref(),
                &cfg.loss,
                &batch,
                lr,
                progress.step,
                cfg.skip_nonfinite,
            )?;
            progress.batch += 1;
            progress.step += 1;
            pairs_done += batch.n;
            if let Some(l) = loss {
                last_loss = l;
                losses.push(l);
            }
            let rate = pairs_done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(progress.step);
            bar.set_message(format!(
                "epoch {} loss {:.4}  {:.1} pairs/s",
                progress.epoch + 1,
                last_loss,
                rate
            ));
            if progress.step % cfg.checkpoint_every == 0 {
                save(&store, &adam, &progress, "last.safetensors")?;
            }
            if progress.step >= total_steps {
                break 'epochs;
            }
        }
        // End of epoch: validate, log, keep the best and the last checkpoint.
        progress.epoch += 1;
        progress.batch = 0;
        end_of_epoch(
            gpu,
            &store,
            &ds,
            &val_idx,
            &targets,
            opts,
            &mut progress,
            &log_path,
            last_loss,
        )?;
        save(&store, &adam, &progress, "last.safetensors")?;
        if progress
            .last_metrics
            .as_ref()
            .and_then(|m| m["main_score"].as_f64())
            == progress.best_main_score
            && progress.best_main_score.is_some()
        {
            save(&store, &adam, &progress, "best.safetensors")?;
        }
    }
    if progress.batch > 0 {
        // Stopped by --max-steps inside an epoch.
        save(&store, &adam, &progress, "last.safetensors")?;
        if !run_dir.join("best.safetensors").exists() {
            end_of_epoch(
                gpu,
                &store,
                &ds,
                &val_idx,
                &targets,
                opts,
                &mut progress,
                &log_path,
                last_loss,
            )?;
            save(&store, &adam, &progress, "last.safetensors")?;
            save(&store, &adam, &progress, "best.safetensors")?;
        }
    }
    bar.finish_and_clear();
    Ok(TrainSummary {
        steps: progress.step,
        last_loss,
        losses,
        best_main_score: progress.best_main_score,
    })
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

/// One optimisation step on one batch. Returns the loss, or None for a skipped non-finite
/// batch. A non-finite loss never reaches the parameters.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    gpu: &Gpu,
    store: &mut ParamStore,
    adam: &mut Adam,
    sorter_store: Option<&ParamStore>,
    weights: &LossWeights,
    batch: &data::Batch,
    lr: f32,
    step: u64,
    skip_nonfinite: bool,
) -> Result<Option<f32>> {
    let n = batch.n;
    let mut stacked = Vec::with_capacity(batch.ref_u8.len() * 2);
    stacked.extend_from_slice(&batch.ref_u8);
    stacked.extend_from_slice(&batch.dist_u8);
    let mut tape = Tape::new(gpu);
    let params = Bound::new(&mut tape, store, true);
    let sorter_params = sorter_store.map(|s| Bound::new(&mut tape, s, false));
    let x = tape.leaf(
        crate::ops::image::to_input(gpu, &stacked, 2 * n, batch.size, batch.size),
        false,
    );
    let target = tape.leaf(gpu.upload(&[n], &batch.targets), false);
    let mut bn = BnContext {
        train: true,
        updates: BTreeMap::new(),
        store,
    };
    let pred = forward(&mut tape, &params, &mut bn, &x, None);
    let updates = std::mem::take(&mut bn.updates);
    let sorter = sorter_store.zip(sorter_params.as_ref());
    let parts = asna_loss(&mut tape, &params, &pred, &target, sorter, weights);
    tape.backward(&parts.total);
    let loss = gpu.download_scalar(&parts.total.t)?;
    if !loss.is_finite() {
        if skip_nonfinite {
            eprintln!("warning: step {}: non-finite loss, batch skipped", step + 1);
            return Ok(None);
        }
        bail!("step {}: the loss is not finite ({loss}); stopped without saving (the last checkpoint is intact); --skip-nonfinite skips such batches", step + 1);
    }
    let mut grads = BTreeMap::new();
    for name in store.trainable_names() {
        if let Some(g) = tape.take_grad(params.var(&name)) {
            grads.insert(name, g);
        }
    }
    drop(tape);
    adam.step(gpu, store, &grads, lr);
    for (name, t) in updates {
        store.set(&name, t);
    }
    Ok(Some(loss))
}
