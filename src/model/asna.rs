//! The ASNA attention model as docs/MODEL.md describes it: a shared encoder run
//! once on the stacked [reference; distorted] batch, absolute feature differences at four
//! scales, a U-Net-like decoder, channel and spatial attention, residual blocks, dense head.
//! Its layers, their hyper-parameters and what each reads are the table in `layers`, which
//! `specs` and `forward` follow.

use super::layers::{self, Input, Layer, LayerKind};
use super::params::{ParamStore, SpecList};
use crate::autograd::{Tape, Var};
use crate::gpu::{DType, Tensor};
use crate::ops::Act;
use std::collections::BTreeMap;

pub use super::layers::SIZE;
pub const SPEC_VERSION: &str = "asna-model/1";
pub const ARCHITECTURE: &str = "asna-attention";

/// Convolutions whose weights carry the 1e-4 L2 penalty: the encoder's and the decoder's.
pub fn l2_conv_layers() -> impl Iterator<Item = &'static str> {
    layers::ENCODER
        .iter()
        .chain(&layers::DECODER)
        .map(|l| l.name)
}

/// Every parameter of the model, in the order of the layer table, each batch norm after its
/// layer.
pub fn specs() -> SpecList {
    let mut s = SpecList::default();
    for l in layers::all() {
        let inputs = layers::input_channels(l);
        match l.kind {
            LayerKind::Conv => s.conv(l.name, inputs, l.channels, l.kernel),
            LayerKind::Dense => s.dense(l.name, inputs, l.channels),
        }
        if let Some(bn) = l.bn {
            s.bn(bn, l.channels);
        }
    }
    s
}

/// Leaf variables for every parameter of a store on one tape (trainable ones differentiable
/// when `train`), looked up by name during the forward pass.
pub struct Bound {
    pub vars: BTreeMap<String, Var>,
}

impl Bound {
    pub fn new(tape: &mut Tape, store: &ParamStore, grads: bool) -> Bound {
        let vars = store
            .specs
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    tape.leaf(store.get(&s.name).clone(), grads && s.trainable),
                )
            })
            .collect();
        Bound { vars }
    }
    pub fn var(&self, name: &str) -> &Var {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }
}

/// Batch-norm mode: training normalises with batch statistics and reports the running
/// statistics' update; evaluation uses the running statistics.
pub struct BnContext<'a> {
    pub train: bool,
    pub updates: BTreeMap<String, Tensor>,
    pub store: &'a ParamStore,
}

impl<'a> BnContext<'a> {
    /// Evaluation mode: normalise with the store's running statistics.
    pub fn eval(store: &'a ParamStore) -> Self {
        BnContext {
            train: false,
            updates: BTreeMap::new(),
            store,
        }
    }

    /// Training mode: normalise with batch statistics and collect the running statistics'
    /// new values in `updates`.
    pub fn train(store: &'a ParamStore) -> Self {
        BnContext {
            train: true,
            updates: BTreeMap::new(),
            store,
        }
    }

    /// BN(act(conv(x))): for scoring (evaluation mode on a tape that does not record) one
    /// kernel with the norm in the convolution's epilogue, otherwise conv then `apply`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_act_bn(
        &mut self,
        tape: &mut Tape,
        p: &Bound,
        conv_name: &str,
        bn_name: &str,
        x: &Var,
        stride: usize,
        act: Act,
    ) -> Var {
        if self.train || tape.is_recording() {
            let y = conv(tape, p, conv_name, x, stride, act);
            return self.apply(tape, p, bn_name, &y);
        }
        tape.conv_bn_eval(
            x,
            p.var(&format!("{conv_name}.weight")),
            Some(p.var(&format!("{conv_name}.bias"))),
            stride,
            act,
            p.var(&format!("{bn_name}.gamma")),
            p.var(&format!("{bn_name}.beta")),
            self.store.get(&format!("{bn_name}.running_mean")),
            self.store.get(&format!("{bn_name}.running_var")),
        )
    }

    /// Layer `l` (a convolution with batch norm) on concat[up(low), |f(R) - f(D)|] in one
    /// kernel that reads the concatenation from its sources, for scoring; None in training,
    /// on a recording tape, or where no kernel does (`Tape::conv_bn_eval_up_absdiff`).
    pub fn conv_act_bn_up_absdiff(
        &mut self,
        tape: &mut Tape,
        p: &Bound,
        l: &Layer,
        low: &Var,
        feats: &Var,
    ) -> Option<Var> {
        let norm = l.bn?;
        if self.train || tape.is_recording() {
            return None;
        }
        tape.conv_bn_eval_up_absdiff(
            low,
            feats,
            p.var(&format!("{}.weight", l.name)),
            Some(p.var(&format!("{}.bias", l.name))),
            l.stride,
            l.act,
            p.var(&format!("{norm}.gamma")),
            p.var(&format!("{norm}.beta")),
            self.store.get(&format!("{norm}.running_mean")),
            self.store.get(&format!("{norm}.running_var")),
        )
    }

    pub fn apply(&mut self, tape: &mut Tape, p: &Bound, name: &str, x: &Var) -> Var {
        let gamma = p.var(&format!("{name}.gamma"));
        let beta = p.var(&format!("{name}.beta"));
        let rm_name = format!("{name}.running_mean");
        let rv_name = format!("{name}.running_var");
        if self.train {
            let (y, stats) = tape.batch_norm_train(x, gamma, beta);
            let (rm, rv) = crate::ops::batchnorm::running_update(
                tape.gpu,
                self.store.get(&rm_name),
                self.store.get(&rv_name),
                &stats,
            );
            self.updates.insert(rm_name, rm);
            self.updates.insert(rv_name, rv);
            y
        } else {
            tape.batch_norm_eval(
                x,
                gamma,
                beta,
                self.store.get(&rm_name),
                self.store.get(&rv_name),
            )
        }
    }
}

