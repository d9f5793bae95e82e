//! Background batch loader: decoding, cropping and augmentation on worker threads (see
//! [`super::background`]), delivered in order and bit-identical whatever the number of workers
//! or the thread timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail};

use super::augment::{center_crop_pair, random_crop_pair, Augment};
use super::background::{InOrder, Names};
use super::datasets::PairRecord;
use super::image_io::{check_min_size, load_pair};
use crate::rng::Rng;

/// A batch of pairs packed as the model's input: `[n, size, size, 3]` RGB bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub ref_u8: Vec<u8>,
    pub dist_u8: Vec<u8>,
    /// `targets[pair index]` for each item.
    pub targets: Vec<f32>,
    /// Pair indices (into the loader's `pairs`) of the items, in batch order.
    pub indices: Vec<usize>,
    pub n: usize,
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch: usize,
    /// Crop side (288 for ASNA).
    pub size: usize,
    /// true: random crop (+ augmentation if `augment`); false: centre crop, never augmented.
    pub train: bool,
    pub augment: bool,
    /// Worker threads; 0 decodes on the calling thread (same output).
    pub workers: usize,
    pub seed: u64,
    /// Drop a final partial batch.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch: 8,
            size: 288,
            train: true,
            augment: true,
            workers: 2,
            seed: 0,
            drop_last: true,
        }
    }
}

/// Stream label for epoch orders (kept apart from the batch streams).
const ORDER_STREAM: u64 = 0x4F52_4445_5221; // "ORDER!"

/// The order of `0..n` for an epoch: a seeded shuffle (deterministic for `seed`, `epoch`),
/// or `0..n` when `shuffle` is false. Callers map these positions onto their own index list.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = Rng::derive(seed ^ ORDER_STREAM, epoch);
        rng.shuffle(&mut v);
    }
    v
}

/// Number of batches for `n_items` items.
pub fn num_batches(n_items: usize, batch: usize, drop_last: bool) -> usize {
    if batch == 0 {
        0
    } else if drop_last {
        n_items / batch
    } else {
        n_items.div_ceil(batch)
    }
}

/// The random stream of batch `batch_index` (absolute within the epoch) of `epoch`.
pub fn batch_rng(seed: u64, epoch: u64, batch_index: usize) -> Rng {
    Rng::derive(
        seed,
        epoch
            .wrapping_mul(1_000_003)
            .wrapping_add(batch_index as u64),
    )
}

/// What every batch of an epoch is built from.
struct Job {
    pairs: Arc<Vec<PairRecord>>,
    indices: Vec<usize>,
    targets: Arc<Vec<f32>>,
    cfg: LoaderConfig,
    epoch: u64,
}

impl Job {
    /// Builds batch `k`. Items draw from the batch's stream in order: crop x, crop y, then the
    /// augmentation (see [`Augment::sample`]).
    fn make_batch(&self, k: usize, stop: &AtomicBool) -> anyhow::Result<Batch> {
        let b = self.cfg.batch;
        let lo = k * b;
        let hi = (lo + b).min(self.indices.len());
        let items = &self.indices[lo..hi];
        let size = self.cfg.size;
        let s32 = u32::try_from(size).map_err(|_| anyhow!("crop size {size} too large"))?;
        let mut rng = batch_rng(self.cfg.seed, self.epoch, k);
        let mut out = Batch {
            ref_u8: Vec::with_capacity(items.len() * size * size * 3),
            dist_u8: Vec::with_capacity(items.len() * size * size * 3),
            targets: Vec::with_capacity(items.len()),
            indices: items.to_vec(),
            n: items.len(),
            size,
        };
        for &i in items {
            if stop.load(Ordering::Relaxed) {
                bail!("batch loader stopped");
            }
            let Some(p) = self.pairs.get(i) else {
                bail!(
                    "batch loader: pair index {i} out of range ({} pairs)",
                    self.pairs.len()
                );
            };
            let Some(&t) = self.targets.get(i) else {
                bail!(
                    "batch loader: no target for pair index {i} ({} targets)",
                    self.targets.len()
                );
            };
            let (r, d) = load_pair(&p.ref_path, &p.dist_path)?;
            check_min_size(&r, &p.ref_path, s32)?;
            check_min_size(&d, &p.dist_path, s32)?;
            let (mut r, mut d) = if self.cfg.train {
                random_crop_pair(&r, &d, s32, &mut rng)?
            } else {
                center_crop_pair(&r, &d, s32)?
            };
            if self.cfg.train && self.cfg.augment {
                let aug = Augment::sample(&mut rng);
                (r, d) = aug.apply_pair(&r, &d);
            }
            out.ref_u8.extend_from_slice(r.as_raw());
            out.dist_u8.extend_from_slice(d.as_raw());
            out.targets.push(t);
        }
        Ok(out)
    }
}

/// Iterator over the batches of one epoch, built on background threads.
///
/// At most `2 * workers` batches are being built or waiting at any time. The first error (an
/// unreadable image, a pair too small to crop, ...) is returned in order and ends the iteration.
/// Dropping the loader stops and joins the workers (each finishes at most its current image).
pub struct BatchLoader {
    batches: InOrder<Batch>,
    end: usize,
}

impl BatchLoader {
    /// `indices`: pair indices in the order to deliver (already shuffled); `targets`: one per
    /// pair index; `start_batch`: first batch to produce (resume), giving exactly the batches
    /// `start_batch..` of a full run.
    pub fn new(
        pairs: Arc<Vec<PairRecord>>,
        indices: Vec<usize>,
        targets: Arc<Vec<f32>>,
        cfg: LoaderConfig,
        epoch: u64,
        start_batch: usize,
    ) -> Self {
        let end = num_batches(indices.len(), cfg.batch, cfg.drop_last);
        let workers = cfg.workers;
        let job = Job {
            pairs,
            indices,
            targets,
            cfg,
            epoch,
        };
        let names = Names {
            what: "batch loader",
            item: "batch",
            thread: "loader",
        };
        let batches = InOrder::new(
            names,
            start_batch.min(end)..end,
            workers,
            2 * workers,
            move |k, stop| job.make_batch(k, stop),
        );
        BatchLoader { batches, end }
    }

    /// Total batches in the epoch (including those skipped by `start_batch`).
    pub fn num_batches(&self) -> usize {
        self.end
    }
}

impl Iterator for BatchLoader {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.batches.size_hint()
    }
}
