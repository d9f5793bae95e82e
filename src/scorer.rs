//! Batched inference: pairs of any size (at least 288x288) are covered by 288x288 windows that
//! overlap at the edges, windows of many pairs go through the GPU together in bounded
//! batches, and each pair's score is the mean over its windows (and over test-time variants
//! and ensemble members when asked).

use crate::data::{Augment, LabelScaler};
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::asna::{predict, predict_shared, Taps, SIZE};
use crate::model::checkpoint::LoadedModel;
use anyhow::{bail, Result};
use image::RgbImage;
use std::borrow::{Borrow, Cow};

/// Window origins along one axis of length `len` >= 288: as few windows as cover it, evenly
/// spread from one edge to the other (so neighbours overlap where the size is not a multiple).
pub fn window_starts(len: usize) -> Vec<usize> {
    assert!(len >= SIZE);
    let count = len.div_ceil(SIZE);
    if count == 1 {
        return vec![0];
    }
    (0..count)
        .map(|i| ((i * (len - SIZE)) as f64 / (count - 1) as f64).round() as usize)
        .collect()
}

/// Every 288x288 window origin (x, y) of a w x h image, row by row.
pub fn windows(w: usize, h: usize) -> Vec<(usize, usize)> {
    let (xs, ys) = (window_starts(w), window_starts(h));
    ys.iter()
        .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
        .collect()
}

/// Storage precision of the scoring pass (`--precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    /// f16 activations and weights, convolution blocks in f16 with f32 accumulation; needs an
    /// adapter with shader-f16.
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }
}

/// Whether this adapter can score in `dtype`; the error is one line naming the adapter.
pub fn check_precision(gpu: &Gpu, dtype: DType) -> Result<()> {
    if dtype == DType::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
        bail!(
            "--precision f16 needs shader-f16, which adapter \"{}\" does not offer; use --precision f32",
            gpu.info.name
        );
    }
    Ok(())
}

/// Bytes of the largest activation one pair needs in the forward pass (the 24-channel
/// concatenation at full resolution), which bounds the batch by the adapter's binding size.
pub const BYTES_PER_PAIR: u64 = (SIZE * SIZE * 24 * 4) as u64;

/// The largest batch of pairs the adapter can hold in one binding, capped by `wanted`.
pub fn max_batch(gpu: &Gpu, wanted: usize) -> usize {
    ((gpu.max_binding() / BYTES_PER_PAIR) as usize).clamp(1, wanted.max(1))
}

fn crop_into(img: &RgbImage, x: usize, y: usize, out: &mut Vec<u8>) {
    let w = img.width() as usize;
    let raw = img.as_raw();
    for row in y..y + SIZE {
        out.extend_from_slice(&raw[(row * w + x) * 3..(row * w + x + SIZE) * 3]);
    }
}

pub struct Scorer<'g> {
    pub gpu: &'g Gpu,
    pub models: Vec<LoadedModel>,
    pub batch: usize,
    pub tta: bool,
    /// Whether pairs of one batch that share a reference crop run the encoder on it once
    /// (on by default; the scores are the same either way).
    pub share_references: bool,
}

/// One pair's windows, queued for the GPU.
struct Job {
    pair: usize,
    ref_px: Vec<u8>,
    dist_px: Vec<u8>,
}

