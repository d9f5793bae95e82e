//! Every backward kernel against float64 central finite differences of the CPU reference:
//! for an op F and a random cotangent g, the kernel's result must equal d/dx sum(F(x) * g).

mod common;
use asna::gpu::kernels::Family;
use asna::gpu::Tensor;
use asna::ops::{self, Act};
use common::*;

const EPS: f64 = 1e-6;
const TOL: f64 = 2e-4;

/// FD gradient of sum(F(x) * g) with respect to x.
fn fd(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f32], g: &[f32]) -> Vec<f64> {
    let g = f64s(g);
    fd_grad(|xx| dot(&f(xx), &g), &f64s(x), EPS)
}

fn up(gpu: &asna::gpu::Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload(shape, v)
}

/// Both kernel families (workgroup tiles and direct) must agree with finite differences.
fn check_conv_grads(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    act: Act,
) {
    for tiled in [true, false] {
        check_conv_grads_variant(seed, xs, k, cout, stride, act, tiled);
    }
}

fn check_conv_grads_variant(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    act: Act,
    tiled: bool,
) {
    let gpu = gpu();
    gpu.kernels.borrow_mut().force_family(Some(if tiled { Family::Tiled } else { Family::Direct }));
    let mut r = Rand::new(seed);
    let ws = [k[0], k[1], xs[3], cout];
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let w = r.vec(ws.iter().product(), -0.5, 0.5);
    let b = r.vec(cout, -0.3, 0.3);
    let (xt, wt, bt) = (up(&gpu, &xs, &x), up(&gpu, &ws, &w), up(&gpu, &[cout], &b));
    let y = ops::conv::forward(&gpu, &xt, &wt, Some(&bt), stride, act);
    let g = r.vec(y.numel(), -1.0, 1.0);
    let gt = up(&gpu, &y.shape, &g);
    let geom = ops::conv::ConvGeom::new(&xs, &ws, stride);
    let dz = ops::eltwise::activation_backward(&gpu, &y, &gt, act);
    let name = format!("conv {xs:?} k{k:?} co{cout} s{stride} {act:?} tiled={tiled}");
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

#[test]
fn pool_upsample_absdiff_slice_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(10);
    let xs = [2usize, 7, 9, 3];
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let xt = up(&gpu, &xs, &x);
    let g = r.vec(2 * 3 * 4 * 3, -1.0, 1.0);
    let dx = ops::pool::maxpool_backward(&gpu, &xt, &up(&gpu, &[2, 3, 4, 3], &g));
    assert_close(
        "maxpool dX",
        &download(&gpu, &dx),
        &fd(|xx| maxpool_ref(xx, xs), &x, &g),
        TOL,
    );

    let g = r.vec(2 * 14 * 18 * 3, -1.0, 1.0);
    let dx = ops::pool::upsample_backward(&gpu, &up(&gpu, &[2, 14, 18, 3], &g));
    assert_close(
        "upsample dX",
        &download(&gpu, &dx),
        &fd(|xx| upsample_ref(xx, xs), &x, &g),
        TOL,
    );

    // Stacked [R; D] of 2 pairs, with some exact ties that must get gradient 0.
    let mut y = r.vec(4 * 3 * 3 * 2, -1.0, 1.0);
    for i in 0..5 {
        y[i + 36] = y[i];
    }
    let g = r.vec(36, -1.0, 1.0);
    let dx = ops::eltwise::absdiff_halves_backward(
        &gpu,
        &up(&gpu, &[4, 3, 3, 2], &y),
        &up(&gpu, &[2, 3, 3, 2], &g),
    );
    let got = download(&gpu, &dx);
    for i in 0..5 {
        assert_eq!(
            (got[i], got[i + 36]),
            (0.0, 0.0),
            "equal inputs get no gradient"
        );
    }
    let absdiff = |v: &[f64]| {
        (0..36)
            .map(|i| (v[i] - v[i + 36]).abs())
            .collect::<Vec<f64>>()
    };
    let mut want = fd(absdiff, &y, &g);
    for i in 0..5 {
        want[i] = 0.0;
        want[i + 36] = 0.0;
    }
    assert_close("absdiff dX", &got, &want, TOL);

    let g = r.vec(18, -1.0, 1.0);
    let dx = ops::eltwise::unslice_batch(&gpu, &up(&gpu, &[2, 3, 3, 1], &g), &[4, 3, 3, 1], 1);
    let slice = |v: &[f64]| v[9..27].to_vec();
    assert_close(
        "slice dX",
        &download(&gpu, &dx),
        &fd(slice, &y[..36], &g),
        TOL,
    );
}

