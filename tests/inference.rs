//! The scoring fast path: evaluation-mode batch norm folded into the convolution's epilogue
//! gives what conv then batch_norm_eval give, for every kernel family, and the model's
//! scoring forward pass (which folds) agrees with the unfolded one of a recording tape.

mod common;
use asna::autograd::Tape;
use asna::model::asna::{forward, BnContext, Bound, SIZE};
use asna::model::checkpoint::load_model;
use asna::ops::conv::{Family, FAMILIES};
use asna::ops::{self, Act};
use common::*;

#[allow(clippy::too_many_arguments)]
fn check_fold(
    seed: u64,
    xs: [usize; 4],
    k: usize,
    cout: usize,
    stride: usize,
    act: Act,
    family: Family,
) {
    let gpu = gpu();
    gpu.kernels.borrow_mut().force_family(Some(family));
    let mut r = Rand::new(seed);
    let ws = [k, k, xs[3], cout];
    let x = gpu.upload(&xs, &r.vec(xs.iter().product(), -1.0, 1.0));
    let w = gpu.upload(&ws, &r.vec(ws.iter().product(), -0.5, 0.5));
    let b = gpu.upload(&[cout], &r.vec(cout, -0.5, 0.5));
    // Negative gammas and small variances included: the fold must not assume either away.
    let gamma = gpu.upload(&[cout], &r.vec(cout, -1.5, 1.5));
    let beta = gpu.upload(&[cout], &r.vec(cout, -0.5, 0.5));
    let mean = gpu.upload(&[cout], &r.vec(cout, -0.5, 0.5));
    let var = gpu.upload(&[cout], &r.vec(cout, 0.01, 2.0));

    let y = ops::conv::forward(&gpu, &x, &w, Some(&b), stride, act);
    let unfused = ops::batchnorm::normalize(&gpu, &y, &mean, &var, &gamma, &beta);
    let affine = ops::batchnorm::fold(&gpu, &gamma, &beta, &mean, &var);
    let fused = ops::conv::forward_affine(&gpu, &x, &w, Some(&b), stride, act, Some(&affine));
    assert_eq!(fused.shape, unfused.shape);
    assert_close(
        &format!("folded bn {xs:?} k{k} co{cout} s{stride} {act:?} {family:?}"),
        &download(&gpu, &fused),
        &f64s(&download(&gpu, &unfused)),
        1e-5,
    );
}

#[test]
fn folded_batch_norm_equals_conv_then_batch_norm() {
    for &family in FAMILIES {
        check_fold(1, [3, 7, 9, 5], 3, 11, 2, Act::LeakyRelu, family);
        check_fold(2, [2, 13, 11, 6], 5, 8, 1, Act::Relu, family);
        check_fold(3, [1, 9, 10, 3], 3, 33, 4, Act::LeakyRelu, family);
        check_fold(4, [2, 1, 1, 70], 1, 3, 1, Act::None, family);
        // The taps family's shape, its 13 channels in two blocks of 8.
        check_fold(5, [2, 6, 13, 3], 5, 13, 1, Act::LeakyRelu, family);
    }
}

#[test]
fn folded_scoring_pass_matches_the_unfolded_model() {
    let gpu = gpu();
    let model = load_model(&gpu, None).unwrap();
    let store = &model.store;
    let img = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/ref.png"))
        .unwrap()
        .to_rgb8();
    let dist = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/data/demo/dist.png"))
        .unwrap()
        .to_rgb8();
    let crop = |im: &image::RgbImage| {
        image::imageops::crop_imm(im, 100, 50, SIZE as u32, SIZE as u32)
            .to_image()
            .into_raw()
    };
    let (r, d) = (crop(&img), crop(&dist));
    let fused = download(
        &gpu,
        &asna::model::asna::predict(&gpu, store, &r, &d, 1, None),
    );

    // A recording tape takes the unfolded path (conv, then batch_norm_eval).
    let mut tape = Tape::new(&gpu);
    let params = Bound::new(&mut tape, store, false);
    let stacked: Vec<u8> = r.iter().chain(&d).copied().collect();
    let x = tape.leaf(ops::image::to_input(&gpu, &stacked, 2, SIZE, SIZE), false);
    let mut bn = BnContext::eval(store);
    let unfused = download(&gpu, &forward(&mut tape, &params, &mut bn, &x, None).t);
    assert!(
        (fused[0] - unfused[0]).abs() <= 1e-4,
        "standardised score: folded {} unfolded {}",
        fused[0],
        unfused[0]
    );
}
