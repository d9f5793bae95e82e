//! Optimisation: Adam over a parameter store (first and second moments per parameter, step
//! count, the update launched on the GPU), the optimiser step every trainer ends its steps
//! with, and ASNA's training step on one batch (`asna train`, `asna bench`).

use crate::autograd::Tape;
use crate::data::Batch;
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::asna::{forward, stacked_input, BnContext, Bound};
use crate::model::checkpoint::{FileTensors, ResumeState};
use crate::model::loss::{asna_loss, LossWeights};
use crate::model::params::{to_engine, to_file, ParamStore};
use crate::model::weights::TensorFile;
use crate::ops::adam::{self, AdamConfig};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

pub struct Adam {
    pub cfg: AdamConfig,
    pub t: u64,
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(cfg: AdamConfig) -> Adam {
        Adam {
            cfg,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One step at learning rate `lr` on every parameter that has a gradient.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        store: &ParamStore,
        grads: &BTreeMap<String, Tensor>,
        lr: f32,
    ) {
        self.t += 1;
        for (name, g) in grads {
            let p = store.get(name);
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| gpu.zeros(&p.shape))
                .clone();
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| gpu.zeros(&p.shape))
                .clone();
            adam::step(gpu, &self.cfg, lr, self.t, p, &m, &v, g);
        }
    }
}

/// Adam's moments go into a checkpoint as `adam.m.NAME` / `adam.v.NAME` in the parameters'
/// file layouts, its step count and settings as metadata.
impl ResumeState for Adam {
    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        m.insert("adam_t".into(), self.t.to_string());
        m.insert("adam".into(), serde_json::to_string(&self.cfg)?);
        Ok(m)
    }

    fn file_tensors(&self, gpu: &Gpu, store: &ParamStore) -> Result<FileTensors> {
        let mut tensors = Vec::new();
        for spec in store.specs.iter().filter(|s| s.trainable) {
            if let (Some(m), Some(v)) = (self.m.get(&spec.name), self.v.get(&spec.name)) {
                for (which, t) in [("m", m), ("v", v)] {
                    tensors.push((
                        format!("adam.{which}.{}", spec.name),
                        spec.file_shape.clone(),
                        to_file(spec, &gpu.download(t)?),
                    ));
                }
            }
        }
        Ok(tensors)
    }
}

impl Adam {
    /// Adam's state from a checkpoint saved with it (None when it holds none).
    pub fn load(
        gpu: &Gpu,
        file: &TensorFile,
        store: &ParamStore,
        source: &str,
    ) -> Result<Option<Adam>> {
        let Some(t) = file.metadata.get("adam_t") else {
            return Ok(None);
        };
        let t: u64 = t.parse().map_err(|_| anyhow!("{source}: bad adam_t"))?;
        let cfg = serde_json::from_str(
            file.metadata
                .get("adam")
                .ok_or_else(|| anyhow!("{source}: lacks adam settings"))?,
        )
        .map_err(|e| anyhow!("{source}: bad adam settings ({e})"))?;
        let mut adam = Adam::new(cfg);
        adam.t = t;
        for spec in store.specs.iter().filter(|s| s.trainable) {
            for (which, map) in [("m", &mut adam.m), ("v", &mut adam.v)] {
                let key = format!("adam.{which}.{}", spec.name);
                let (shape, data) = file
                    .float(&key)
                    .ok_or_else(|| anyhow!("{source}: missing tensor \"{key}\""))?;
                if shape != spec.file_shape {
                    bail!(
                        "{source}: tensor \"{key}\" has shape {shape:?}, expected {:?}",
                        spec.file_shape
                    );
                }
                map.insert(
                    spec.name.clone(),
                    gpu.upload(&spec.engine_shape(), &to_engine(spec, &data)),
                );
            }
        }
        Ok(Some(adam))
    }
}

/// The end of every training step, once `tape.backward(loss)` has run: each trainable
/// parameter's gradient taken from the tape, Adam at `lr`, then the batch-norm running
/// statistics that the training-mode forward pass reported. The tape is dropped before Adam
/// runs, so that its saved activations go back to the buffer pool for the next step.
pub fn optimiser_step(
    gpu: &Gpu,
    mut tape: Tape,
    params: &Bound,
    store: &mut ParamStore,
    adam: &mut Adam,
    bn_updates: BTreeMap<String, Tensor>,
    lr: f32,
) {
    let mut grads = BTreeMap::new();
    for name in store.trainable_names() {
        if let Some(g) = tape.take_grad(params.var(&name)) {
            grads.insert(name, g);
        }
    }
    drop(tape);
    adam.step(gpu, store, &grads, lr);
    for (name, t) in bn_updates {
        store.set(&name, t);
    }
}

/// One ASNA training step on one batch: the training-mode forward pass, the loss (with the
/// frozen sorter when `sorter_store` is given), backward and `optimiser_step`. Returns the
/// loss, or None for a skipped non-finite batch. A non-finite loss never reaches the
/// parameters.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    gpu: &Gpu,
    store: &mut ParamStore,
    adam: &mut Adam,
    sorter_store: Option<&ParamStore>,
    weights: &LossWeights,
    batch: &Batch,
    lr: f32,
    step: u64,
    skip_nonfinite: bool,
) -> Result<Option<f32>> {
    let n = batch.n;
    let mut tape = Tape::new(gpu);
    let params = Bound::new(&mut tape, store, true);
    let sorter_params = sorter_store.map(|s| Bound::new(&mut tape, s, false));
    let x = stacked_input(
        &mut tape,
        &batch.ref_u8,
        &batch.dist_u8,
        n,
        batch.size,
        DType::F32,
    );
    let target = tape.leaf(gpu.upload(&[n], &batch.targets), false);
    let mut bn = BnContext::train(store);
    let pred = forward(&mut tape, &params, &mut bn, &x, None);
    let bn_updates = std::mem::take(&mut bn.updates);
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
    optimiser_step(gpu, tape, &params, store, adam, bn_updates, lr);
    Ok(Some(loss))
}
