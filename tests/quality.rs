//! GPU PSNR and SSIM (ops::quality) against the float64 CPU references in asna::metrics, on
//! awkward sizes (odd, exactly one valid SSIM window, too small for SSIM), batches of pairs
//! with different distortions, identical pairs, random and smooth images, and one 288x288 pair.

mod common;
use asna::gpu::Gpu;
use asna::metrics::{psnr_rgb_u8, ssim_rgb_u8};
use asna::ops::quality;
use asna::rng::Rng;
use common::gpu;

const SSIM_TOL: f64 = 1e-4;
const PSNR_TOL_DB: f64 = 1e-3;

/// Uniform random bytes.
fn random_image(r: &mut Rng, h: usize, w: usize) -> Vec<u8> {
    (0..h * w * 3).map(|_| r.below(256) as u8).collect()
}

/// A photo-like image: smooth gradients, flat bright and dark blocks (the hard case for f32
/// variances), a sharp edge and a little noise.
fn smooth_image(r: &mut Rng, h: usize, w: usize) -> Vec<u8> {
    let mut img = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (fy, fx) = (y as f64 / h as f64, x as f64 / w as f64);
                let mut v =
                    40.0 + 150.0 * fx * (1.0 - 0.5 * fy) + 30.0 * (6.0 * fy + c as f64).sin();
                if fx > 0.6 && fy < 0.5 {
                    v = 254.0; // flat and bright
                } else if fx < 0.3 && fy > 0.6 {
                    v = 3.0; // flat and dark
                }
                v += 2.0 * r.normal();
                img.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    img
}

fn add_noise(r: &mut Rng, img: &[u8], std: f64) -> Vec<u8> {
    img.iter()
        .map(|&v| (v as f64 + std * r.normal()).round().clamp(0.0, 255.0) as u8)
        .collect()
}

fn shift(img: &[u8], by: i32) -> Vec<u8> {
    img.iter()
        .map(|&v| (v as i32 + by).clamp(0, 255) as u8)
        .collect()
}

/// 3x3 box smoothing per channel, edges clamped.
fn blur(img: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut s = 0u32;
                for dy in -1i32..=1 {
                    for dx in -1i32..=1 {
                        let yy = (y as i32 + dy).clamp(0, h as i32 - 1) as usize;
                        let xx = (x as i32 + dx).clamp(0, w as i32 - 1) as usize;
                        s += img[(yy * w + xx) * 3 + c] as u32;
                    }
                }
                out[(y * w + x) * 3 + c] = ((s + 4) / 9) as u8;
            }
        }
    }
    out
}

/// Runs both metrics on a batch of pairs and checks every pair against the CPU; returns the
/// worst (SSIM abs error, PSNR abs error in dB).
fn check_batch(
    gpu: &Gpu,
    name: &str,
    pairs: &[(Vec<u8>, Vec<u8>)],
    h: usize,
    w: usize,
) -> (f64, f64) {
    let n = pairs.len();
    let a: Vec<u8> = pairs.iter().flat_map(|p| p.0.iter().copied()).collect();
    let b: Vec<u8> = pairs.iter().flat_map(|p| p.1.iter().copied()).collect();
    let psnr = quality::psnr(gpu, &a, &b, n, h, w).expect("gpu psnr");
    let ssim = quality::ssim(gpu, &a, &b, n, h, w).expect("gpu ssim");
    assert_eq!(
        (psnr.len(), ssim.len()),
        (n, n),
        "{name}: one value per pair"
    );
    let (mut worst_s, mut worst_p) = (0.0f64, 0.0f64);
    for (i, (pa, pb)) in pairs.iter().enumerate() {
        let (want_p, want_s) = (psnr_rgb_u8(pa, pb), ssim_rgb_u8(pa, pb, w, h));
        if want_p.is_infinite() {
            assert_eq!(
                psnr[i],
                f64::INFINITY,
                "{name} pair {i}: PSNR of identical images"
            );
        } else {
            let e = (psnr[i] - want_p).abs();
            assert!(
                e <= PSNR_TOL_DB,
                "{name} pair {i}: PSNR {} vs CPU {want_p} (err {e:.2e} dB)",
                psnr[i]
            );
            worst_p = worst_p.max(e);
        }
        if want_s.is_nan() {
            assert!(
                ssim[i].is_nan(),
                "{name} pair {i}: SSIM {} where the CPU gives NaN",
                ssim[i]
            );
        } else {
            let e = (ssim[i] - want_s).abs();
            assert!(
                e <= SSIM_TOL,
                "{name} pair {i}: SSIM {} vs CPU {want_s} (err {e:.2e})",
                ssim[i]
            );
            worst_s = worst_s.max(e);
        }
    }
    eprintln!(
        "{name} ({n} x {h}x{w}): max |SSIM err| {worst_s:.2e}, max |PSNR err| {worst_p:.2e} dB"
    );
    (worst_s, worst_p)
}

