//! Full-reference baselines on the GPU (src/ops/quality.rs, shaders/quality.wgsl): batched
//! PSNR, SSIM, MS-SSIM and GMSD against their float64 references (checked here against
//! scikit-image and piq), on awkward sizes (odd, exactly one valid SSIM window, too small for
//! SSIM or MS-SSIM, one odd side), batches of pairs with different distortions, identical
//! pairs, random and smooth images, and one 288x288 pair. No gradient: these are evaluation
//! baselines.

use crate::*;
use asna::gpu::Gpu;
use asna::ops::quality;
use asna::rng::Rng;

// ------------------------------------------------------------------ float64 references

/// PSNR in dB between two 8-bit buffers, over every byte (for interleaved RGB: all channels
/// pooled into one MSE), peak 255: `10 log10(255^2 / MSE)`. `+inf` for identical buffers, NaN
/// if empty.
pub fn psnr_ref(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr_ref: length mismatch");
    if a.is_empty() {
        return f64::NAN;
    }
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(&p, &q)| (p as i64 - q as i64).pow(2) as u64)
        .sum();
    if se == 0 {
        return f64::INFINITY;
    }
    let mse = se as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Side of the SSIM Gaussian window.
const WINDOW: usize = 11;

/// The normalised 1-D Gaussian of the SSIM window, sigma 1.5: the 2-D window is the outer
/// product `g[i] g[j]` (which sums to 1), as MATLAB's `fspecial('gaussian', 11, 1.5)`.
fn gaussian_ref() -> [f64; WINDOW] {
    let mut g = [0.0; WINDOW];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - 5.0;
        *v = (-d * d / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Mean SSIM between two interleaved 8-bit RGB images of `w` x `h` pixels, exactly as Wang,
/// Bovik, Sheikh & Simoncelli (2004) / their `ssim.m` (without the automatic downsampling of
/// later versions):
///
/// 1. Luma `Y = 0.299 R + 0.587 G + 0.114 B` (Rec. 601 weights, as MATLAB `rgb2gray`) on the
///    0..255 scale, kept in floating point (**not** rounded to integers as `rgb2gray` would do
///    for uint8 input).
/// 2. Gaussian window 11x11, sigma 1.5, normalised to sum 1.
/// 3. Local statistics by 'valid' filtering only (windows entirely inside the image; no
///    padding): `mu_x = sum w x`, `sigma_x^2 = sum w x^2 - mu_x^2`,
///    `sigma_xy = sum w x y - mu_x mu_y` (biased, weights sum to 1).
/// 4. `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2`, `L = 255`;
///    `SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) /
///            ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))`.
/// 5. Result: the plain mean of the `(w - 10) x (h - 10)` SSIM map.
///
/// This equals scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False, data_range=255)` on the same luma. Exactly 1 for identical
/// images, NaN if `w < 11` or `h < 11`.
pub fn ssim_ref(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    assert_eq!(a.len(), 3 * w * h, "ssim_ref: a is not w*h*3 bytes");
    assert_eq!(b.len(), 3 * w * h, "ssim_ref: b is not w*h*3 bytes");
    if w < WINDOW || h < WINDOW {
        return f64::NAN;
    }
    let luma = |img: &[u8]| -> Vec<f64> {
        img.chunks_exact(3)
            .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
            .collect()
    };
    let ya = luma(a);
    let yb = luma(b);
    let g = gaussian_ref();
    let (ow, oh) = (w - WINDOW + 1, h - WINDOW + 1);
    // Five moment images, filtered separably ('valid' in both directions).
    let fields: [Box<dyn Fn(usize) -> f64>; 5] = [
        Box::new(|i| ya[i]),
        Box::new(|i| yb[i]),
        Box::new(|i| ya[i] * ya[i]),
        Box::new(|i| yb[i] * yb[i]),
        Box::new(|i| ya[i] * yb[i]),
    ];
    let mut filtered: Vec<Vec<f64>> = Vec::with_capacity(5);
    for f in &fields {
        // Horizontal pass: h rows x ow columns.
        let mut tmp = vec![0.0; h * ow];
        for y in 0..h {
            for x in 0..ow {
                let mut s = 0.0;
                for (k, gk) in g.iter().enumerate() {
                    s += gk * f(y * w + x + k);
                }
                tmp[y * ow + x] = s;
            }
        }
        // Vertical pass: oh rows x ow columns.
        let mut out = vec![0.0; oh * ow];
        for y in 0..oh {
            for x in 0..ow {
                let mut s = 0.0;
                for (k, gk) in g.iter().enumerate() {
                    s += gk * tmp[(y + k) * ow + x];
                }
                out[y * ow + x] = s;
            }
        }
        filtered.push(out);
    }
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let mut total = 0.0;
    let [fa, fb, faa, fbb, fab] = &filtered[..] else {
        unreachable!()
    };
    for i in 0..oh * ow {
        let (mx, my) = (fa[i], fb[i]);
        let vx = faa[i] - mx * mx;
        let vy = fbb[i] - my * my;
        let cxy = fab[i] - mx * my;
        total +=
            ((2.0 * mx * my + c1) * (2.0 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    }
    total / (oh * ow) as f64
}

/// Luma planes (Rec. 601 weights, 0..255, unrounded) of an interleaved RGB image.
fn luma_ref(img: &[u8]) -> Vec<f64> {
    img.chunks_exact(3)
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect()
}

/// Means of the SSIM map and of the contrast-structure map
/// `cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)` over the valid 11x11 Gaussian windows
/// of two `w` x `h` planes, brute force in 2-D (piq's `_ssim_per_channel`).
fn ssim_cs_ref(x: &[f64], y: &[f64], w: usize, h: usize) -> (f64, f64) {
    let g = gaussian_ref();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (ow, oh) = (w - WINDOW + 1, h - WINDOW + 1);
    let (mut ssim, mut cs) = (0.0, 0.0);
    for oy in 0..oh {
        for ox in 0..ow {
            let [mut mx, mut my, mut xx, mut yy, mut xy] = [0.0f64; 5];
            for i in 0..WINDOW {
                for j in 0..WINDOW {
                    let (k, wt) = ((oy + i) * w + ox + j, g[i] * g[j]);
                    mx += wt * x[k];
                    my += wt * y[k];
                    xx += wt * x[k] * x[k];
                    yy += wt * y[k] * y[k];
                    xy += wt * x[k] * y[k];
                }
            }
            let (vx, vy, cxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
            let c = (2.0 * cxy + c2) / (vx + vy + c2);
            cs += c;
            ssim += (2.0 * mx * my + c1) / (mx * mx + my * my + c1) * c;
        }
    }
    let n = (ow * oh) as f64;
    (ssim / n, cs / n)
}

/// The next scale of a plane as piq makes it: `pad = max(h % 2, w % 2)` rows and columns
/// added (replicated before the plane, or zeros after it), then 2x2 means, rounding down.
fn halve_ref(x: &[f64], w: usize, h: usize, replicate_before: bool) -> (Vec<f64>, usize, usize) {
    let pad = (h % 2).max(w % 2);
    let (nw, nh) = ((w + pad) / 2, (h + pad) / 2);
    let at = |r: usize, c: usize| -> f64 {
        if replicate_before {
            x[r.saturating_sub(pad) * w + c.saturating_sub(pad)]
        } else if r < h && c < w {
            x[r * w + c]
        } else {
            0.0
        }
    };
    let mut out = Vec::with_capacity(nw * nh);
    for r in 0..nh {
        for c in 0..nw {
            let s = at(2 * r, 2 * c)
                + at(2 * r, 2 * c + 1)
                + at(2 * r + 1, 2 * c)
                + at(2 * r + 1, 2 * c + 1);
            out.push(s / 4.0);
        }
    }
    (out, nw, nh)
}

/// MS-SSIM weights of the five scales (Wang, Simoncelli & Bovik 2003).
const MS_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/// MS-SSIM of two RGB images as piq's `multi_scale_ssim` on their luma (data range 255):
/// the mean cs of scales 1-4 and the mean SSIM of scale 5, each clamped at 0 and raised to its
/// weight, multiplied. NaN below 161 pixels on a side.
pub fn ms_ssim_ref(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    if w < 161 || h < 161 {
        return f64::NAN;
    }
    let (mut x, mut y, mut w, mut h) = (luma_ref(a), luma_ref(b), w, h);
    let mut product = 1.0;
    for (scale, weight) in MS_WEIGHTS.iter().enumerate() {
        if scale > 0 {
            (x, _, _) = halve_ref(&x, w, h, true);
            (y, w, h) = halve_ref(&y, w, h, true);
        }
        let (ssim, cs) = ssim_cs_ref(&x, &y, w, h);
        let term = if scale == 4 { ssim } else { cs };
        product *= term.max(0.0).powf(*weight);
    }
    product
}

/// GMSD of two RGB images as piq's `gmsd` (data range 255, T = 170 on that scale): luma, 2x2
/// means after zero padding of an odd side, Prewitt gradient magnitudes with zeros outside,
/// the similarity map and its population standard deviation.
pub fn gmsd_ref(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    let (x, w2, h2) = halve_ref(&luma_ref(a), w, h, false);
    let (y, _, _) = halve_ref(&luma_ref(b), w, h, false);
    let magnitude = |p: &[f64], r: usize, c: usize| -> f64 {
        let at = |dr: i64, dc: i64| -> f64 {
            let (rr, cc) = (r as i64 + dr, c as i64 + dc);
            if rr < 0 || cc < 0 || rr >= h2 as i64 || cc >= w2 as i64 {
                0.0
            } else {
                p[rr as usize * w2 + cc as usize]
            }
        };
        let gx: f64 = (-1..=1).map(|d| at(d, 1) - at(d, -1)).sum::<f64>() / 3.0;
        let gy: f64 = (-1..=1).map(|d| at(1, d) - at(-1, d)).sum::<f64>() / 3.0;
        (gx * gx + gy * gy).sqrt()
    };
    let mut gms = Vec::with_capacity(w2 * h2);
    for r in 0..h2 {
        for c in 0..w2 {
            let (mx, my) = (magnitude(&x, r, c), magnitude(&y, r, c));
            gms.push((2.0 * mx * my + 170.0) / (mx * mx + my * my + 170.0));
        }
    }
    let mean = gms.iter().sum::<f64>() / gms.len() as f64;
    (gms.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gms.len() as f64).sqrt()
}

// The references against outside oracles: constants produced by python3 3.11 with numpy
// 2.4.6 and scikit-image 0.26.0 (`skimage.metrics.structural_similarity`) from the same inputs.

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// The synthetic pair used for the SSIM/PSNR oracles (24x20 RGB).
fn oracle_pair() -> (Vec<u8>, Vec<u8>, usize, usize) {
    let (w, h) = (24usize, 20usize);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v = ((x * x * 3 + y * 7 + c * 50 + x * y) % 200 + 20) as i64;
                a.push(v as u8);
                b.push((v + ((x * 7 + y * 13 + c * 5) % 81) as i64 - 40).clamp(0, 255) as u8);
            }
        }
    }
    (a, b, w, h)
}

#[test]
fn ssim_reference_matches_skimage() {
    let (a, b, w, h) = oracle_pair();
    // skimage structural_similarity(luma_a, luma_b, gaussian_weights=True, sigma=1.5,
    // use_sample_covariance=False, data_range=255) = 0.8526706727167548; a brute-force
    // numpy 2-D valid-window implementation gives 0.8526706727167549.
    assert!(close(ssim_ref(&a, &b, w, h), 0.8526706727167548, 1e-12));
    assert!(close(ssim_ref(&b, &a, w, h), 0.8526706727167548, 1e-12));
    assert_eq!(ssim_ref(&a, &a, w, h), 1.0);
    assert!(ssim_ref(&a[..3 * 10 * 10], &a[..3 * 10 * 10], 10, 10).is_nan());
    // The kernels' window is this one.
    let g = quality::ssim_gaussian_1d();
    assert_eq!(g.len(), WINDOW);
    assert!(close(g.iter().sum::<f64>(), 1.0, 1e-15));
    for (k, r) in g.iter().zip(gaussian_ref()) {
        assert!(close(*k, r, 1e-15));
    }
}

#[test]
fn psnr_reference_known_cases() {
    let (a, b, _, _) = oracle_pair();
    assert!(close(psnr_ref(&a, &b), 20.786467077877717, 1e-12));
    // Every byte off by 10: MSE 100, 10 log10(65025/100).
    assert!(close(
        psnr_ref(&[0; 12], &[10; 12]),
        28.130803608679106,
        1e-12
    ));
    assert_eq!(psnr_ref(&a, &a), f64::INFINITY);
    assert!(psnr_ref(&[], &[]).is_nan());
}

// ------------------------------------------------------------------ the GPU kernels

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
        let (want_p, want_s) = (psnr_ref(pa, pb), ssim_ref(pa, pb, w, h));
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

// ------------------------------------------------------------------ MS-SSIM and GMSD

/// MS-SSIM and GMSD against their CPU references: |error| bounds for f32 on the GPU (about
/// 3e-8 is measured on lavapipe).
const MS_SSIM_TOL: f64 = 1e-6;
const GMSD_TOL: f64 = 1e-6;

/// Hashed noise in -16..=15, the same formula as tools/quality_reference.py.
fn hashed_noise(img: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = img.to_vec();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let hash = ((x * 7919 + y * 104729 + c * 31337) as u32).wrapping_mul(2654435761);
                let i = (y * w + x) * 3 + c;
                out[i] = (img[i] as i32 + (hash >> 27) as i32 - 16).clamp(0, 255) as u8;
            }
        }
    }
    out
}

