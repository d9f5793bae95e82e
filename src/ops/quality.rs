//! Full-reference quality baselines on the GPU: batched PSNR and SSIM of N pairs of packed u8
//! RGB images (see shaders/quality.wgsl for the kernel design), and both of one pair of images.
//!
//! Shader: shaders/quality.wgsl · Reference and tests: tests/ops/quality.rs

use super::{kernel, reduce, R, RW};
use crate::gpu::{f, grid_1d, Gpu, Kernel, Tensor};

const PSNR_PARTIALS: Kernel = kernel("quality.wgsl", "psnr_partials", &[RW, R, R]);
const PSNR_SUM: Kernel = kernel("quality.wgsl", "psnr_sum", &[RW, R]);
const SSIM_TILES: Kernel = kernel("quality.wgsl", "ssim_tiles", &[RW, R, R]);

/// Side of the SSIM Gaussian window.
pub const SSIM_WINDOW: usize = 11;
/// Standard deviation of the SSIM Gaussian window.
pub const SSIM_SIGMA: f64 = 1.5;

/// The normalised 1-D Gaussian of the SSIM window:
/// `g[i] = exp(-(i - 5)^2 / (2 * 1.5^2)) / sum`, i = 0..11. The 2-D window is the outer
/// product `g[i] g[j]` (which sums to 1), as MATLAB's `fspecial('gaussian', 11, 1.5)`.
pub fn ssim_gaussian_1d() -> [f64; SSIM_WINDOW] {
    let mut g = [0.0; SSIM_WINDOW];
    let c = (SSIM_WINDOW / 2) as f64;
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - c;
        *v = (-d * d / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    g.iter_mut().for_each(|v| *v /= s);
    g
}

/// Bytes of one pair summed by one workgroup: 65536 * 255^2 still fits a u32.
const PSNR_CHUNK: usize = 65536;
/// Side of the SSIM map tile handled by one workgroup.
const SSIM_TILE: usize = 16;

/// The uniform block: 8 words, then the 1-D Gaussian as 3 vec4 (the last weight unused).
fn params(
    n: usize,
    h: usize,
    w: usize,
    chunk: usize,
    chunks: usize,
    oh: usize,
    ow: usize,
) -> [u32; 20] {
    let mut p = [0u32; 20];
    let bytes = h * w * 3;
    p[..8].copy_from_slice(&[
        n as u32,
        h as u32,
        w as u32,
        bytes as u32,
        chunk as u32,
        chunks as u32,
        oh as u32,
        ow as u32,
    ]);
    for (i, g) in ssim_gaussian_1d().iter().enumerate() {
        p[8 + i] = f(*g as f32);
    }
    p
}

fn check(a: &[u8], b: &[u8], n: usize, h: usize, w: usize, what: &str) {
    let total = n * h * w * 3;
    assert_eq!(
        a.len(),
        total,
        "{what}: a has {} bytes, expected {n} x {h} x {w} x 3",
        a.len()
    );
    assert_eq!(
        b.len(),
        total,
        "{what}: b has {} bytes, expected {n} x {h} x {w} x 3",
        b.len()
    );
    assert!(n <= 65535, "{what}: at most 65535 pairs per call");
    assert!(
        total < u32::MAX as usize,
        "{what}: batch too large for 32-bit indexing"
    );
}

/// PSNR in dB of each of the `n` pairs (a[i], b[i]) of `h` x `w` RGB images, packed
/// [n, h, w, 3]: `10 log10(255^2 / MSE)` over all bytes of the pair (the three channels pooled);
/// +inf for identical images, NaN for empty ones. The squared error is summed exactly.
pub fn psnr(
    gpu: &Gpu,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> anyhow::Result<Vec<f64>> {
    check(a, b, n, h, w, "psnr");
    let bytes = h * w * 3;
    if n == 0 || bytes == 0 {
        return Ok(vec![f64::NAN; n]);
    }
    let chunks = bytes.div_ceil(PSNR_CHUNK);
    let p = params(n, h, w, PSNR_CHUNK, chunks, 0, 0);
    let (ab, bb) = (gpu.upload_bytes(a), gpu.upload_bytes(b));
    // u32 words in f32-typed tensors: downloaded and reinterpreted bit for bit.
    let parts = gpu.empty(&[n, chunks]);
    let work = (3.0 * (n * bytes) as f64, 2.0 * (n * bytes) as f64);
    gpu.dispatch(
        &PSNR_PARTIALS,
        &[],
        &p,
        &[parts.raw(), ab.raw(), bb.raw()],
        [chunks as u32, n as u32, 1],
        work,
    );
    let sums = gpu.empty(&[n, 2]);
    gpu.dispatch(
        &PSNR_SUM,
        &[],
        &p,
        &[sums.raw(), parts.raw()],
        grid_1d(n),
        ((n * chunks) as f64, parts.bytes() as f64),
    );
    let words = gpu.download(&sums)?;
    Ok(words
        .chunks_exact(2)
        .map(|lh| {
            let sse = lh[0].to_bits() as u64 | (lh[1].to_bits() as u64) << 32;
            if sse == 0 {
                f64::INFINITY
            } else {
                10.0 * (255.0f64 * 255.0 / (sse as f64 / bytes as f64)).log10()
            }
        })
        .collect())
}

/// Mean SSIM of each of the `n` pairs, as Wang et al. (2004) and scikit-image's
/// `structural_similarity` with Gaussian weights: luma 0.299 R + 0.587 G + 0.114 B (not
/// rounded), 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, L 255, biased local
/// statistics, the mean over valid windows only; NaN when `h` or `w` is below 11. Computed in
/// f32.
pub fn ssim(
    gpu: &Gpu,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> anyhow::Result<Vec<f64>> {
    check(a, b, n, h, w, "ssim");
    if h < SSIM_WINDOW || w < SSIM_WINDOW {
        return Ok(vec![f64::NAN; n]);
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let (oh, ow) = (h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1);
    let (tx, ty) = (ow.div_ceil(SSIM_TILE), oh.div_ceil(SSIM_TILE));
    assert!(tx <= 65535 && ty <= 65535, "ssim: image too large");
    let p = params(n, h, w, 0, 0, oh, ow);
    let (ab, bb) = (gpu.upload_bytes(a), gpu.upload_bytes(b));
    let parts = gpu.empty(&[n, tx * ty, 1]);
    let pixels = (n * oh * ow) as f64;
    let work = (pixels * 121.0 * 10.0, 2.0 * (n * h * w * 3) as f64);
    gpu.dispatch(
        &SSIM_TILES,
        &[],
        &p,
        &[parts.raw(), ab.raw(), bb.raw()],
        [tx as u32, ty as u32, n as u32],
        work,
    );
    let sums: Tensor = reduce::columns(gpu, &parts, reduce::Summand::Value, None, None, 1.0);
    let count = (oh * ow) as f64;
    Ok(gpu
        .download(&sums)?
        .into_iter()
        .map(|s| s as f64 / count)
        .collect())
}

/// PSNR (dB, capped at 100 for identical images, so that statistics stay finite) and SSIM of
/// one pair of whole images: the baselines of `asna eval` and of training runs.
pub fn psnr_ssim(
    gpu: &Gpu,
    r: &image::RgbImage,
    d: &image::RgbImage,
) -> anyhow::Result<(f64, f64)> {
    let (w, h) = (r.width() as usize, r.height() as usize);
    let psnr = psnr(gpu, r.as_raw(), d.as_raw(), 1, h, w)?[0];
    let ssim = ssim(gpu, r.as_raw(), d.as_raw(), 1, h, w)?[0];
    Ok((psnr.min(100.0), ssim))
}