/// Activations kept for `--map` and for comparisons with other implementations.
#[derive(Default)]
pub struct Taps {
    pub spatial_gate: Option<Tensor>,
    pub feature_diff: Option<Tensor>,
    /// The encoder's four outputs (after batch norm) on the stacked [R; D] batch.
    pub encoder: Vec<Tensor>,
    /// The decoder's output, after the second strided block.
    pub decoder_out: Option<Tensor>,
    /// The attention block's output, before the residual blocks.
    pub attention_out: Option<Tensor>,
    /// The dense head's flattened input and its first layer's output (after ReLU).
    pub head_input: Option<Tensor>,
    pub head_hidden: Option<Tensor>,
}

fn conv(tape: &mut Tape, p: &Bound, name: &str, x: &Var, stride: usize, act: Act) -> Var {
    tape.conv(
        x,
        p.var(&format!("{name}.weight")),
        Some(p.var(&format!("{name}.bias"))),
        stride,
        act,
    )
}

/// One layer of the table on `x`: its convolution (a dense layer is a 1x1 convolution of a
/// 1x1 image) with its stride and activation, then its batch norm.
fn run(tape: &mut Tape, p: &Bound, bn: &mut BnContext, l: &Layer, x: &Var) -> Var {
    match l.bn {
        Some(norm) => bn.conv_act_bn(tape, p, l.name, norm, x, l.stride, l.act),
        None => conv(tape, p, l.name, x, l.stride, l.act),
    }
}

/// Standardised scores `[N]` of N pairs, from the stacked input `[2N, 288, 288, 3]` (references
/// first, then distorted images, normalised).
pub fn forward(
    tape: &mut Tape,
    p: &Bound,
    bn: &mut BnContext,
    input: &Var,
    taps: Option<&mut Taps>,
) -> Var {
    forward_shared(tape, p, bn, input, None, taps)
}

