//! Scoring in f16 (activations and weights stored as f16, convolution blocks in f16) on adapters with
//! shader-f16: the f16 convolution against the float64 reference, and standardised scores of
//! the default model within 0.01 of f32 on several pairs. Without shader-f16 the f16 path must
//! refuse with a clear error instead.

mod common;
use asna::gpu::{DType, Gpu};
use asna::model::checkpoint::load_model;
use asna::ops::conv::FAMILIES;
use asna::ops::{self, Act};
use asna::rng::Rng;
use asna::scorer::Scorer;
use common::*;
use image::RgbImage;

fn has_f16(gpu: &Gpu) -> bool {
    gpu.features.contains(wgpu::Features::SHADER_F16)
}

fn demo(name: &str) -> RgbImage {
    image::open(format!("{}/data/demo/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .to_rgb8()
}

fn crop(img: &RgbImage, x: u32, y: u32) -> RgbImage {
    image::imageops::crop_imm(img, x, y, 288, 288).to_image()
}

fn noisy(img: &RgbImage, sigma: f64, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (*c as f64 + rng.normal() * sigma).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// 5x5 box blur, edges clamped.
fn blurred(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let mut s = [0u32; 3];
        for dy in -2..=2i64 {
            for dx in -2..=2i64 {
                let px = img.get_pixel(
                    (x as i64 + dx).clamp(0, w - 1) as u32,
                    (y as i64 + dy).clamp(0, h - 1) as u32,
                );
                for (acc, v) in s.iter_mut().zip(px.0) {
                    *acc += v as u32;
                }
            }
        }
        image::Rgb(s.map(|v| ((v + 12) / 25) as u8))
    })
}

fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .unwrap();
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

#[test]
fn f16_scores_agree_with_f32_within_a_hundredth() {
    let gpu = gpu();
    // wgpu's OpenGL ES backend has no shader-f16: CI's GL run (.ci/run) takes the refusal.
    if gpu.info.backend == wgpu::Backend::Gl {
        assert!(!has_f16(&gpu), "{}: GL offering shader-f16", gpu.info.name);
    }
    if !has_f16(&gpu) {
        let m = load_model(&gpu, None).unwrap();
        let err = Scorer::new(&gpu, vec![m], 4, false)
            .with_precision(DType::F16)
            .err()
            .expect("f16 refused without shader-f16")
            .to_string();
        assert!(
            err.contains("shader-f16") && err.contains(&gpu.info.name),
            "{err}"
        );
        return;
    }
    let (r, d) = (demo("ref.png"), demo("dist.png"));
    let (a, b) = (crop(&r, 200, 100), crop(&r, 450, 200));
    let pairs = vec![
        (r.clone(), d.clone()), // the demo pair (six windows)
        (a.clone(), a.clone()), // identical
        (a.clone(), noisy(&a, 12.0, 1)),
        (a.clone(), blurred(&a)),
        (b.clone(), jpeg(&b, 15)),
        (b.clone(), noisy(&blurred(&b), 4.0, 2)),
    ];
    let f32_scorer = Scorer::new(&gpu, vec![load_model(&gpu, None).unwrap()], 4, false);
    let std = f32_scorer.models[0].scaler.std;
    let f16_scorer = Scorer::new(&gpu, vec![load_model(&gpu, None).unwrap()], 4, false)
        .with_precision(DType::F16)
        .unwrap();
    assert_eq!(f16_scorer.models[0].store.weight_dtype(), DType::F16);
    let s32 = f32_scorer.score_pairs(&pairs, |_| {}).unwrap();
    let s16 = f16_scorer.score_pairs(&pairs, |_| {}).unwrap();
    let mut worst: f64 = 0.0;
    for (i, (x, y)) in s32.iter().zip(&s16).enumerate() {
        // Standardised units: the label scale divided by the model's label deviation.
        let dz = (x - y).abs() / std;
        eprintln!("pair {i}: f32 {x:.5} f16 {y:.5} |dz| {dz:.2e}");
        assert!(
            dz <= 0.01,
            "pair {i}: f32 {x} f16 {y}: standardised difference {dz}"
        );
        worst = worst.max(dz);
    }
    eprintln!("max |f16 - f32| in standardised score: {worst:.3e}");
    assert!(
        worst > 0.0,
        "f16 scores equal f32 bit for bit: the f16 path did not run"
    );
}

#[test]
fn f16_convolution_matches_the_float64_reference() {
    let gpu = gpu();
    if !has_f16(&gpu) {
        return; // covered by the scoring test's refusal check
    }
    // A family without f16 kernels hands the product to its stand-in (`f16_stand_in`).
    for &family in FAMILIES {
        gpu.kernels.borrow_mut().force_family(Some(family));
        for (seed, xs, k, cout, stride, act, fold) in [
            (
                1u64,
                [2usize, 7, 9, 5],
                3usize,
                6usize,
                2usize,
                Act::LeakyRelu,
                true,
            ),
            (2, [1, 11, 13, 3], 5, 8, 1, Act::None, false),
            (3, [3, 5, 6, 24], 3, 33, 1, Act::Relu, true),
        ] {
            let mut r = Rand::new(seed);
            let ws = [k, k, xs[3], cout];
            let x = r.vec(xs.iter().product(), -1.0, 1.0);
            let w = r.vec(ws.iter().product(), -0.5, 0.5);
            let b = r.vec(cout, -0.5, 0.5);
            let scale = r.vec(cout, -1.5, 1.5);
            let shift = r.vec(cout, -0.5, 0.5);
            let (mut want, _) =
                conv_ref(&f64s(&x), xs, &f64s(&w), ws, Some(&f64s(&b)), stride, act);
            if fold {
                for (i, v) in want.iter_mut().enumerate() {
                    *v = *v * scale[i % cout] as f64 + shift[i % cout] as f64;
                }
            }
            let affine = gpu.upload(&[2 * cout], &[scale, shift].concat());
            let y = ops::conv::forward_affine(
                &gpu,
                &gpu.upload_as(&xs, &x, DType::F16),
                &gpu.upload_as(&ws, &w, DType::F16),
                Some(&gpu.upload(&[cout], &b)),
                stride,
                act,
                fold.then_some(&affine),
            );
            assert_eq!(y.dtype, DType::F16);
            // Inputs, weights and outputs rounded to f16 (unit roundoff 4.9e-4).
            assert_close(
                &format!("f16 conv {xs:?} k{k} co{cout} s{stride} {family:?}"),
                &download(&gpu, &y),
                &want,
                2e-3,
            );
        }
    }
}

#[test]
#[should_panic(expected = "f32 tensors only")]
fn training_kernels_refuse_f16_tensors() {
    let gpu = gpu();
    let dz = gpu.upload_as(&[1, 4, 4, 2], &[0.5; 32], DType::F16);
    let w = gpu.upload_as(&[3, 3, 2, 2], &[0.1; 36], DType::F16);
    let g = ops::conv::ConvGeom::new(&[1, 4, 4, 2], &w.shape, 1);
    ops::conv::backward_input(&gpu, &dz, &w, &g);
}
