//! The ASNA attention model as docs/MODEL.md describes it: a shared encoder run
//! once on the stacked [reference; distorted] batch, absolute feature differences at four
//! scales, a U-Net-like decoder, channel and spatial attention, residual blocks, dense head.

use super::params::{ParamStore, SpecList};
use crate::autograd::{Tape, Var};
use crate::gpu::{DType, Tensor};
use crate::ops::Act;
use std::collections::BTreeMap;

pub const SIZE: usize = 288;
pub const NFS: [usize; 10] = [8, 16, 32, 64, 64, 64, 32, 16, 8, 32];
const ENC_KERNELS: [usize; 4] = [5, 5, 3, 3];
pub const SPEC_VERSION: &str = "asna-model/1";
pub const ARCHITECTURE: &str = "asna-attention";

/// Conv layers whose weights carry the 1e-4 L2 penalty.
pub const L2_CONV_LAYERS: [&str; 11] = [
    "enc.conv0",
    "enc.conv1",
    "enc.conv2",
    "enc.conv3",
    "enc.conv4",
    "dec.conv0",
    "dec.conv1",
    "dec.conv2",
    "dec.conv3",
    "dec.down0",
    "dec.down1",
];

pub fn specs() -> SpecList {
    let mut s = SpecList::default();
    s.conv("enc.conv0", 3, 3, 5);
    let chans = [3, NFS[0], NFS[1], NFS[2], NFS[3]];
    for i in 0..4 {
        s.conv(
            &format!("enc.conv{}", i + 1),
            chans[i],
            chans[i + 1],
            ENC_KERNELS[i],
        );
        s.bn(&format!("enc.bn{}", i + 1), chans[i + 1]);
    }
    s.conv("dec.conv0", 64, NFS[4], 3);
    s.bn("dec.bn0", NFS[4]);
    s.conv("dec.conv1", NFS[4] + 64, NFS[5], 3);
    s.bn("dec.bn1", NFS[5]);
    s.conv("dec.conv2", NFS[5] + 32, NFS[6], 3);
    s.bn("dec.bn2", NFS[6]);
    s.conv("dec.conv3", NFS[6] + 16, NFS[7], 3);
    s.bn("dec.bn3", NFS[7]);
    s.conv("dec.down0", NFS[7] + 8, NFS[9], 3);
    s.bn("dec.down_bn0", NFS[9]);
    s.conv("dec.down1", NFS[9], NFS[9], 3);
    s.bn("dec.down_bn1", NFS[9]);
    let a = NFS[8];
    s.conv("att.conv1", NFS[9], a, 3);
    s.bn("att.bn", a);
    s.conv("att.conv2", a, a, 3);
    for n in ["att.ch1", "att.ch2", "att.sp1", "att.sp2"] {
        s.conv(n, a, a, 1);
    }
    s.conv("att.out", NFS[9] + 2 * a, a, 1);
    for r in 0..3 {
        s.conv(&format!("res{r}.conv1"), a, a, 3);
        s.conv(&format!("res{r}.conv2"), a, a, 3);
    }
    s.dense("head.fc1", 36 * 36 * a, 32);
    s.dense("head.fc2", 32, 1);
    s.dense("head.fc3", 1, 1);
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

/// BN(lrelu(conv(x))).
fn conv_lrelu_bn(
    tape: &mut Tape,
    p: &Bound,
    bn: &mut BnContext,
    conv_name: &str,
    bn_name: &str,
    x: &Var,
    stride: usize,
) -> Var {
    bn.conv_act_bn(tape, p, conv_name, bn_name, x, stride, Act::LeakyRelu)
}

/// Standardised scores [N] of N pairs, from the stacked input [2N, 288, 288, 3] (references
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
/// ref_of[i]), the input is [K distinct references; N distorted images], the encoder runs once
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

    // Shared encoder on [R; D].
    let mut x = conv(tape, p, "enc.conv0", input, 1, Act::None);
    let mut feats = Vec::with_capacity(4);
    for i in 0..4 {
        if i > 0 {
            x = tape.maxpool(&x);
        }
        x = conv_lrelu_bn(
            tape,
            p,
            bn,
            &format!("enc.conv{}", i + 1),
            &format!("enc.bn{}", i + 1),
            &x,
            1,
        );
        match &expand {
            Some(rows) => {
                let f = tape.gpu.gather_batch(&x.t, rows);
                feats.push(tape.leaf(f, false));
            }
            None => feats.push(x.clone()),
        }
    }
    if let Some(t) = taps.as_deref_mut() {
        t.encoder = feats.iter().map(|f| f.t.clone()).collect();
    }
    // Scoring (nothing recorded) builds each decoder input in one fused pass; training keeps
    // the three differentiable ops.
    let fuse = !tape.is_recording();
    let diffs: Vec<Var> = if fuse {
        Vec::new()
    } else {
        feats.iter().map(|f| tape.absdiff_halves(f)).collect()
    };
    let decoder_input = |tape: &mut Tape, low: &Var, level: usize| -> Var {
        if fuse {
            tape.upsample_absdiff_concat(low, &feats[level])
        } else {
            let up = tape.upsample(low);
            tape.concat(&[&up, &diffs[level]])
        }
    };

    // Decoder: the context branch starts from the distorted image's deepest features.
    let ctx = tape.slice_batch(&feats[3], n, n);
    let b = tape.maxpool(&ctx);
    let mut low = conv_lrelu_bn(tape, p, bn, "dec.conv0", "dec.bn0", &b, 1);
    for (j, level) in [3, 2, 1].into_iter().enumerate() {
        let cat = decoder_input(tape, &low, level);
        low = conv_lrelu_bn(
            tape,
            p,
            bn,
            &format!("dec.conv{}", j + 1),
            &format!("dec.bn{}", j + 1),
            &cat,
            1,
        );
    }
    let cat = decoder_input(tape, &low, 0);
    drop(low);
    let feature_diff = match (&taps, fuse) {
        (Some(_), true) => Some(tape.absdiff_halves(&feats[0]).t),
        (Some(_), false) => Some(diffs[0].t.clone()),
        (None, _) => None,
    };
    drop(diffs);
    drop(feats);
    let b = conv_lrelu_bn(tape, p, bn, "dec.down0", "dec.down_bn0", &cat, 4);
    drop(cat);
    let b = conv_lrelu_bn(tape, p, bn, "dec.down1", "dec.down_bn1", &b, 2);
    if let Some(t) = taps.as_deref_mut() {
        t.decoder_out = Some(b.t.clone());
    }

    // Attention block.
    let x2 = bn.conv_act_bn(tape, p, "att.conv1", "att.bn", &b, 1, Act::Relu);
    let x3 = conv(tape, p, "att.conv2", &x2, 1, Act::None);
    let c = tape.mean_hw(&x3);
    let c = conv(tape, p, "att.ch1", &c, 1, Act::Relu);
    let c = conv(tape, p, "att.ch2", &c, 1, Act::Sigmoid);
    let ca = tape.mul(&x3, &c);
    let s = conv(tape, p, "att.sp1", &x3, 1, Act::Relu);
    let s = conv(tape, p, "att.sp2", &s, 1, Act::Sigmoid);
    let sa = tape.mul(&x3, &s);
    let cat = tape.concat(&[&b, &ca, &sa]);
    let mut h = conv(tape, p, "att.out", &cat, 1, Act::None);
    if let Some(t) = taps.as_deref_mut() {
        t.spatial_gate = Some(s.t.clone());
        t.feature_diff = feature_diff;
        t.attention_out = Some(h.t.clone());
    }
    for r in 0..3 {
        let t = conv(tape, p, &format!("res{r}.conv1"), &h, 1, Act::Relu);
        let t = conv(tape, p, &format!("res{r}.conv2"), &t, 1, Act::None);
        h = tape.add(&h, &t);
    }

    // Head: channels-last makes the (h, w, c) flatten a reshape.
    let (_, hh, ww, cc) = h.t.nhwc();
    let f = tape.reshape(&h, &[n, 1, 1, hh * ww * cc]);
    let f1 = conv(tape, p, "head.fc1", &f, 1, Act::Relu);
    if let Some(t) = taps {
        t.head_input = Some(f.t.clone());
        t.head_hidden = Some(f1.t.clone());
    }
    let f = f1;
    let f = conv(tape, p, "head.fc2", &f, 1, Act::Tanh);
    let f = conv(tape, p, "head.fc3", &f, 1, Act::None);
    tape.reshape(&f, &[n])
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

/// Evaluation-mode standardised scores [n] of n pairs of 288x288 u8 crops. Activations are
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