/// `forward` where pairs may share a reference: with `ref_of` (pair i's reference is image
/// `ref_of[i]`), the input is `[K distinct references; N distorted images]`, the encoder runs once
/// per image, and each scale's reference features are copied out per pair before the
/// differences. Evaluation only (copies are not recorded); every image's features are
/// computed as in `forward`, so the scores are the same.
pub fn forward_shared(
    tape: &mut Tape,
    p: &Bound,
    bn: &mut BnContext,
    input: &Var,
    ref_of: Option<&[usize]>,
    mut taps: Option<&mut Taps>,
) -> Var {
    let images = input.shape()[0];
    let n = match ref_of {
        Some(r) => {
            assert!(
                !tape.is_recording(),
                "shared references are for evaluation only"
            );
            let refs = images - r.len();
            assert!(
                r.iter().all(|&i| i < refs),
                "ref_of names a missing reference"
            );
            r.len()
        }
        None => {
            assert!(images % 2 == 0, "the stacked input holds pairs");
            images / 2
        }
    };
    // Items of [references per pair; distorted images] in the encoder's output.
    let expand: Option<Vec<usize>> =
        ref_of.map(|r| r.iter().copied().chain(images - n..images).collect());

    // Shared encoder on [R; D]: a chain, each layer reading the previous one.
    let mut x = input.clone();
    let mut prev = None;
    let mut feats = Vec::with_capacity(layers::FEATURES.len());
    for l in &layers::ENCODER {
        x = match l.input {
            Input::Images if prev.is_none() => x,
            Input::Out(from) if prev == Some(from) => x,
            Input::Pool(&Input::Out(from)) if prev == Some(from) => tape.maxpool(&x),
            other => panic!("{} reads {other:?}, not the previous encoder layer", l.name),
        };
        x = run(tape, p, bn, l, &x);
        prev = Some(l.name);
        if layers::FEATURES.get(feats.len()) == Some(&l.name) {
            feats.push(match &expand {
                Some(rows) => {
                    let f = tape.gpu.gather_batch(&x.t, rows);
                    tape.leaf(f, false)
                }
                None => x.clone(),
            });
        }
    }
    drop(x);
    assert_eq!(feats.len(), layers::FEATURES.len(), "encoder outputs");
    if let Some(t) = taps.as_deref_mut() {
        t.encoder = feats.iter().map(|f| f.t.clone()).collect();
    }
    // Scoring (nothing recorded) builds each decoder input in one fused pass, or not at all
    // where the block's kernel reads it from its sources; training keeps the three
    // differentiable ops.
    let fuse = !tape.is_recording();
    let mut diffs: Vec<Option<Var>> = feats
        .iter()
        .map(|f| (!fuse).then(|| tape.absdiff_halves(f)))
        .collect();
    let feature_diff = taps.as_ref().map(|_| match &diffs[0] {
        Some(d) => d.t.clone(),
        None => tape.absdiff_halves(&feats[0]).t,
    });
    // Each scale's features are let go once the decoder has taken them in.
    let mut feats: Vec<Option<Var>> = feats.into_iter().map(Some).collect();

    // Decoder: the context branch from the distorted image's deepest features, then one
    // scale's difference taken in per block.
    let mut low: Option<Var> = None;
    let mut prev = None;
    for l in &layers::DECODER {
        let x = match l.input {
            Input::Pool(&Input::Distorted(&Input::Out(from))) if prev.is_none() => {
                let f = feats[layers::scale_of(from)].as_ref().expect("features");
                let ctx = tape.slice_batch(f, n, n);
                tape.maxpool(&ctx)
            }
            Input::Concat(
                &[Input::Up(&Input::Out(from)), Input::AbsDiff(&Input::Out(feature))],
            ) if prev == Some(from) => {
                let below = low.take().expect("the previous block's output");
                let scale = layers::scale_of(feature);
                let (feat, diff) = (feats[scale].take(), diffs[scale].take());
                if fuse {
                    let feat = feat.expect("features");
                    // A block may read the concatenation from its two sources.
                    if let Some(y) = bn.conv_act_bn_up_absdiff(tape, p, l, &below, &feat) {
                        low = Some(y);
                        prev = Some(l.name);
                        continue;
                    }
                    tape.upsample_absdiff_concat(&below, &feat)
                } else {
                    let up = tape.upsample(&below);
                    tape.concat(&[&up, &diff.expect("difference")])
                }
            }
            Input::Out(from) if prev == Some(from) => low.take().expect("the previous output"),
            other => panic!(
                "{} reads {other:?}, which the decoder does not build",
                l.name
            ),
        };
        low = Some(run(tape, p, bn, l, &x));
        prev = Some(l.name);
    }
    drop((feats, diffs));
    let decoded = low.expect("the decoder's output");
    if let Some(t) = taps.as_deref_mut() {
        t.decoder_out = Some(decoded.t.clone());
    }

    // Attention, residual blocks and head, straight from the table: each layer runs when first
    // read on the way back from the score, so a tensor read several times (the attention's
    // features, the residual stream) is computed once, and the ops are recorded in the order
    // the description reads them, which fixes the order in which gradients add up.
    let mut done = Evaluated::default();
    done.outputs.insert(prev.expect("decoder layers"), decoded);
    let score = done.output(tape, p, bn, layers::SCORE);
    if let Some(t) = taps {
        t.spatial_gate = Some(done.outputs["att.sp2"].t.clone());
        t.feature_diff = feature_diff;
        t.attention_out = Some(done.outputs["att.out"].t.clone());
        t.head_input = Some(done.read(tape, p, bn, &layers::layer("head.fc1").input).t);
        t.head_hidden = Some(done.outputs["head.fc1"].t.clone());
    }
    tape.reshape(&score, &[n])
}

/// Layer outputs and composite inputs computed so far, each once.
#[derive(Default)]
struct Evaluated {
    outputs: BTreeMap<&'static str, Var>,
    reads: Vec<(Input, Var)>,
}

impl Evaluated {
    fn output(
        &mut self,
        tape: &mut Tape,
        p: &Bound,
        bn: &mut BnContext,
        name: &'static str,
    ) -> Var {
        if let Some(y) = self.outputs.get(name) {
            return y.clone();
        }
        let l = layers::layer(name);
        let x = self.read(tape, p, bn, &l.input);
        let y = run(tape, p, bn, l, &x);
        self.outputs.insert(name, y.clone());
        y
    }