/// The distortion set applied to a reference image.
fn distortions(r: &mut Rng, img: &[u8], h: usize, w: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (img.to_vec(), add_noise(r, img, 12.0)),
        (img.to_vec(), add_noise(r, img, 1.0)),
        (img.to_vec(), blur(img, h, w)),
        (img.to_vec(), shift(img, 17)),
        (img.to_vec(), shift(img, -40)),
        (img.to_vec(), img.to_vec()),
        (blur(img, h, w), img.to_vec()),
    ]
}

#[test]
fn odd_sizes_and_mixed_distortions() {
    let gpu = gpu();
    let mut r = Rng::new(7);
    // (h, w): odd sizes, exactly one valid window, one valid row, non-multiple-of-4 byte counts.
    for (h, w) in [(13, 17), (11, 11), (17, 13), (40, 29), (11, 30), (29, 40)] {
        let smooth = smooth_image(&mut r, h, w);
        let pairs = distortions(&mut r, &smooth, h, w);
        check_batch(&gpu, &format!("smooth {h}x{w}"), &pairs, h, w);
        let rand = random_image(&mut r, h, w);
        let mut pairs = distortions(&mut r, &rand, h, w);
        pairs.push((rand.clone(), random_image(&mut r, h, w)));
        check_batch(&gpu, &format!("random {h}x{w}"), &pairs, h, w);
    }
}

#[test]
fn identical_images() {
    let gpu = gpu();
    let mut r = Rng::new(11);
    let (h, w) = (23, 31);
    let imgs: Vec<Vec<u8>> = vec![
        random_image(&mut r, h, w),
        smooth_image(&mut r, h, w),
        vec![255; h * w * 3],
        vec![0; h * w * 3],
    ];
    let a: Vec<u8> = imgs.concat();
    let psnr = quality::psnr(&gpu, &a, &a, imgs.len(), h, w).unwrap();
    let ssim = quality::ssim(&gpu, &a, &a, imgs.len(), h, w).unwrap();
    for i in 0..imgs.len() {
        assert_eq!(psnr[i], f64::INFINITY, "PSNR of identical pair {i}");
        assert!(
            (ssim[i] - 1.0).abs() <= 1e-6,
            "SSIM of identical pair {i}: {}",
            ssim[i]
        );
    }
}

#[test]
fn flat_images_and_too_small_for_ssim() {
    let gpu = gpu();
    let mut r = Rng::new(13);
    // Flat bright vs flat bright-ish: zero variance, where f32 E[x^2] - mu^2 would fail.
    let (h, w) = (15, 21);
    let pairs = vec![
        (vec![255; h * w * 3], vec![250; h * w * 3]),
        (
            vec![255; h * w * 3],
            add_noise(&mut r, &vec![250; h * w * 3], 0.7),
        ),
        (vec![0; h * w * 3], vec![255; h * w * 3]),
        (vec![128; h * w * 3], vec![127; h * w * 3]),
    ];
    check_batch(&gpu, "flat", &pairs, h, w);
    // Below 11 pixels on a side: PSNR still defined, SSIM NaN like the CPU.
    for (h, w) in [(10, 12), (12, 10), (1, 1), (3, 5)] {
        let img = random_image(&mut r, h, w);
        let pairs = vec![
            (img.clone(), add_noise(&mut r, &img, 5.0)),
            (img.clone(), img.clone()),
        ];
        check_batch(&gpu, &format!("small {h}x{w}"), &pairs, h, w);
    }
    // Empty batch.
    assert!(quality::psnr(&gpu, &[], &[], 0, 20, 20).unwrap().is_empty());
    assert!(quality::ssim(&gpu, &[], &[], 0, 20, 20).unwrap().is_empty());
}

#[test]
fn full_size_288() {
    let gpu = gpu();
    let mut r = Rng::new(17);
    let (h, w) = (288, 288);
    let img = smooth_image(&mut r, h, w);
    let pairs = vec![
        (img.clone(), add_noise(&mut r, &img, 8.0)),
        (img.clone(), blur(&img, h, w)),
    ];
    // 288 * 288 * 3 bytes: several PSNR chunks per pair and a partial last chunk.
    check_batch(&gpu, "288x288", &pairs, h, w);
}