fn posterise(img: &[u8]) -> Vec<u8> {
    img.iter().map(|v| (v & 0xf0) | 0x08).collect()
}

fn demo(name: &str) -> ::image::RgbImage {
    ::image::open(format!("{}/data/demo/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("the demo pair")
        .to_rgb8()
}

fn crop(img: &::image::RgbImage, y: u32, x: u32, h: u32, w: u32) -> Vec<u8> {
    ::image::imageops::crop_imm(img, x, y, w, h)
        .to_image()
        .into_raw()
}

/// The fixture pairs of tools/quality_reference.py: (name, h, w, reference, distorted).
fn fixture_pairs() -> Vec<(&'static str, usize, usize, Vec<u8>, Vec<u8>)> {
    let (r, d) = (demo("ref.png"), demo("dist.png"));
    assert_eq!(r.dimensions(), (768, 512), "the demo pair's size");
    let c = |y, x, h, w| crop(&r, y, x, h, w);
    vec![
        (
            "demo 512x768",
            512,
            768,
            r.as_raw().clone(),
            d.as_raw().clone(),
        ),
        (
            "noise 161x161",
            161,
            161,
            c(0, 0, 161, 161),
            hashed_noise(&c(0, 0, 161, 161), 161, 161),
        ),
        (
            "blur 175x203",
            175,
            203,
            c(40, 30, 175, 203),
            blur(&c(40, 30, 175, 203), 175, 203),
        ),
        (
            "posterised 170x161",
            170,
            161,
            c(7, 100, 170, 161),
            posterise(&c(7, 100, 170, 161)),
        ),
        (
            "demo crop 199x168",
            199,
            168,
            c(1, 3, 199, 168),
            crop(&d, 1, 3, 199, 168),
        ),
        (
            "noise 13x9",
            13,
            9,
            c(100, 100, 13, 9),
            hashed_noise(&c(100, 100, 13, 9), 13, 9),
        ),
    ]
}

/// piq 0.8.0 (torch 2.15.0, float64) on the fixture pairs, printed by
/// tools/quality_reference.py: (name, MS-SSIM on the luma, GMSD on RGB).
const PIQ: [(&str, f64, f64); 6] = [
    ("demo 512x768", 0.946025686494, 0.0762541518536),
    ("noise 161x161", 0.992620420475, 0.00657922350383),
    ("blur 175x203", 0.970023401056, 0.0489612042216),
    ("posterised 170x161", 0.992648005894, 0.014182851478),
    ("demo crop 199x168", 0.963329297395, 0.0710376938291),
    ("noise 13x9", f64::NAN, 0.000611441525441),
];

/// Both metrics of a batch on the GPU against the CPU references, pair by pair.
fn check_ms_ssim_gmsd(gpu: &Gpu, name: &str, pairs: &[(Vec<u8>, Vec<u8>)], h: usize, w: usize) {
    let n = pairs.len();
    let a: Vec<u8> = pairs.iter().flat_map(|p| p.0.iter().copied()).collect();
    let b: Vec<u8> = pairs.iter().flat_map(|p| p.1.iter().copied()).collect();
    let ms = quality::ms_ssim(gpu, &a, &b, n, h, w).expect("gpu ms-ssim");
    let gm = quality::gmsd(gpu, &a, &b, n, h, w).expect("gpu gmsd");
    assert_eq!((ms.len(), gm.len()), (n, n), "{name}: one value per pair");
    let (mut worst_m, mut worst_g) = (0.0f64, 0.0f64);
    for (i, (pa, pb)) in pairs.iter().enumerate() {
        let (want_m, want_g) = (ms_ssim_ref(pa, pb, w, h), gmsd_ref(pa, pb, w, h));
        if want_m.is_nan() {
            assert!(
                ms[i].is_nan(),
                "{name} pair {i}: MS-SSIM {} where the CPU gives NaN",
                ms[i]
            );
        } else {
            let e = (ms[i] - want_m).abs();
            assert!(
                e <= MS_SSIM_TOL,
                "{name} pair {i}: MS-SSIM {} vs CPU {want_m}",
                ms[i]
            );
            worst_m = worst_m.max(e);
        }
        let e = (gm[i] - want_g).abs();
        assert!(
            e <= GMSD_TOL,
            "{name} pair {i}: GMSD {} vs CPU {want_g}",
            gm[i]
        );
        worst_g = worst_g.max(e);
    }
    eprintln!(
        "{name} ({n} x {h}x{w}): max |MS-SSIM err| {worst_m:.2e}, max |GMSD err| {worst_g:.2e}"
    );
}

#[test]
fn ms_ssim_and_gmsd_match_piq() {
    let gpu = gpu();
    let fixtures = fixture_pairs();
    assert_eq!(fixtures.len(), PIQ.len());
    for ((name, h, w, r, d), (piq_name, piq_ms, piq_gmsd)) in fixtures.iter().zip(PIQ) {
        assert_eq!(*name, piq_name);
        // The float64 references are piq's computation.
        let (cpu_ms, cpu_gmsd) = (ms_ssim_ref(r, d, *w, *h), gmsd_ref(r, d, *w, *h));
        assert!(
            (piq_ms.is_nan() && cpu_ms.is_nan()) || close(cpu_ms, piq_ms, 1e-9),
            "{name}: CPU MS-SSIM {cpu_ms} vs piq {piq_ms}"
        );
        assert!(
            close(cpu_gmsd, piq_gmsd, 1e-9),
            "{name}: CPU GMSD {cpu_gmsd} vs piq {piq_gmsd}"
        );
        // The GPU within 1e-3 of piq (1e-5 asserted), through the batched functions and the
        // one-pair baselines.
        let ms = quality::ms_ssim(&gpu, r, d, 1, *h, *w).unwrap()[0];
        let gm = quality::gmsd(&gpu, r, d, 1, *h, *w).unwrap()[0];
        let img =
            |v: &Vec<u8>| ::image::RgbImage::from_raw(*w as u32, *h as u32, v.clone()).unwrap();
        let all = quality::baselines(&gpu, &img(r), &img(d)).unwrap();
        eprintln!(
            "{name}: GPU MS-SSIM {ms:.6} (piq {piq_ms:.6}), GMSD {gm:.6} (piq {piq_gmsd:.6})"
        );
        if piq_ms.is_nan() {
            assert!(
                ms.is_nan() && all.ms_ssim.is_nan(),
                "{name}: MS-SSIM {ms} below 161 px"
            );
        } else {
            assert!(
                close(ms, piq_ms, 1e-5),
                "{name}: GPU MS-SSIM {ms} vs piq {piq_ms}"
            );
            assert_eq!(all.ms_ssim, ms, "{name}: baselines' MS-SSIM");
        }
        assert!(
            close(gm, piq_gmsd, 1e-5),
            "{name}: GPU GMSD {gm} vs piq {piq_gmsd}"
        );
        assert_eq!(all.gmsd, gm, "{name}: baselines' GMSD");
        let ssim = quality::ssim(&gpu, r, d, 1, *h, *w).unwrap()[0];
        let psnr = quality::psnr(&gpu, r, d, 1, *h, *w).unwrap()[0];
        assert_eq!(
            (all.psnr, all.ssim.to_bits()),
            (psnr.min(100.0), ssim.to_bits()),
            "{name}"
        );
    }
}

#[test]
fn ms_ssim_and_gmsd_on_awkward_sizes() {
    let gpu = gpu();
    let mut r = Rng::new(19);
    // Both sides odd, one odd (piq pads both), the smallest MS-SSIM accepts, one wide.
    for (h, w) in [(161, 161), (170, 161), (161, 176), (163, 200)] {
        let img = smooth_image(&mut r, h, w);
        let pairs = vec![
            (img.clone(), add_noise(&mut r, &img, 6.0)),
            (img.clone(), blur(&img, h, w)),
            (img.clone(), shift(&img, 25)),
            (img.clone(), random_image(&mut r, h, w)),
        ];
        check_ms_ssim_gmsd(&gpu, &format!("{h}x{w}"), &pairs, h, w);
    }
    // GMSD alone below 161 (MS-SSIM NaN), down to one pixel and one row.
    for (h, w) in [(1, 1), (1, 7), (2, 3), (13, 9), (40, 29), (33, 17)] {
        let img = random_image(&mut r, h, w);
        let pairs = vec![
            (img.clone(), add_noise(&mut r, &img, 20.0)),
            (img.clone(), smooth_image(&mut r, h, w)),
        ];
        check_ms_ssim_gmsd(&gpu, &format!("small {h}x{w}"), &pairs, h, w);
    }
    // Identical images: MS-SSIM 1, GMSD 0.
    let (h, w) = (165, 171);
    let a = [smooth_image(&mut r, h, w), vec![255; h * w * 3]].concat();
    let ms = quality::ms_ssim(&gpu, &a, &a, 2, h, w).unwrap();
    let gm = quality::gmsd(&gpu, &a, &a, 2, h, w).unwrap();
    for i in 0..2 {
        assert!(
            (ms[i] - 1.0).abs() <= 1e-6,
            "MS-SSIM of identical pair {i}: {}",
            ms[i]
        );
        assert!(gm[i].abs() <= 1e-6, "GMSD of identical pair {i}: {}", gm[i]);
    }
    assert!(quality::ms_ssim(&gpu, &[], &[], 0, 200, 200)
        .unwrap()
        .is_empty());
    assert!(quality::gmsd(&gpu, &[], &[], 0, 20, 20).unwrap().is_empty());
}
