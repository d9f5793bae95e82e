//! A training run: its setup (new, or resumed from the run directory), the loop over epochs
//! and batches, validation with its log, and the checkpoints.

use super::config::{lr_at, TrainConfig};
use super::precise_bn::{precise_bn_loader, precise_bn_pairs, precise_bn_statistics, with_tensors};
use super::resume::{self, read_resume, Progress, Resumed, TrainingState};
use super::{TrainOptions, TrainSummary};
use crate::data::{
    self, BatchLoader, Dataset, DatasetFormat, Direction, LabelScaler, LoaderConfig,
};
use crate::files::write_atomic;
use crate::gpu::{Gpu, Tensor};
use crate::metrics;
use crate::model::asna::{self, SIZE};
use crate::model::checkpoint::{self, check_architecture, load_store};
use crate::model::params::ParamStore;
use crate::model::sorter;
use crate::model::weights::TensorFile;
use crate::ops::adam::AdamConfig;
use crate::optim::{train_step, Adam};
use crate::run_dir::{
    BASELINES_FILE, BEST_CHECKPOINT, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE, RUN_FILES,
    SPLIT_FILE,
};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shipped sorter, used unless `--sorter` names another.
const DEFAULT_SORTER: &[u8] = include_bytes!("../../weights/sorter.safetensors");