impl<'g> Scorer<'g> {
    pub fn new(gpu: &'g Gpu, models: Vec<LoadedModel>, batch: usize, tta: bool) -> Scorer<'g> {
        let batch = max_batch(gpu, batch);
        Scorer {
            gpu,
            models,
            batch,
            tta,
            share_references: true,
        }
    }

    /// Scores in `dtype`: for f16 each model's weights are converted once here, and every
    /// activation of the forward pass is then stored in f16 (sums across K blocks stay f32).
    pub fn with_precision(mut self, dtype: DType) -> Result<Self> {
        check_precision(self.gpu, dtype)?;
        for m in &mut self.models {
            m.store = m.store.to_dtype(self.gpu, dtype)?;
        }
        Ok(self)
    }

    fn variants(&self) -> Vec<Augment> {
        if self.tta {
            crate::data::tta_variants()
        } else {
            vec![Augment::identity()]
        }
    }

    /// Standardised scores of `n` stacked 288x288 pairs for one model.
    pub fn forward_standard(
        &self,
        model: &LoadedModel,
        ref_px: &[u8],
        dist_px: &[u8],
        n: usize,
        taps: Option<&mut Taps>,
    ) -> Result<Tensor> {
        Ok(predict(self.gpu, &model.store, ref_px, dist_px, n, taps))
    }

    /// Standardised scores of `n` pairs whose references are the distinct crops `refs_px`,
    /// pair i's being `ref_of[i]`: the encoder runs once per distinct reference.
    pub fn forward_standard_shared(
        &self,
        model: &LoadedModel,
        refs_px: &[u8],
        dist_px: &[u8],
        ref_of: &[usize],
    ) -> Result<Tensor> {
        Ok(predict_shared(
            self.gpu,
            &model.store,
            refs_px,
            dist_px,
            ref_of,
            None,
        ))
    }

    fn run_batch(&self, jobs: &[Job], sums: &mut [f64], counts: &mut [usize]) -> Result<()> {
        let n = jobs.len();
        let (distinct, ref_of) = distinct_references(jobs);
        let shared = self.share_references && distinct.len() < n;
        let mut r = Vec::with_capacity(n * SIZE * SIZE * 3);
        let mut d = Vec::with_capacity(n * SIZE * SIZE * 3);
        if shared {
            for &i in &distinct {
                r.extend_from_slice(&jobs[i].ref_px);
            }
        } else {
            for j in jobs {
                r.extend_from_slice(&j.ref_px);
            }
        }
        for j in jobs {
            d.extend_from_slice(&j.dist_px);
        }
        for model in &self.models {
            let z = if shared {
                self.forward_standard_shared(model, &r, &d, &ref_of)?
            } else {
                self.forward_standard(model, &r, &d, n, None)?
            };
            let z = self.gpu.download(&z)?;
            for (j, v) in jobs.iter().zip(z) {
                if !v.is_finite() {
                    bail!("the model produced a non-finite score (corrupt weights?)");
                }
                sums[j.pair] += model.scaler.from_standard(v as f64);
                counts[j.pair] += 1;
            }
        }
        Ok(())
    }

    /// Scores pairs (on the first model's label scale, averaged over windows, variants and
    /// models). `on_done` is called as each pair completes (for progress bars).
    pub fn score_pairs<R: Borrow<RgbImage>, D: Borrow<RgbImage>>(
        &self,
        pairs: &[(R, D)],
        mut on_done: impl FnMut(usize),
    ) -> Result<Vec<f64>> {
        let mut sums = vec![0.0; pairs.len()];
        let mut counts = vec![0usize; pairs.len()];
        let mut queue: Vec<Job> = Vec::new();
        let variants = self.variants();
        for (i, (r, d)) in pairs.iter().enumerate() {
            let (r, d) = (r.borrow(), d.borrow());
            if r.dimensions() != d.dimensions() {
                bail!(
                    "pair {i}: reference {:?} and distorted {:?} differ in size",
                    r.dimensions(),
                    d.dimensions()
                );
            }
            for v in &variants {
                // The identity variant borrows the decoded images instead of copying them.
                let (rv, dv): (Cow<RgbImage>, Cow<RgbImage>) = if v.is_identity() {
                    (Cow::Borrowed(r), Cow::Borrowed(d))
                } else {
                    let (a, b) = v.apply_pair(r, d);
                    (Cow::Owned(a), Cow::Owned(b))
                };
                let (w, h) = (rv.width() as usize, rv.height() as usize);
                if w < SIZE || h < SIZE {
                    bail!("pair {i}: images are {w}x{h}, smaller than the model's {SIZE}x{SIZE} input");
                }
                for (x, y) in windows(w, h) {
                    let mut rp = Vec::with_capacity(SIZE * SIZE * 3);
                    let mut dp = Vec::with_capacity(SIZE * SIZE * 3);
                    crop_into(&rv, x, y, &mut rp);
                    crop_into(&dv, x, y, &mut dp);
                    queue.push(Job {
                        pair: i,
                        ref_px: rp,
                        dist_px: dp,
                    });
                    if queue.len() == self.batch {
                        self.run_batch(&queue, &mut sums, &mut counts)?;
                        queue.clear();
                    }
                }
            }
            if queue.is_empty() {
                on_done(i);
            }
        }
        if !queue.is_empty() {
            self.run_batch(&queue, &mut sums, &mut counts)?;
        }
        on_done(pairs.len());
        Ok(sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| s / *c as f64)
            .collect())
    }

    /// Per-pixel degradation map of one pair (the channel mean of the first encoder scale's
    /// feature difference |y1(R) - y1(D)|, averaged where windows overlap), at the image size.
    pub fn degradation_map(&self, r: &RgbImage, d: &RgbImage) -> Result<Vec<f32>> {
        let (w, h) = (r.width() as usize, r.height() as usize);
        let mut acc = vec![0.0f32; w * h];
        let mut cnt = vec![0.0f32; w * h];
        for (x, y) in windows(w, h) {
            let (mut rp, mut dp) = (Vec::new(), Vec::new());
            crop_into(r, x, y, &mut rp);
            crop_into(d, x, y, &mut dp);
            let mut taps = Taps::default();
            self.forward_standard(&self.models[0], &rp, &dp, 1, Some(&mut taps))?;
            let diff = taps.feature_diff.expect("feature difference tap");
            let c = diff.channels();
            let v = self.gpu.download(&diff)?;
            for yy in 0..SIZE {
                for xx in 0..SIZE {
                    let base = (yy * SIZE + xx) * c;
                    let m = v[base..base + c].iter().sum::<f32>() / c as f32;
                    let o = (y + yy) * w + x + xx;
                    acc[o] += m;
                    cnt[o] += 1.0;
                }
            }
        }
        Ok(acc.iter().zip(&cnt).map(|(a, c)| a / c).collect())
    }
}

/// The jobs whose reference crops are distinct (first of each, in order), and for every job
/// the position of its reference among them: crops are compared byte for byte.
fn distinct_references(jobs: &[Job]) -> (Vec<usize>, Vec<usize>) {
    use std::collections::HashMap;
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut distinct: Vec<usize> = Vec::new();
    let mut ref_of = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let mut h = DefaultHasher::new();
        j.ref_px.hash(&mut h);
        let same = by_hash.entry(h.finish()).or_default();
        match same.iter().find(|&&k| jobs[distinct[k]].ref_px == j.ref_px) {
            Some(&k) => ref_of.push(k),
            None => {
                same.push(distinct.len());
                ref_of.push(distinct.len());
                distinct.push(i);
            }
        }
    }
    (distinct, ref_of)
}

/// Scores in the scale of `scaler` from standardised values.
pub fn to_scale(scaler: &LabelScaler, z: &[f32]) -> Vec<f64> {
    z.iter().map(|v| scaler.from_standard(*v as f64)).collect()
}
