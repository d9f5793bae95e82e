//! Precise batch norm: the batch-norm statistics that validation and saved models use,
//! recomputed over fixed training batches in place of the running statistics (which lag
//! behind the weights by their momentum).

use crate::autograd::Tape;
use crate::data::{self, Batch, LoaderConfig};
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::asna::{forward, stacked_input, BnContext, Bound, SIZE};
use crate::model::params::{ParamSpec, ParamStore};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

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
    batches: impl IntoIterator<Item = Result<Batch>>,
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
        let mut bn = BnContext::train(&zeroed);
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
pub(super) fn running_statistics(store: &ParamStore) -> impl Iterator<Item = &ParamSpec> {
    store.specs.iter().filter(|s| !s.trainable)
}

/// A copy of `store` (sharing its tensors) with some of them replaced.
pub(super) fn with_tensors(store: &ParamStore, replaced: &BTreeMap<String, Tensor>) -> ParamStore {
    let mut s = ParamStore {
        specs: store.specs.clone(),
        values: store.values.clone(),
    };
    for (name, t) in replaced {
        s.set(name, t.clone());
    }
    s
}