    fn read(&mut self, tape: &mut Tape, p: &Bound, bn: &mut BnContext, input: &Input) -> Var {
        if let Input::Out(name) = input {
            return self.output(tape, p, bn, name);
        }
        if let Some((_, y)) = self.reads.iter().find(|(i, _)| i == input) {
            return y.clone();
        }
        let y = match input {
            Input::MeanHw(x) => {
                let x = self.read(tape, p, bn, x);
                tape.mean_hw(&x)
            }
            Input::Mul(a, b) => {
                let a = self.read(tape, p, bn, a);
                let b = self.read(tape, p, bn, b);
                tape.mul(&a, &b)
            }
            Input::Add(a, b) => {
                let a = self.read(tape, p, bn, a);
                let b = self.read(tape, p, bn, b);
                tape.add(&a, &b)
            }
            Input::Concat(parts) => {
                let parts: Vec<Var> = parts.iter().map(|x| self.read(tape, p, bn, x)).collect();
                tape.concat(&parts.iter().collect::<Vec<_>>())
            }
            // Channels-last makes the (h, w, c) flatten a reshape.
            Input::Flatten(x) => {
                let x = self.read(tape, p, bn, x);
                let (items, h, w, c) = x.t.nhwc();
                tape.reshape(&x, &[items, 1, 1, h * w * c])
            }
            other => panic!("{other:?} is built by the encoder and decoder, not read after them"),
        };
        self.reads.push((*input, y.clone()));
        y
    }
}

/// The Siamese input of `n` pairs of `size`x`size` RGB u8 crops as one leaf [2n, size, size, 3]:
/// the references first, then the distorted images, normalised, stored as `dtype`. Every
/// forward pass of the model (scoring, evaluation, training, benchmarks, tuning) starts here.
pub fn stacked_input(
    tape: &mut Tape,
    ref_px: &[u8],
    dist_px: &[u8],
    n: usize,
    size: usize,
    dtype: DType,
) -> Var {
    assert_eq!(ref_px.len(), n * size * size * 3, "reference crops");
    assert_eq!(dist_px.len(), ref_px.len(), "distorted crops");
    stacked_images(tape, ref_px, dist_px, size, dtype)
}

/// The `size`x`size` RGB u8 crops of `first` followed by those of `second`, normalised, as
/// one leaf.
fn stacked_images(tape: &mut Tape, first: &[u8], second: &[u8], size: usize, dtype: DType) -> Var {
    let mut stacked = Vec::with_capacity(first.len() + second.len());
    stacked.extend_from_slice(first);
    stacked.extend_from_slice(second);
    let images = stacked.len() / (size * size * 3);
    let x = crate::ops::image::to_input_as(tape.gpu, &stacked, images, size, size, dtype);
    tape.leaf(x, false)
}

/// Evaluation-mode standardised scores `[n]` of n pairs of 288x288 u8 crops. Activations are
/// stored in the element type of the store's weights (see `ParamStore::to_dtype`); the scores
/// download as f32 either way.
pub fn predict(
    gpu: &crate::gpu::Gpu,
    store: &ParamStore,
    ref_px: &[u8],
    dist_px: &[u8],
    n: usize,
    taps: Option<&mut Taps>,
) -> Tensor {
    let mut tape = Tape::inference(gpu);
    let params = Bound::new(&mut tape, store, false);
    let x = stacked_input(&mut tape, ref_px, dist_px, n, SIZE, store.weight_dtype());
    let mut bn = BnContext::eval(store);
    forward(&mut tape, &params, &mut bn, &x, taps).t
}

/// `predict` for pairs that share references: `refs_px` holds K distinct 288x288 reference
/// crops, `dist_px` N distorted crops, and pair i compares distorted crop i with reference
/// `ref_of[i]`. The encoder runs on K + N images instead of 2N; the scores equal `predict`'s
/// on the expanded pairs.
pub fn predict_shared(
    gpu: &crate::gpu::Gpu,
    store: &ParamStore,
    refs_px: &[u8],
    dist_px: &[u8],
    ref_of: &[usize],
    taps: Option<&mut Taps>,
) -> Tensor {
    let crop = SIZE * SIZE * 3;
    let (k, n) = (refs_px.len() / crop, ref_of.len());
    assert_eq!(refs_px.len(), k * crop, "reference crops");
    assert_eq!(dist_px.len(), n * crop, "distorted crops");
    let mut tape = Tape::inference(gpu);
    let params = Bound::new(&mut tape, store, false);
    let x = stacked_images(&mut tape, refs_px, dist_px, SIZE, store.weight_dtype());
    let mut bn = BnContext::eval(store);
    forward_shared(&mut tape, &params, &mut bn, &x, Some(ref_of), taps).t
}
