//! Convolution (src/ops/conv/): forward with bias and activation, the input, weight and bias
//! gradients, for every kernel family in `conv::FAMILIES`, and the tape's `Conv` rule with and
//! without bias. The float64 reference `conv_ref` (with
//! `same` and `act_ref`) sits in tests/common/mod.rs, which tests/f16.rs and tests/tune.rs also
//! compare against.

use crate::*;
use asna::autograd::Tape;
use asna::gpu::Gpu;
use asna::ops::conv::{Family, FAMILIES};
use asna::ops::{self, Act};

// ------------------------------------------------------------------ forward

/// Every kernel family must agree with the reference.
fn check_conv(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    bias: bool,
    act: Act,
) {
    for &family in FAMILIES {
        check_conv_variant(seed, xs, k, cout, stride, bias, act, family);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_conv_variant(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    bias: bool,
    act: Act,
    family: Family,
) {
    let gpu = gpu();
    gpu.kernels.borrow_mut().force_family(Some(family));
    let c = ConvCase::new(
        &gpu,
        &mut Rand::new(seed),
        xs,
        [k[0], k[1], xs[3], cout],
        stride,
        0.5,
    );
    let (want, shape) = c.reference(bias, act);
    let y = ops::conv::forward(&gpu, &c.xt, &c.wt, bias.then_some(&c.bt), stride, act);
    assert_eq!(y.shape, shape.to_vec(), "conv output shape");
    assert_close(
        &format!("conv {xs:?} k{k:?} co{cout} s{stride} {act:?} {family:?}"),
        &download(&gpu, &y),
        &want,
        1e-5,
    );
}

#[test]
fn conv_same_padding_shapes() {
    // The model's cases: 3x3 stride 4 on 288 pads nothing; 3x3 stride 2 on 72 pads 0 before, 1 after.
    assert_eq!(ops::conv::same_padding(288, 3, 4), (72, 0));
    assert_eq!(ops::conv::same_padding(72, 3, 2), (36, 0));
    assert_eq!(ops::conv::same_padding(288, 5, 1), (288, 2));
    assert_eq!(ops::conv::same_padding(16, 10, 1), (16, 4));
    assert_eq!(ops::conv::same_padding(16, 2, 1), (16, 0));
    assert_eq!(ops::conv::same_padding(7, 3, 2), (4, 1));
}

#[test]
fn conv_odd_sizes_every_kernel_and_stride() {
    check_conv(1, [2, 7, 9, 3], [5, 5], 8, 1, true, Act::LeakyRelu);
    check_conv(2, [1, 7, 9, 1], [3, 3], 1, 1, true, Act::None);
    check_conv(3, [2, 9, 7, 5], [3, 3], 6, 2, true, Act::Relu);
    check_conv(4, [2, 13, 11, 4], [3, 3], 7, 4, true, Act::LeakyRelu);
    check_conv(5, [1, 8, 8, 16], [3, 3], 32, 2, true, Act::None);
    check_conv(6, [3, 1, 1, 5], [3, 3], 3, 1, false, Act::Sigmoid);
    check_conv(7, [2, 6, 5, 8], [1, 1], 8, 1, true, Act::Tanh);
    check_conv(8, [1, 12, 12, 3], [5, 5], 3, 1, true, Act::None);
}

#[test]
fn conv_wide_and_deep_channels() {
    // Channel counts of the decoder (128 -> 64) and the sorter (128 -> 256), small planes.
    check_conv(9, [2, 5, 6, 128], [3, 3], 64, 1, true, Act::LeakyRelu);
    check_conv(10, [2, 1, 16, 128], [1, 7], 256, 1, true, Act::None);
}

#[test]
fn conv1d_even_kernels_pad_less_before() {
    // Sorter convs: one row, kernels 2 and 10 pad (k-1)/2 before and the rest after.
    check_conv(11, [3, 1, 16, 1], [1, 2], 8, 1, true, Act::None);
    check_conv(12, [2, 1, 16, 64], [1, 10], 96, 1, true, Act::None);
    check_conv(13, [2, 1, 5, 3], [1, 7], 4, 1, true, Act::None);
}

#[test]
fn dense_is_a_1x1_conv_with_hwc_flatten() {
    // [n, 10368] x [10368, 32]: the head's first layer, on a smaller width.
    check_conv(14, [5, 1, 1, 300], [1, 1], 32, 1, true, Act::Relu);
    check_conv(15, [16, 1, 1, 1], [1, 1], 1, 1, true, Act::None);
}

// ------------------------------------------------------------------ backward kernels

/// Every kernel family must agree with finite differences.
fn check_conv_grads(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    act: Act,
) {
    for &family in FAMILIES {
        check_conv_grads_variant(seed, xs, k, cout, stride, act, family);
    }
}

fn check_conv_grads_variant(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    act: Act,
    family: Family,
) {
    let gpu = gpu();
    gpu.kernels.borrow_mut().force_family(Some(family));
    let mut r = Rand::new(seed);
    let ws = [k[0], k[1], xs[3], cout];
    let ConvCase {
        x,
        w,
        b,
        xt,
        wt,
        bt,
        ..
    } = ConvCase::new(&gpu, &mut r, xs, ws, stride, 0.3);
    let y = ops::conv::forward(&gpu, &xt, &wt, Some(&bt), stride, act);
    let g = r.vec(y.numel(), -1.0, 1.0);
    let gt = up(&gpu, &y.shape, &g);
    let geom = ops::conv::ConvGeom::new(&xs, &ws, stride);
    let dz = ops::eltwise::activation_backward(&gpu, &y, &gt, act);
    let name = format!("conv {xs:?} k{k:?} co{cout} s{stride} {act:?} {family:?}");
    let (xd, wd, bd) = (f64s(&x), f64s(&w), f64s(&b));
    let want_dx = fd(
        |xx| conv_ref(xx, xs, &wd, ws, Some(&bd), stride, act).0,
        &x,
        &g,
    );
    assert_close(
        &format!("{name} dX"),
        &download(&gpu, &ops::conv::backward_input(&gpu, &dz, &wt, &geom)),
        &want_dx,
        TOL,
    );
    let want_dw = fd(
        |ww| conv_ref(&xd, xs, ww, ws, Some(&bd), stride, act).0,
        &w,
        &g,
    );
    assert_close(
        &format!("{name} dW"),
        &download(&gpu, &ops::conv::backward_weight(&gpu, &xt, &dz, &geom)),
        &want_dw,
        TOL,
    );
    let want_db = fd(
        |bb| conv_ref(&xd, xs, &wd, ws, Some(bb), stride, act).0,
        &b,
        &g,
    );
    assert_close(
        &format!("{name} db"),
        &download(&gpu, &ops::conv::backward_bias(&gpu, &dz)),
        &want_db,
        TOL,
    );
}

#[test]
fn conv_gradients_every_stride_and_padding() {
    check_conv_grads(1, [2, 7, 9, 3], [5, 5], 4, 1, Act::LeakyRelu);
    check_conv_grads(2, [2, 9, 7, 2], [3, 3], 3, 2, Act::None);
    check_conv_grads(3, [1, 13, 11, 2], [3, 3], 5, 4, Act::Relu);
    check_conv_grads(4, [3, 1, 1, 6], [3, 3], 2, 1, Act::Sigmoid);
    check_conv_grads(5, [2, 4, 5, 3], [1, 1], 3, 1, Act::Tanh);
}

#[test]
fn conv1d_and_dense_gradients() {
    check_conv_grads(6, [3, 1, 16, 1], [1, 2], 4, 1, Act::None);
    check_conv_grads(7, [2, 1, 16, 3], [1, 10], 4, 1, Act::None);
    check_conv_grads(8, [4, 1, 1, 37], [1, 1], 5, 1, Act::Relu);
}

#[test]
fn weight_gradient_split_over_a_long_reduction() {
    // Enough output positions that the reduction is split into many slices.
    check_conv_grads(9, [2, 40, 36, 2], [3, 3], 2, 1, Act::None);
}

// ------------------------------------------------------------------ the tape's rule

/// `Tape::conv` and its `Conv` rule (activation gradient, then dX, dW and, with a bias, db)
/// against finite differences, on the adapter's own kernel family.
#[allow(clippy::too_many_arguments)]
fn check_conv_tape(
    gpu: &Gpu,
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    bias: bool,
    act: Act,
) {
    let mut r = Rand::new(seed);
    let ws = [k[0], k[1], xs[3], cout];
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let w = r.vec(ws.iter().product(), -0.5, 0.5);
    let b = r.vec(cout, -0.3, 0.3);
    let mut tape = Tape::new(gpu);
    let xv = tape.leaf(up(gpu, &xs, &x), true);
    let wv = tape.leaf(up(gpu, &ws, &w), true);
    let bv = tape.leaf(up(gpu, &[cout], &b), true);
    let y = tape.conv(&xv, &wv, bias.then_some(&bv), stride, act);
    let g = r.vec(y.t.numel(), -1.0, 1.0);
    backward_with(&mut tape, &y, &g);
    let name = format!("tape conv {xs:?} k{k:?} co{cout} s{stride} bias={bias} {act:?}");
    let (xd, wd, bd) = (f64s(&x), f64s(&w), f64s(&b));
    let bias_of = |bb: &[f64]| bias.then(|| bb.to_vec());
    assert_close(
        &format!("{name} dX"),
        &grad_of(&tape, &xv),
        &fd(
            |xx| conv_ref(xx, xs, &wd, ws, bias_of(&bd).as_deref(), stride, act).0,
            &x,
            &g,
        ),
        TOL,
    );
    assert_close(
        &format!("{name} dW"),
        &grad_of(&tape, &wv),
        &fd(
            |ww| conv_ref(&xd, xs, ww, ws, bias_of(&bd).as_deref(), stride, act).0,
            &w,
            &g,
        ),
        TOL,
    );
    if bias {
        assert_close(
            &format!("{name} db"),
            &grad_of(&tape, &bv),
            &fd(
                |bb| conv_ref(&xd, xs, &wd, ws, Some(bb), stride, act).0,
                &b,
                &g,
            ),
            TOL,
        );
    } else {
        assert!(
            tape.grad(&bv).is_none(),
            "{name}: an unused bias gets no gradient"
        );
    }
}

#[test]
fn conv_gradients_through_the_tape() {
    // One adapter for every case, so the kernels compile once.
    let gpu = gpu();
    check_conv_tape(&gpu, 21, [2, 7, 9, 3], [3, 3], 4, 1, true, Act::LeakyRelu);
    check_conv_tape(&gpu, 22, [1, 9, 7, 1], [3, 3], 2, 2, false, Act::Sigmoid);
    check_conv_tape(&gpu, 23, [2, 13, 11, 2], [3, 3], 3, 4, true, Act::None);
    check_conv_tape(&gpu, 24, [3, 1, 16, 2], [1, 10], 3, 1, false, Act::Tanh);
    check_conv_tape(&gpu, 25, [4, 1, 1, 7], [1, 1], 2, 1, true, Act::Relu);
    frozen_weights_get_no_gradient(&gpu);
}

/// Only the values that require gradients get them: a frozen weight (the sorter inside the
/// loss) passes the gradient on to its input without computing its own.
fn frozen_weights_get_no_gradient(gpu: &Gpu) {
    let mut r = Rand::new(26);
    let (xs, ws) = ([2usize, 5, 6, 2], [3usize, 3, 2, 3]);
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let w = r.vec(ws.iter().product(), -0.5, 0.5);
    let b = r.vec(3, -0.3, 0.3);
    let mut tape = Tape::new(gpu);
    let xv = tape.leaf(up(gpu, &xs, &x), true);
    let wv = tape.leaf(up(gpu, &ws, &w), false);
    let bv = tape.leaf(up(gpu, &[3], &b), false);
    let y = tape.conv(&xv, &wv, Some(&bv), 1, Act::LeakyRelu);
    let g = r.vec(y.t.numel(), -1.0, 1.0);
    backward_with(&mut tape, &y, &g);
    let (wd, bd) = (f64s(&w), f64s(&b));
    assert_close(
        "frozen conv dX",
        &grad_of(&tape, &xv),
        &fd(
            |xx| conv_ref(xx, xs, &wd, ws, Some(&bd), 1, Act::LeakyRelu).0,
            &x,
            &g,
        ),
        TOL,
    );
    assert!(tape.grad(&wv).is_none() && tape.grad(&bv).is_none());
}