/// A run being trained: its data and split, the model and optimiser, and where it stands.
pub(super) struct Run<'g> {
    gpu: &'g Gpu,
    cfg: TrainConfig,
    opts: TrainOptions,
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
    pub(super) fn setup(
        gpu: &'g Gpu,
        cfg: TrainConfig,
        run_dir: &Path,
        resume: bool,
        opts: TrainOptions,
    ) -> Result<Run<'g>> {
        let (mut cfg, ds, progress, store, adam, resumed_scaler) = if resume {
            let last = run_dir.join(LAST_CHECKPOINT);
            let r: Resumed = read_resume(gpu, &last)?;
            // A resumed run keeps its configuration; only how far it goes may change.
            let cfg = TrainConfig {
                max_steps: cfg.max_steps,
                epochs: cfg.epochs,
                ..r.cfg
            };
            cfg.check().map_err(|e| {
                anyhow!(
                    "{}: the stored training configuration is invalid: {e}",
                    last.display()
                )
            })?;
            // Progress past what any configuration allows is damage, not a run to go on with.
            if r.progress.epoch > 1_000_000 || r.progress.step > 1_000_000_000 {
                bail!(
                    "{}: the stored progress is invalid (epoch {}, step {})",
                    last.display(),
                    r.progress.epoch,
                    r.progress.step
                );
            }
            let ds = open(&cfg)?;
            (cfg, ds, r.progress, r.store, r.adam, Some(r.scaler))
        } else {
            if run_dir.join(LAST_CHECKPOINT).exists() {
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
        // Nothing the run writes may be one of its inputs: its labels, --init, --sorter, or an
        // image kept in the run directory.
        let outputs: Vec<PathBuf> = RUN_FILES.iter().map(|f| run_dir.join(f)).collect();
        let outputs: Vec<(&str, &Path)> = outputs.iter().map(|p| ("--out", p.as_path())).collect();
        crate::files::refuse_overwriting_inputs(
            &outputs,
            std::iter::once(ds.labels_file.as_path())
                .chain(cfg.init.as_deref())
                .chain(cfg.sorter.as_deref())
                .chain(
                    ds.pairs
                        .iter()
                        .flat_map(|p| [p.ref_path.as_path(), p.dist_path.as_path()]),
                ),
        )?;
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
            opts,
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
            precise: None,
            validated_step: None,
        };
        run.write_run_files()?;
        run.write_baselines()?;
        Ok(run)
    }

    /// The training loop: epochs of batches, a checkpoint every `checkpoint_every` steps and
    /// at each epoch's end, until the epochs or `max_steps` are done.
    pub(super) fn train_loop(&mut self) -> Result<TrainSummary> {
        let bar = crate::progress::bar(
            self.total_steps,
            self.opts.progress_bar,
            crate::progress::STEPS,
        );
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
                workers: self.opts.workers,
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
                    self.checkpoint_validated(last_loss)?;
                } else if self.progress.step % self.cfg.checkpoint_every.max(1) == 0 {
                    self.save(LAST_CHECKPOINT)?;
                }
                if self.progress.step >= self.total_steps {
                    break 'epochs;
                }
            }
            self.progress.epoch += 1;
            self.progress.batch = 0;
            self.checkpoint_validated(last_loss)?;
        }
        if self.progress.batch > 0 {
            // Stopped by --max-steps inside an epoch: the last step is validated too, so that
            // the best checkpoint is the best of every model the run validated.
            self.checkpoint_validated(last_loss)?;
        }
        if !self.run_dir.join(BEST_CHECKPOINT).exists() {
            // No validation scored (no validation pairs, or constant predictions): the last
            // model is the best there is.
            self.save(BEST_CHECKPOINT)?;
        }
        bar.finish_and_clear();
        Ok(TrainSummary {
            steps: self.progress.step,
            last_loss,
            losses,
            best_main_score: self.progress.best_main_score,
        })
    }

    /// End of an epoch, a `val_every` step or a run stopped inside an epoch: validates
    /// (once per step), logs, and keeps the last checkpoint and, when validation improved,
    /// the best.
    fn checkpoint_validated(&mut self, last_loss: f32) -> Result<()> {
        if self.validated_step != Some(self.progress.step) {
            self.validate_and_log(last_loss)?;
            self.validated_step = Some(self.progress.step);
        }
        self.save(LAST_CHECKPOINT)?;
        let improved = self
            .progress
            .last_metrics
            .as_ref()
            .and_then(|m| m["main_score"].as_f64())
            == self.progress.best_main_score
            && self.progress.best_main_score.is_some();
        if improved {
            self.save(BEST_CHECKPOINT)?;
        }
        Ok(())
    }

    /// Validates the model as it is saved (with the precise statistics), keeps the best score
    /// and appends the metrics to the run's log.
    fn validate_and_log(&mut self, last_loss: f32) -> Result<()> {
        let precise = self.evaluation_store()?;
        let progress = &self.progress;
        let mut line = serde_json::json!({"epoch": progress.epoch, "step": progress.step, "train_loss": last_loss});
        if !self.val_idx.is_empty() {
            let c = validate(
                self.gpu,
                precise.as_ref().unwrap_or(&self.store),
                &self.ds,
                &self.val_idx,
                &self.targets,
                self.opts.workers,
            )?;
            line["val_pairs"] = c.n.into();
            line["plcc"] = c.plcc.into();
            line["srcc"] = c.srcc.into();
            line["krcc"] = c.krcc.into();
            line["main_score"] = c.main_score().into();
            let main = c.main_score();
            let best = &mut self.progress.best_main_score;
            if main.is_finite() && best.is_none_or(|b| main > b) {
                *best = Some(main);
            }
        } else if self.progress.best_main_score.is_none() {
            self.progress.best_main_score = Some(f64::NEG_INFINITY);
            line["main_score"] = f64::NEG_INFINITY.into();
        }
        self.progress.last_metrics = Some(line.clone());
        let log_path = self.run_dir.join(METRICS_FILE);
        let mut text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.push_str(&line.to_string());
        text.push('\n');
        write_atomic(&log_path, text.as_bytes())
    }

    /// The model as validated and saved at the current step: the trained parameters with the
    /// precise batch-norm statistics (computed once per step), or None when precise BN is off
    /// and the store itself is that model.
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
            precise_bn_loader(self.cfg.batch, self.opts.workers),
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
        let mut meta = resume::metadata(&self.scaler, &self.cfg, &self.progress)?;
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
            &self.run_dir.join(SPLIT_FILE),
            serde_json::to_string_pretty(&split)?.as_bytes(),
        )?;
        write_atomic(
            &self.run_dir.join(CONFIG_FILE),
            serde_json::to_string_pretty(&self.cfg)?.as_bytes(),
        )
    }

    /// The correlations of PSNR, SSIM, MS-SSIM and GMSD (negated: every row rises with
    /// quality) with the labels on the validation pairs, once per run: the lines `asna
    /// plot-run` draws beside the learning curve.
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
        let mut baselines = Vec::with_capacity(list.len());
        for pair in crate::data::decode_pairs_in_background(list, SIZE as u32, 16) {
            let (r, d) = pair?;
            baselines.push(crate::ops::quality::baselines(self.gpu, &r, &d)?);
        }
        let mut v = serde_json::json!({"val_pairs": truth.len()});
        let rows = crate::eval::baseline_rows(&baselines, &truth);
        for (name, c) in &rows {
            let (key, _, _) = crate::plot_run::BASELINE_METHODS
                .iter()
                .find(|m| m.1 == name)
                .expect("every baseline row has a baselines.json key");
            v[*key] = serde_json::json!({"plcc": c.plcc, "srcc": c.srcc, "krcc": c.krcc});
        }
        write_atomic(&path, serde_json::to_string_pretty(&v)?.as_bytes())
    }
}

/// Validation: evaluation-mode predictions on centre crops of the validation pairs.
fn validate(
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
        let z = gpu.download(&asna::predict(gpu, store, &b.ref_u8, &b.dist_u8, b.n, None))?;
        pred.extend(z.iter().map(|v| *v as f64));
        truth.extend(b.targets.iter().map(|v| *v as f64));
    }
    Ok(metrics::correlations(&pred, &truth))
}

/// The sorter of the ranking loss: `path`, or the shipped one.
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

/// The run's dataset, as `--dataset`, `--root`, `--labels` and `--direction` describe it.
fn open(cfg: &TrainConfig) -> Result<Dataset> {
    let format: DatasetFormat = cfg.dataset.parse().map_err(|e| anyhow!("--dataset: {e}"))?;
    let direction = match &cfg.direction {
        Some(d) => Some(
            d.parse::<Direction>()
                .map_err(|_| anyhow!("--direction must be \"higher\" or \"lower\""))?,
        ),
        None => None,
    };
    let root = cfg
        .root
        .as_deref()
        .ok_or_else(|| anyhow!("--root: no dataset root"))?;
    data::open_dataset(format, root, cfg.labels.as_deref(), direction)
}
