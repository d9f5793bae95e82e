//! What makes a run resume exactly: where it stands (`Progress`) and its configuration in the
//! checkpoint's metadata, and beside the model Adam's moments and, when the saved batch-norm
//! statistics are the precise ones, the running statistics that training goes on updating.

use super::precise_bn::running_statistics;
use super::TrainConfig;
use crate::data::LabelScaler;
use crate::gpu::Gpu;
use crate::model::asna;
use crate::model::checkpoint::{
    self, check_architecture, load_store, model_metadata, FileTensors, ResumeState,
};
use crate::model::params::ParamStore;
use crate::model::weights::TensorFile;
use crate::optim::Adam;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Prefix of the running statistics saved beside the precise ones in a checkpoint.
const RUNNING_PREFIX: &str = "running.";

/// Where a run stands: the next batch to run is `batch` of `epoch`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub epoch: u64,
    pub batch: usize,
    pub step: u64,
    pub best_main_score: Option<f64>,
    pub last_metrics: Option<serde_json::Value>,
}

/// A checkpoint's metadata: the model's (label scale), the configuration and the progress.
pub(super) fn metadata(
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

/// A run as its last checkpoint left it.
pub(super) struct Resumed {
    pub cfg: TrainConfig,
    pub progress: Progress,
    /// The parameters with the running batch-norm statistics, as training left them.
    pub store: ParamStore,
    pub adam: Adam,
    pub scaler: LabelScaler,
}

/// Reads the last checkpoint in `path` for `--resume`.
pub(super) fn read_resume(gpu: &Gpu, path: &Path) -> Result<Resumed> {
    let source = path.display().to_string();
    if !path.is_file() {
        bail!("{source}: no checkpoint to resume from");
    }
    let file = TensorFile::read(path)?;
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
    Ok(Resumed {
        cfg,
        progress,
        store,
        adam,
        scaler,
    })
}

/// What a checkpoint saved with precise statistics needs to resume: Adam's state and the
/// running statistics that training keeps updating.
pub(super) struct TrainingState<'a> {
    pub adam: &'a Adam,
    pub running: &'a ParamStore,
}

impl ResumeState for TrainingState<'_> {
    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        self.adam.metadata()
    }
    fn file_tensors(&self, gpu: &Gpu, store: &ParamStore) -> Result<FileTensors> {
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