#[test]
fn concat_split_is_the_adjoint() {
    let gpu = gpu();
    let mut r = Rand::new(11);
    let g = r.vec(2 * 3 * 3 * 7, -1.0, 1.0);
    let parts = ops::concat::split(&gpu, &up(&gpu, &[2, 3, 3, 7], &g), &[4, 3]);
    let a = r.vec(2 * 3 * 3 * 4, -1.0, 1.0);
    let b = r.vec(2 * 3 * 3 * 3, -1.0, 1.0);
    let cat = |a: &[f64], b: &[f64]| {
        (0..18)
            .flat_map(|row| {
                a[row * 4..row * 4 + 4]
                    .iter()
                    .chain(&b[row * 3..row * 3 + 3])
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<f64>>()
    };
    let (ad, bd) = (f64s(&a), f64s(&b));
    assert_close(
        "concat dA",
        &download(&gpu, &parts[0]),
        &fd(|aa| cat(aa, &bd), &a, &g),
        TOL,
    );
    assert_close(
        "concat dB",
        &download(&gpu, &parts[1]),
        &fd(|bb| cat(&ad, bb), &b, &g),
        TOL,
    );
}

#[test]
fn activation_prelu_mul_mean_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(12);
    let xs = [2usize, 3, 5, 4];
    let n: usize = xs.iter().product();
    let x = r.vec(n, -2.0, 2.0);
    let g = r.vec(n, -1.0, 1.0);
    let (xt, gt) = (up(&gpu, &xs, &x), up(&gpu, &xs, &g));
    for act in [Act::LeakyRelu, Act::Relu, Act::Sigmoid, Act::Tanh] {
        let y = ops::eltwise::activation(&gpu, &xt, act);
        let dx = ops::eltwise::activation_backward(&gpu, &y, &gt, act);
        let f = |v: &[f64]| v.iter().map(|&t| act_ref(t, act)).collect::<Vec<f64>>();
        assert_close(
            &format!("{act:?} dX"),
            &download(&gpu, &dx),
            &fd(f, &x, &g),
            TOL,
        );
    }
    let alpha = r.vec(4, 0.05, 0.3);
    let (dx, da) = ops::eltwise::prelu_backward(&gpu, &xt, &up(&gpu, &[4], &alpha), &gt);
    let prelu = |v: &[f64], a: &[f64]| {
        v.iter()
            .enumerate()
            .map(|(i, &t)| if t >= 0.0 { t } else { a[i % 4] * t })
            .collect::<Vec<f64>>()
    };
    let (xd, ad) = (f64s(&x), f64s(&alpha));
    assert_close(
        "prelu dX",
        &download(&gpu, &dx),
        &fd(|v| prelu(v, &ad), &x, &g),
        TOL,
    );
    assert_close(
        "prelu dAlpha",
        &download(&gpu, &da),
        &fd(|a| prelu(&xd, a), &alpha, &g),
        TOL,
    );

    // Broadcast product x * gate[N, 1, 1, C] (the channel attention) and same-shape product.
    let gate = r.vec(2 * 4, 0.0, 1.0);
    let (dx, dgate) = ops::eltwise::mul_backward(&gpu, &xt, &up(&gpu, &[2, 1, 1, 4], &gate), &gt);
    let bmul = |v: &[f64], s: &[f64]| {
        v.iter()
            .enumerate()
            .map(|(i, &t)| t * s[(i / 60) * 4 + i % 4])
            .collect::<Vec<f64>>()
    };
    let gd = f64s(&gate);
    assert_close(
        "mul dX",
        &download(&gpu, &dx),
        &fd(|v| bmul(v, &gd), &x, &g),
        TOL,
    );
    assert_close(
        "mul dGate",
        &download(&gpu, &dgate),
        &fd(|s| bmul(&xd, s), &gate, &g),
        TOL,
    );
    let z = r.vec(n, -1.0, 1.0);
    let (dx, dz) = ops::eltwise::mul_backward(&gpu, &xt, &up(&gpu, &xs, &z), &gt);
    let zd = f64s(&z);
    let emul = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<f64>>();
    assert_close(
        "mul dA",
        &download(&gpu, &dx),
        &fd(|v| emul(v, &zd), &x, &g),
        TOL,
    );
    assert_close(
        "mul dB",
        &download(&gpu, &dz),
        &fd(|v| emul(&xd, v), &z, &g),
        TOL,
    );

    // Spatial mean through the tape (its gradient spreads dY over H x W).
    let mut tape = asna::autograd::Tape::new(&gpu);
    let xv = tape.leaf(xt.clone(), true);
    let m = tape.mean_hw(&xv);
    let gm = r.vec(8, -1.0, 1.0);
    let c = tape.leaf(up(&gpu, &[2, 1, 1, 4], &gm), false);
    let prod = tape.mul(&m, &c);
    let root = tape.sum_squares(&prod, 0.5);
    tape.backward(&root);
    let mean_hw = |v: &[f64]| {
        (0..8)
            .map(|i| {
                (0..15)
                    .map(|p| v[(i / 4) * 60 + p * 4 + i % 4])
                    .sum::<f64>()
                    / 15.0
            })
            .collect::<Vec<f64>>()
    };
    let want = fd_grad(
        |v| {
            mean_hw(v)
                .iter()
                .zip(&gm)
                .map(|(a, b)| 0.5 * (a * *b as f64).powi(2))
                .sum()
        },
        &xd,
        EPS,
    );
    assert_close(
        "mean_hw dX (tape)",
        &download(&gpu, tape.grad(&xv).unwrap()),
        &want,
        TOL,
    );
}

#[test]
fn batch_norm_gradients_train_and_eval() {
    let gpu = gpu();
    let mut r = Rand::new(13);
    for (xs, c) in [([3usize, 3, 5, 4], 4usize), ([2, 1, 7, 1], 1)] {
        let n: usize = xs.iter().product();
        let x = r.vec(n, -2.0, 2.0);
        let g = r.vec(n, -1.0, 1.0);
        let gamma = r.vec(c, 0.5, 1.5);
        let beta = r.vec(c, -0.5, 0.5);
        let (xt, gt) = (up(&gpu, &xs, &x), up(&gpu, &xs, &g));
        let gam = up(&gpu, &[c], &gamma);
        let stats = ops::batchnorm::batch_stats(&gpu, &xt);
        let (dx, dgamma, dbeta) = ops::batchnorm::backward(&gpu, &xt, &gt, &stats, &gam);
        let (xd, gd, bd) = (f64s(&x), f64s(&gamma), f64s(&beta));
        assert_close(
            "bn dX",
            &download(&gpu, &dx),
            &fd(|v| bn_train_ref(v, c, &gd, &bd, 1e-3).0, &x, &g),
            TOL,
        );
        assert_close(
            "bn dGamma",
            &download(&gpu, &dgamma),
            &fd(|v| bn_train_ref(&xd, c, v, &bd, 1e-3).0, &gamma, &g),
            TOL,
        );
        assert_close(
            "bn dBeta",
            &download(&gpu, &dbeta),
            &fd(|v| bn_train_ref(&xd, c, &gd, v, 1e-3).0, &beta, &g),
            TOL,
        );
        let rm = r.vec(c, -0.2, 0.2);
        let rv = r.vec(c, 0.5, 1.5);
        let dx = ops::batchnorm::backward_eval(&gpu, &xt, &gt, &up(&gpu, &[c], &rv), &gam);
        let (rmd, rvd) = (f64s(&rm), f64s(&rv));
        assert_close(
            "bn eval dX",
            &download(&gpu, &dx),
            &fd(|v| bn_eval_ref(v, c, &rmd, &rvd, &gd, &bd, 1e-3), &x, &g),
            TOL,
        );
    }
}

#[test]
fn loss_gradients() {
    let gpu = gpu();
    let mut r = Rand::new(14);
    for n in [16usize, 7, 300] {
        let a = r.vec(n, -2.0, 2.0);
        let b = r.vec(n, -2.0, 2.0);
        let up_g = 0.7f32;
        let (at, bt, gt) = (
            up(&gpu, &[n], &a),
            up(&gpu, &[n], &b),
            up(&gpu, &[1], &[up_g]),
        );
        let bd = f64s(&b);
        let scale = [up_g];
        let mse = |v: &[f64]| {
            vec![v.iter().zip(&bd).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / n as f64]
        };
        assert_close(
            "mse dA",
            &download(&gpu, &ops::loss::mse_backward(&gpu, &at, &bt, &gt)),
            &fd(mse, &a, &scale),
            TOL,
        );
        let mae =
            |v: &[f64]| vec![v.iter().zip(&bd).map(|(p, q)| (p - q).abs()).sum::<f64>() / n as f64];
        assert_close(
            "mae dA",
            &download(&gpu, &ops::loss::mae_backward(&gpu, &at, &bt, &gt)),
            &fd(mae, &a, &scale),
            TOL,
        );
        let pear = |v: &[f64]| {
            let r = pearson_ref(v, &bd).clamp(-1.0, 1.0);
            vec![1.0 - r * r]
        };
        assert_close(
            "pearson dA",
            &download(&gpu, &ops::loss::pearson_term_backward(&gpu, &at, &bt, &gt)),
            &fd(pear, &a, &scale),
            TOL,
        );
        let ss = |v: &[f64]| vec![1e-4 * v.iter().map(|t| t * t).sum::<f64>()];
        let dss = ops::eltwise::scale_by_scalar(&gpu, &at, 2.0 * 1e-4, &gt);
        assert_close(
            "sum of squares dX",
            &download(&gpu, &dss),
            &fd(ss, &a, &scale),
            TOL,
        );
    }
}

#[test]
fn tape_accumulates_gradients_of_values_used_twice() {
    // y = sum((w * x)^2) + sum(w^2): w is used by two ops, x by one; d/dw = 2 w x^2 + 2 w.
    let gpu = gpu();
    let mut r = Rand::new(15);
    let (x, w) = (r.vec(12, -1.0, 1.0), r.vec(12, -1.0, 1.0));
    let mut tape = asna::autograd::Tape::new(&gpu);
    let xv = tape.leaf(up(&gpu, &[1, 2, 2, 3], &x), false);
    let wv = tape.leaf(up(&gpu, &[1, 2, 2, 3], &w), true);
    let p = tape.mul(&wv, &xv);
    let a = tape.sum_squares(&p, 1.0);
    let b = tape.sum_squares(&wv, 1.0);
    let root = tape.add(&a, &b);
    tape.backward(&root);
    let want: Vec<f64> = w
        .iter()
        .zip(&x)
        .map(|(w, x)| 2.0 * *w as f64 * (*x as f64).powi(2) + 2.0 * *w as f64)
        .collect();
    assert_close(
        "accumulated dW",
        &download(&gpu, tape.grad(&wv).unwrap()),
        &want,
        1e-6,
    );
    assert!(tape.grad(&xv).is_none(), "no gradient for a constant");
}
