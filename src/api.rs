//! The library's front door: [`Model`], which loads an ASNA model onto a GPU adapter and
//! scores image pairs, as `asna score` and the Python package do (both go through it).
//!
//! ```
//! let model = asna::Model::new()?; // the embedded default model, on the preferred adapter
//! let score = model.score_files("data/demo/ref.png", "data/demo/dist.png")?;
//! assert!((score - 3.7397).abs() < 1e-3);
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::data::{decode_pairs_in_background, load_pair_at_least, LabelScaler};
use crate::gpu::{AdapterChoice, Gpu};
use crate::model::asna::SIZE;
use crate::model::checkpoint::{load_models, LoadedModel};
use crate::scorer::{check_precision, Scorer};
use anyhow::{bail, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use crate::scorer::Precision;

/// How a [`Model`] is loaded: which weights, on which adapter, in which precision, with or
/// without test-time variants. [`Model::builder`] starts one with the defaults.
///
/// ```
/// use asna::{Model, Precision};
/// let model = Model::builder()
///     .tta(true)                 // average over the authors' 22 test-time variants
///     .precision(Precision::F32) // F16 needs an adapter with shader-f16
///     .batch(8)                  // 288x288 windows per GPU batch
///     .build()?;
/// assert_eq!(model.batch(), 8);
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ModelBuilder {
    weights: Vec<PathBuf>,
    adapter: Option<String>,
    precision: Precision,
    tta: bool,
    batch: usize,
}

impl Default for ModelBuilder {
    fn default() -> Self {
        ModelBuilder {
            weights: Vec::new(),
            adapter: None,
            precision: Precision::F32,
            tta: false,
            batch: 16,
        }
    }
}

impl ModelBuilder {
    /// Adds a model: an asna `.safetensors` file, or a training run directory (its
    /// `best.safetensors`). Called more than once, the models form an ensemble whose score is
    /// the mean of theirs, on the first one's label scale. None: the embedded default model.
    pub fn weights(mut self, path: impl AsRef<Path>) -> Self {
        self.weights.push(path.as_ref().to_path_buf());
        self
    }

    /// Uses the adapter whose name contains `name` (as `asna --adapter`; `asna devices` lists
    /// them). Default: `WGPU_ADAPTER_NAME` if set, else the preferred adapter (discrete GPUs
    /// first, OpenGL last).
    pub fn adapter(mut self, name: &str) -> Self {
        self.adapter = Some(name.to_string());
        self
    }

    /// Storage precision of weights and activations. Default [`Precision::F32`].
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Averages every score over the authors' test-time variants (rotations, flips and
    /// lightness scales). Default off.
    pub fn tta(mut self, on: bool) -> Self {
        self.tta = on;
        self
    }

    /// 288x288 windows per GPU batch (default 16; at least 1), capped by the adapter's largest
    /// binding.
    pub fn batch(mut self, windows: usize) -> Self {
        self.batch = windows.max(1);
        self
    }

    /// Opens the adapter and loads the models.
    pub fn build(self) -> Result<Model> {
        let gpu = Gpu::new(&AdapterChoice::from_arg(self.adapter.as_deref()))?;
        self.build_on(gpu)
    }

    /// Loads the models on an adapter already opened (the builder's adapter is not used).
    pub fn build_on(self, gpu: Rc<Gpu>) -> Result<Model> {
        let dtype = self.precision.dtype();
        check_precision(&gpu, dtype)?;
        let models = load_models(&gpu, &self.weights)?;
        let scorer = Scorer::new(&gpu, models, self.batch, self.tta).with_precision(dtype)?;
        let (models, batch) = (scorer.models, scorer.batch);
        Ok(Model {
            gpu,
            models,
            batch,
            tta: self.tta,
            precision: self.precision,
        })
    }
}

/// An ASNA model (or an ensemble) loaded on a GPU adapter.
///
/// Scores are predicted mean opinion scores on the scale of the labels the model was trained
/// on ([`Model::scale`]), higher for better images. Images of any size of at least 288x288
/// are covered by 288x288 windows overlapping at the edges, and a pair's score is the mean
/// over its windows (and variants and models). A `Model` holds its GPU device and stays on the
/// thread that made it.
pub struct Model {
    gpu: Rc<Gpu>,
    models: Vec<LoadedModel>,
    batch: usize,
    tta: bool,
    precision: Precision,
}

/// Where a model sees degradation in a pair: the channel mean of the first encoder scale's
/// feature difference |f(R) - f(D)|, per pixel, averaged where windows overlap.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityMap {
    pub width: u32,
    pub height: u32,
    /// Row-major, `width * height` values; 0 where the two images agree.
    pub values: Vec<f32>,
}

