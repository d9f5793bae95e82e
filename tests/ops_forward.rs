//! Every forward op on the GPU against a float64 CPU reference, on awkward shapes: odd sizes,
//! one channel, 1x1 images, every stride and padding case the model uses, batch 1 and > 1.

mod common;
use asna::gpu::kernels::Family;
use asna::ops::{self, Act};
use common::*;

/// Both kernel families (workgroup tiles and direct) must agree with the reference.
fn check_conv(
    seed: u64,
    xs: [usize; 4],
    k: [usize; 2],
    cout: usize,
    stride: usize,
    bias: bool,
    act: Act,
) {
    for tiled in [true, false] {
        check_conv_variant(seed, xs, k, cout, stride, bias, act, tiled);
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
    tiled: bool,
) {
    let gpu = gpu();
    gpu.kernels.borrow_mut().force_family(Some(if tiled { Family::Tiled } else { Family::Direct }));
    let mut r = Rand::new(seed);
    let ws = [k[0], k[1], xs[3], cout];
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let w = r.vec(ws.iter().product(), -0.5, 0.5);
    let b = r.vec(cout, -0.5, 0.5);
    let (want, shape) = conv_ref(
        &f64s(&x),
        xs,
        &f64s(&w),
        ws,
        bias.then(|| f64s(&b)).as_deref(),
        stride,
        act,
    );
    let xt = gpu.upload(&xs, &x);
    let wt = gpu.upload(&ws, &w);
    let bt = gpu.upload(&[cout], &b);
    let y = ops::conv::forward(&gpu, &xt, &wt, bias.then_some(&bt), stride, act);
    assert_eq!(y.shape, shape.to_vec(), "conv output shape");
    assert_close(
        &format!("conv {xs:?} k{k:?} co{cout} s{stride} {act:?} tiled={tiled}"),
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

#[test]
fn pooling_and_upsampling() {
    let gpu = gpu();
    let mut r = Rand::new(20);
    for xs in [[2, 6, 8, 3], [1, 7, 9, 1], [3, 2, 2, 5]] {
        let x = r.vec(xs.iter().product(), -2.0, 2.0);
        let xt = gpu.upload(&xs, &x);
        let y = ops::pool::maxpool(&gpu, &xt);
        assert_eq!(y.shape, vec![xs[0], xs[1] / 2, xs[2] / 2, xs[3]]);
        assert_close(
            "maxpool",
            &download(&gpu, &y),
            &maxpool_ref(&f64s(&x), xs),
            0.0,
        );
        let u = ops::pool::upsample(&gpu, &xt);
        assert_eq!(u.shape, vec![xs[0], xs[1] * 2, xs[2] * 2, xs[3]]);
        assert_close(
            "upsample",
            &download(&gpu, &u),
            &upsample_ref(&f64s(&x), xs),
            0.0,
        );
    }
}

#[test]
fn concat_split_absdiff_slice() {
    let gpu = gpu();
    let mut r = Rand::new(21);
    let (a, b) = (r.vec(2 * 3 * 5 * 4, -1.0, 1.0), r.vec(2 * 3 * 5, -1.0, 1.0));
    let at = gpu.upload(&[2, 3, 5, 4], &a);
    let bt = gpu.upload(&[2, 3, 5, 1], &b);
    let c = ops::concat::concat(&gpu, &[&at, &bt]);
    assert_eq!(c.shape, vec![2, 3, 5, 5]);
    let want: Vec<f64> = (0..30)
        .flat_map(|row| {
            a[row * 4..row * 4 + 4]
                .iter()
                .chain(&b[row..row + 1])
                .map(|&v| v as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close("concat", &download(&gpu, &c), &want, 0.0);
    let parts = ops::concat::split(&gpu, &c, &[4, 1]);
    assert_close("split a", &download(&gpu, &parts[0]), &f64s(&a), 0.0);
    assert_close("split b", &download(&gpu, &parts[1]), &f64s(&b), 0.0);

    // Stacked [R; D] batch of 2 pairs.
    let y = r.vec(4 * 3 * 3 * 2, -1.0, 1.0);
    let yt = gpu.upload(&[4, 3, 3, 2], &y);
    let d = ops::eltwise::absdiff_halves(&gpu, &yt);
    assert_eq!(d.shape, vec![2, 3, 3, 2]);
    let want: Vec<f64> = (0..36)
        .map(|i| (y[i] as f64 - y[i + 36] as f64).abs())
        .collect();
    assert_close("absdiff", &download(&gpu, &d), &want, 1e-7);
    let s = ops::eltwise::slice_batch(&gpu, &yt, 2, 2);
    assert_close("slice", &download(&gpu, &s), &f64s(&y[36..]), 0.0);
}

#[test]
fn activations_prelu_mul_add() {
    let gpu = gpu();
    let mut r = Rand::new(22);
    let x = r.vec(3 * 5 * 7 * 3, -3.0, 3.0);
    let xt = gpu.upload(&[3, 5, 7, 3], &x);
    for act in [Act::LeakyRelu, Act::Relu, Act::Sigmoid, Act::Tanh] {
        let y = ops::eltwise::activation(&gpu, &xt, act);
        let want: Vec<f64> = x.iter().map(|&v| act_ref(v as f64, act)).collect();
        assert_close(&format!("{act:?}"), &download(&gpu, &y), &want, 1e-6);
    }
    let alpha = r.vec(3, 0.0, 0.3);
    let y = ops::eltwise::prelu(&gpu, &xt, &gpu.upload(&[3], &alpha));
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v >= 0.0 {
                v as f64
            } else {
                alpha[i % 3] as f64 * v as f64
            }
        })
        .collect();
    assert_close("prelu", &download(&gpu, &y), &want, 1e-7);
    // Broadcast product with a [N, 1, 1, C] gate, and same-shape product.
    let g = r.vec(9, 0.0, 1.0);
    let y = ops::eltwise::mul(&gpu, &xt, &gpu.upload(&[3, 1, 1, 3], &g));
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f64 * g[(i / 105) * 3 + i % 3] as f64)
        .collect();
    assert_close("mul broadcast", &download(&gpu, &y), &want, 1e-7);
    let z = r.vec(x.len(), -1.0, 1.0);
    let zt = gpu.upload(&xt.shape, &z);
    let y = ops::eltwise::mul(&gpu, &xt, &zt);
    assert_close(
        "mul",
        &download(&gpu, &y),
        &x.iter()
            .zip(&z)
            .map(|(a, b)| *a as f64 * *b as f64)
            .collect::<Vec<_>>(),
        1e-7,
    );
    let y = ops::eltwise::add(&gpu, &xt, &zt);
    assert_close(
        "add",
        &download(&gpu, &y),
        &x.iter()
            .zip(&z)
            .map(|(a, b)| *a as f64 + *b as f64)
            .collect::<Vec<_>>(),
        1e-7,
    );
}

#[test]
fn batch_norm_train_and_eval_and_running_update() {
    let gpu = gpu();
    let mut r = Rand::new(23);
    for (xs, c) in [
        ([4usize, 5, 7, 3], 3usize),
        ([2, 9, 9, 1], 1),
        ([6, 1, 16, 16], 16),
    ] {
        let n: usize = xs.iter().product();
        let x = r.vec(n, -2.0, 3.0);
        let gamma = r.vec(c, 0.5, 1.5);
        let beta = r.vec(c, -0.5, 0.5);
        let rm = r.vec(c, -0.1, 0.1);
        let rv = r.vec(c, 1.0, 1.5);
        let (want, mean, var) = bn_train_ref(&f64s(&x), c, &f64s(&gamma), &f64s(&beta), 1e-3);
        let xt = gpu.upload(&xs, &x);
        let (gt, bt) = (gpu.upload(&[c], &gamma), gpu.upload(&[c], &beta));
        let stats = ops::batchnorm::batch_stats(&gpu, &xt);
        assert_close("bn mean", &download(&gpu, &stats.mean), &mean, 1e-6);
        assert_close("bn var", &download(&gpu, &stats.var), &var, 1e-5);
        let y = ops::batchnorm::normalize(&gpu, &xt, &stats.mean, &stats.var, &gt, &bt);
        assert_close("bn train", &download(&gpu, &y), &want, 1e-5);
        let (rmt, rvt) = (gpu.upload(&[c], &rm), gpu.upload(&[c], &rv));
        let ye = ops::batchnorm::normalize(&gpu, &xt, &rmt, &rvt, &gt, &bt);
        assert_close(
            "bn eval",
            &download(&gpu, &ye),
            &bn_eval_ref(
                &f64s(&x),
                c,
                &f64s(&rm),
                &f64s(&rv),
                &f64s(&gamma),
                &f64s(&beta),
                1e-3,
            ),
            1e-6,
        );
        let (nm, nv) = ops::batchnorm::running_update(&gpu, &rmt, &rvt, &stats);
        let want_m: Vec<f64> = (0..c)
            .map(|i| 0.99 * rm[i] as f64 + 0.01 * mean[i])
            .collect();
        let want_v: Vec<f64> = (0..c)
            .map(|i| 0.99 * rv[i] as f64 + 0.01 * var[i])
            .collect();
        assert_close("running mean", &download(&gpu, &nm), &want_m, 1e-6);
        assert_close("running var", &download(&gpu, &nv), &want_v, 1e-6);
    }
}

#[test]
fn reductions_large_and_small() {
    let gpu = gpu();
    let mut r = Rand::new(24);
    // Many rows (two passes) and few rows (one pass); spatial mean per image.
    for (g, rows, c) in [(1usize, 70001usize, 3usize), (3, 49, 8), (2, 1, 5)] {
        let x = r.vec(g * rows * c, -1.0, 1.0);
        let xt = gpu.upload(&[g, rows, c], &x);
        let m = ops::reduce::columns(
            &gpu,
            &xt,
            ops::reduce::Summand::Value,
            None,
            None,
            1.0 / rows as f32,
        );
        let want: Vec<f64> = (0..g * c)
            .map(|i| {
                let (gg, cc) = (i / c, i % c);
                (0..rows)
                    .map(|rr| x[(gg * rows + rr) * c + cc] as f64)
                    .sum::<f64>()
                    / rows as f64
            })
            .collect();
        assert_close("column mean", &download(&gpu, &m), &want, 1e-5);
    }
    let x = r.vec(1000, -1.0, 1.0);
    let s = ops::reduce::total(&gpu, &gpu.upload(&[1000], &x), ops::reduce::Summand::Square);
    assert_close(
        "squared norm",
        &download(&gpu, &s),
        &[x.iter().map(|v| (*v as f64).powi(2)).sum()],
        1e-6,
    );
}

#[test]
fn image_normalisation() {
    let gpu = gpu();
    let px: Vec<u8> = (0..2 * 3 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
    let t = ops::image::to_input(&gpu, &px, 2, 3, 5);
    assert_eq!(t.shape, vec![2, 3, 5, 3]);
    let want: Vec<f64> = px.iter().map(|&b| (b as f64 - 127.5) / 127.5).collect();
    assert_close("u8 to unit", &download(&gpu, &t), &want, 1e-7);
}

#[test]
fn losses_forward() {
    let gpu = gpu();
    let mut r = Rand::new(25);
    let a = r.vec(16, -2.0, 2.0);
    let b = r.vec(16, -2.0, 2.0);
    let (at, bt) = (gpu.upload(&[16], &a), gpu.upload(&[16], &b));
    let mse: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / 16.0;
    assert_close(
        "mse",
        &download(&gpu, &ops::loss::mse(&gpu, &at, &bt)),
        &[mse],
        1e-6,
    );
    let rr = pearson_ref(&f64s(&a), &f64s(&b));
    assert_close(
        "pearson",
        &download(&gpu, &ops::loss::pearson_term(&gpu, &at, &bt)),
        &[1.0 - rr * rr],
        1e-5,
    );
}

/// The scoring path's fused decoder input equals upsample, Siamese difference and
/// concatenation done one by one on the reference (odd channel counts, batch 1 and 3).
#[test]
fn fused_upsample_absdiff_concat() {
    let gpu = gpu();
    let mut r = Rand::new(41);
    for (n, lh, lw, c1, c2) in [(1, 1, 1, 1, 1), (3, 5, 3, 7, 3), (2, 4, 6, 16, 8)] {
        let ls = [n, lh, lw, c1];
        let fs = [2 * n, 2 * lh, 2 * lw, c2];
        let low = r.vec(ls.iter().product(), -1.0, 1.0);
        let feats = r.vec(fs.iter().product(), -1.0, 1.0);
        let up = upsample_ref(&f64s(&low), ls);
        let half = fs.iter().product::<usize>() / 2;
        let fd = f64s(&feats);
        let (h, w) = (2 * lh, 2 * lw);
        let mut want = Vec::new();
        for row in 0..n * h * w {
            want.extend_from_slice(&up[row * c1..(row + 1) * c1]);
            want.extend((0..c2).map(|c| (fd[row * c2 + c] - fd[half + row * c2 + c]).abs()));
        }
        let y = ops::concat::upsample_absdiff_concat(
            &gpu,
            &gpu.upload(&ls, &low),
            &gpu.upload(&fs, &feats),
        );
        assert_eq!(y.shape, vec![n, h, w, c1 + c2]);
        assert_close(
            &format!("fused decoder input {ls:?} {fs:?}"),
            &download(&gpu, &y),
            &want,
            1e-7,
        );
    }
}