impl Model {
    /// The embedded default model on the preferred adapter, in f32, without test-time
    /// variants: `Model::builder().build()`.
    pub fn new() -> Result<Model> {
        Model::builder().build()
    }

    /// A builder with the defaults (see [`ModelBuilder`]).
    pub fn builder() -> ModelBuilder {
        ModelBuilder::default()
    }

    /// Scores one pair of decoded images (same size, at least 288x288).
    ///
    /// ```
    /// let model = asna::Model::new()?;
    /// let reference = image::open("data/demo/ref.png")?.to_rgb8();
    /// let distorted = image::open("data/demo/dist.png")?.to_rgb8();
    /// let same = model.score(&reference, &reference)?;
    /// let worse = model.score(&reference, &distorted)?;
    /// assert!(worse < same);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn score(&self, reference: &RgbImage, distorted: &RgbImage) -> Result<f64> {
        check_pair(reference, distorted, "the pair")?;
        Ok(self
            .scorer()
            .score_pairs(&[(reference, distorted)], |_| {})?[0])
    }

    /// Scores pairs of decoded images, batched on the GPU: windows of several pairs share a
    /// batch. The scores equal [`Model::score`]'s one pair at a time.
    ///
    /// ```
    /// let model = asna::Model::new()?;
    /// let reference = image::open("data/demo/ref.png")?.to_rgb8();
    /// let distorted = image::open("data/demo/dist.png")?.to_rgb8();
    /// let scores = model.score_batch(&[(reference.clone(), distorted), (reference.clone(), reference)])?;
    /// assert_eq!(scores.len(), 2);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn score_batch(&self, pairs: &[(RgbImage, RgbImage)]) -> Result<Vec<f64>> {
        for (i, (r, d)) in pairs.iter().enumerate() {
            check_pair(r, d, &format!("pair {i}"))?;
        }
        self.scorer().score_pairs(pairs, |_| {})
    }

    /// Scores one pair of image files (PNG, JPEG, WebP, TIFF or BMP, recognised by content).
    /// Errors name the file.
    pub fn score_files(
        &self,
        reference: impl AsRef<Path>,
        distorted: impl AsRef<Path>,
    ) -> Result<f64> {
        let (r, d) = load_pair_at_least(reference.as_ref(), distorted.as_ref(), SIZE as u32)?;
        Ok(self.scorer().score_pairs(&[(r, d)], |_| {})?[0])
    }

    /// Scores pairs of image files in order, decoding on background threads ahead of the GPU
    /// with memory bounded by bytes (as `asna score --pairs`); `on_scored(done, total)` is
    /// called after each chunk. The first file that cannot be read ends it with an error
    /// naming the file.
    pub fn score_file_pairs(
        &self,
        pairs: &[(PathBuf, PathBuf)],
        mut on_scored: impl FnMut(usize, usize),
    ) -> Result<Vec<f64>> {
        let mut scores = Vec::with_capacity(pairs.len());
        self.score_file_chunks(pairs, |_, chunk| {
            scores.extend_from_slice(chunk);
            on_scored(scores.len(), pairs.len());
            Ok(())
        })?;
        Ok(scores)
    }

    /// [`Model::score_file_pairs`] handing each chunk's scores to `on_chunk(first index,
    /// scores)` as it is scored (for writing rows as they come).
    pub fn score_file_chunks(
        &self,
        pairs: &[(PathBuf, PathBuf)],
        mut on_chunk: impl FnMut(usize, &[f64]) -> Result<()>,
    ) -> Result<()> {
        let scorer = self.scorer();
        // Chunks of a few batches (and at most half the decoding budget): decoding of the next
        // chunk overlaps the GPU on this one.
        let chunk = scorer.batch * 4;
        let mut decoded = decode_pairs_in_background(pairs.to_vec(), SIZE as u32, chunk * 2);
        let mut start = 0;
        while start < pairs.len() {
            let images = crate::data::next_chunk(&mut decoded, chunk)?;
            if images.is_empty() {
                bail!("image decoding ended before pair {}", start + 1);
            }
            let scores = scorer.score_pairs(&images, |_| {})?;
            on_chunk(start, &scores)?;
            start += images.len();
        }
        Ok(())
    }

    /// How many GPU pipelines the next scoring of batches of `windows` 288x288 windows
    /// (capped by [`Model::batch`]) will create, found by a pass that computes nothing; and
    /// from then on `progress(ready, total)` is called as each of them has run once. On a new
    /// adapter or driver each is compiled then (seconds each on a CPU driver), so a caller can
    /// say what the wait is and how much is left. Returns the total (0: nothing to create).
    /// Optional: scoring creates what it needs either way.
    ///
    /// ```
    /// let model = asna::Model::new()?;
    /// let ticks = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    /// let seen = ticks.clone();
    /// let total = model.prepare(6, move |ready, total| seen.borrow_mut().push((ready, total)));
    /// assert!(total > 0);
    /// model.score_files("data/demo/ref.png", "data/demo/dist.png")?; // 6 windows: one batch
    /// let want: Vec<_> = (1..=total).map(|i| (i, total)).collect();
    /// assert_eq!(*ticks.borrow(), want, "one tick per pipeline, and the count was right");
    /// assert_eq!(model.prepare(6, |_, _| {}), 0, "all created now");
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn prepare(
        &self,
        windows: usize,
        mut progress: impl FnMut(usize, usize) + 'static,
    ) -> usize {
        let n = windows.clamp(1, self.batch);
        let pixels = vec![0u8; n * SIZE * SIZE * 3];
        let needed = self.gpu.pipelines_needed(|| {
            for m in &self.models {
                drop(crate::model::asna::predict(
                    &self.gpu, &m.store, &pixels, &pixels, n, None,
                ));
            }
        });
        let total = needed.len();
        if total == 0 {
            self.gpu.on_new_pipelines(None);
            return 0;
        }
        let mut ready = 0;
        self.gpu.on_new_pipelines(Some(Box::new(move || {
            ready += 1;
            progress(ready, total);
            ready < total
        })));
        total
    }

    /// The windows one pair of `width` x `height` images takes (with test-time variants), the
    /// count to [`Model::prepare`] for.
    pub fn windows_of(&self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        if self.tta {
            crate::data::tta_variants()
                .iter()
                .map(|v| {
                    // Odd quarter turns swap the sides.
                    let (vw, vh) = if v.rot90 % 2 == 1 { (h, w) } else { (w, h) };
                    crate::scorer::windows(vw, vh).len()
                })
                .sum()
        } else {
            crate::scorer::windows(w, h).len()
        }
    }

    /// The degradation map of one pair (the first model's, without test-time variants).
    ///
    /// ```
    /// let model = asna::Model::new()?;
    /// let reference = image::open("data/demo/ref.png")?.to_rgb8();
    /// let map = model.quality_map(&reference, &reference)?;
    /// assert_eq!((map.width, map.height), (768, 512));
    /// assert!(map.values.iter().all(|&v| v == 0.0));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn quality_map(&self, reference: &RgbImage, distorted: &RgbImage) -> Result<QualityMap> {
        check_pair(reference, distorted, "the pair")?;
        let values = self.scorer().degradation_map(reference, distorted)?;
        Ok(QualityMap {
            width: reference.width(),
            height: reference.height(),
            values,
        })
    }

    /// The adapter in words: name, backend, type, driver.
    pub fn adapter(&self) -> String {
        self.gpu.describe()
    }

    /// The GPU context the model runs on (for the lower layers: `asna::ops`, `asna::plan`).
    pub fn gpu(&self) -> &Rc<Gpu> {
        &self.gpu
    }

    /// The models' sources (file paths, or the embedded model's name), in ensemble order.
    pub fn sources(&self) -> Vec<String> {
        self.models.iter().map(|m| m.source.clone()).collect()
    }

    /// The models themselves, in ensemble order.
    pub fn models(&self) -> &[LoadedModel] {
        &self.models
    }

    /// The label scale scores are given on: the first model's training labels' mean, standard
    /// deviation and direction.
    pub fn scale(&self) -> LabelScaler {
        self.models[0].scaler
    }

    /// Windows per GPU batch, after the adapter's cap.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Whether scores average over test-time variants.
    pub fn tta(&self) -> bool {
        self.tta
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A scorer over the models (tensors are shared, not copied).
    fn scorer(&self) -> Scorer<'_> {
        let mut s = Scorer::new(&self.gpu, self.models.clone(), self.batch, self.tta);
        s.batch = self.batch;
        s
    }
}

/// Refuses pairs the model cannot score, with a one-line reason.
fn check_pair(reference: &RgbImage, distorted: &RgbImage, what: &str) -> Result<()> {
    let (rw, rh) = reference.dimensions();
    if reference.dimensions() != distorted.dimensions() {
        let (dw, dh) = distorted.dimensions();
        bail!("{what}: reference is {rw}x{rh} but distorted is {dw}x{dh}");
    }
    if rw < SIZE as u32 || rh < SIZE as u32 {
        bail!("{what}: images are {rw}x{rh}, smaller than the model's {SIZE}x{SIZE} input");
    }
    Ok(())
}
