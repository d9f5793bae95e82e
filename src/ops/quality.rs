//! Full-reference quality baselines on the GPU: batched PSNR, SSIM, MS-SSIM and GMSD of N
//! pairs of packed u8 RGB images (see shaders/quality.wgsl for the kernel design), and all four
//! of one pair of images.
//!
//! Shader: shaders/quality.wgsl · Reference and tests: tests/ops/quality.rs

use super::{kernel, R, RW};
use crate::gpu::{f, grid_1d, Gpu, Kernel, Tensor};

const PSNR_PARTIALS: Kernel = kernel("quality.wgsl", "psnr_partials", &[RW, R, R]);
const PSNR_SUM: Kernel = kernel("quality.wgsl", "psnr_sum", &[RW, R]);
const LUMA_PLANES: Kernel = kernel("quality.wgsl", "luma_planes", &[RW, R, R]);
const HALVE: Kernel = kernel("quality.wgsl", "halve", &[RW, R]);
const SSIM_TILES: Kernel = kernel("quality.wgsl", "ssim_tiles", &[RW, R]);
const GMS_TILES: Kernel = kernel("quality.wgsl", "gms_tiles", &[RW, R]);

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

/// MS-SSIM's weights of its five scales, finest first (Wang, Simoncelli & Bovik 2003): the
/// contrast-structure terms of scales 1-4 and the whole SSIM of scale 5 are raised to them.
pub const MS_SSIM_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
/// The smallest side MS-SSIM accepts: the coarsest of its five scales must still hold one
/// 11x11 window, `(11 - 1) * 2^4 + 1`.
pub const MS_SSIM_MIN_SIDE: usize = (SSIM_WINDOW - 1) * (1 << (MS_SSIM_WEIGHTS.len() - 1)) + 1;

/// Bytes of one pair summed by one workgroup: 65536 * 255^2 still fits a u32.
const PSNR_CHUNK: usize = 65536;
/// Side of the SSIM and GMS map tile handled by one workgroup.
const TILE: usize = 16;

/// The uniform block: 12 words, then the 1-D Gaussian as 3 vec4 (the last weight unused).
#[derive(Default, Clone, Copy)]
struct Params {
    n: usize,
    h: usize,
    w: usize,
    chunk: usize,
    chunks: usize,
    oh: usize,
    ow: usize,
    in_h: usize,
    in_w: usize,
    pad_lead: usize,
    planes: usize,
}

impl Params {
    fn words(&self) -> [u32; 24] {
        let mut p = [0u32; 24];
        p[..12].copy_from_slice(&[
            self.n as u32,
            self.h as u32,
            self.w as u32,
            (self.h * self.w * 3) as u32,
            self.chunk as u32,
            self.chunks as u32,
            self.oh as u32,
            self.ow as u32,
            self.in_h as u32,
            self.in_w as u32,
            self.pad_lead as u32,
            self.planes as u32,
        ]);
        for (i, g) in ssim_gaussian_1d().iter().enumerate() {
            p[12 + i] = f(*g as f32);
        }
        p
    }
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

/// PSNR in dB of each of the `n` pairs `(a[i], b[i])` of `h` x `w` RGB images, packed
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
    let p = Params {
        n,
        h,
        w,
        chunk: PSNR_CHUNK,
        chunks,
        ..Default::default()
    }
    .words();
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

/// The 2n luma planes of a batch (x planes first, then y), `h` x `w` each, on the GPU.
struct Planes {
    t: Tensor,
    n: usize,
    h: usize,
    w: usize,
}

fn luma_planes(gpu: &Gpu, a: &[u8], b: &[u8], n: usize, h: usize, w: usize) -> Planes {
    let (ab, bb) = (gpu.upload_bytes(a), gpu.upload_bytes(b));
    let t = gpu.empty(&[2 * n, h, w]);
    let p = Params {
        n,
        h,
        w,
        ..Default::default()
    }
    .words();
    gpu.dispatch(
        &LUMA_PLANES,
        &[],
        &p,
        &[t.raw(), ab.raw(), bb.raw()],
        grid_1d(2 * n * h * w),
        (5.0 * (2 * n * h * w) as f64, (2 * n * h * w * 7) as f64),
    );
    Planes { t, n, h, w }
}

/// How `halve` treats an odd side.
#[derive(Clone, Copy)]
enum OddSide {
    /// MS-SSIM (piq): when either side is odd, one replicated row and column before the plane.
    ReplicateBefore,
    /// GMSD (piq): when either side is odd, one zero row and column after it.
    ZeroAfter,
}

/// The next scale: 2x2 means, with piq's padding of odd sizes (`max(h % 2, w % 2)` rows and
/// columns, on both sides at once).
fn halve(gpu: &Gpu, x: &Planes, odd: OddSide) -> Planes {
    let pad = (x.h % 2).max(x.w % 2);
    let (h, w) = ((x.h + pad) / 2, (x.w + pad) / 2);
    let planes = 2 * x.n;
    let t = gpu.empty(&[planes, h, w]);
    let p = Params {
        n: x.n,
        h,
        w,
        in_h: x.h,
        in_w: x.w,
        pad_lead: match odd {
            OddSide::ReplicateBefore => pad,
            OddSide::ZeroAfter => 0,
        },
        planes,
        ..Default::default()
    }
    .words();
    gpu.dispatch(
        &HALVE,
        &[],
        &p,
        &[t.raw(), x.t.raw()],
        grid_1d(planes * h * w),
        (
            4.0 * (planes * h * w) as f64,
            20.0 * (planes * h * w) as f64,
        ),
    );
    Planes { t, n: x.n, h, w }
}

/// Per pair, the means of the SSIM map and of its contrast-structure map over the valid
/// 11x11 windows of the planes (the planes hold at least one window).
fn ssim_cs(gpu: &Gpu, x: &Planes) -> anyhow::Result<Vec<(f64, f64)>> {
    let (n, h, w) = (x.n, x.h, x.w);
    let (oh, ow) = (h - SSIM_WINDOW + 1, w - SSIM_WINDOW + 1);
    let (tx, ty) = (ow.div_ceil(TILE), oh.div_ceil(TILE));
    assert!(tx <= 65535 && ty <= 65535, "ssim: image too large");
    let p = Params {
        n,
        h,
        w,
        oh,
        ow,
        ..Default::default()
    }
    .words();
    let parts = gpu.empty(&[n, tx * ty, 2]);
    let work = (
        (n * oh * ow) as f64 * 121.0 * 10.0,
        (2 * n * h * w * 4) as f64,
    );
    gpu.dispatch(
        &SSIM_TILES,
        &[],
        &p,
        &[parts.raw(), x.t.raw()],
        [tx as u32, ty as u32, n as u32],
        work,
    );
    let count = (oh * ow) as f64;
    Ok(gpu
        .download(&parts)?
        .chunks_exact(2 * tx * ty)
        .map(|tiles| {
            let (s, c) = tiles
                .chunks_exact(2)
                .fold((0.0, 0.0), |(s, c), t| (s + t[0] as f64, c + t[1] as f64));
            (s / count, c / count)
        })
        .collect())
}

/// Per pair, the standard deviation of the gradient magnitude similarity map of the planes.
fn gms_deviation(gpu: &Gpu, x: &Planes) -> anyhow::Result<Vec<f64>> {
    let (n, h, w) = (x.n, x.h, x.w);
    let (tx, ty) = (w.div_ceil(TILE), h.div_ceil(TILE));
    assert!(tx <= 65535 && ty <= 65535, "gmsd: image too large");
    let p = Params {
        n,
        h,
        w,
        ..Default::default()
    }
    .words();
    let parts = gpu.empty(&[n, tx * ty, 3]);
    gpu.dispatch(
        &GMS_TILES,
        &[],
        &p,
        &[parts.raw(), x.t.raw()],
        [tx as u32, ty as u32, n as u32],
        ((n * h * w) as f64 * 40.0, (2 * n * h * w * 4) as f64),
    );
    Ok(gpu
        .download(&parts)?
        .chunks_exact(3 * tx * ty)
        .map(|tiles| {
            // Chan et al.'s merge of (count, mean, centred sum of squares), tile by tile.
            let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for t in tiles.chunks_exact(3) {
                let (nb, mb, m2b) = (t[0] as f64, t[1] as f64 / t[0] as f64, t[2] as f64);
                let total = count + nb;
                let delta = mb - mean;
                mean += delta * nb / total;
                m2 += m2b + delta * delta * count * nb / total;
                count = total;
            }
            (m2 / count).sqrt()
        })
        .collect())
}

/// The batched structural metrics' shared start: the buffers checked, NaN for every pair when
/// a side is below `min_side`, nothing for no pairs, else `metric` of the batch's luma planes.
fn on_luma_planes(
    gpu: &Gpu,
    (a, b): (&[u8], &[u8]),
    (n, h, w): (usize, usize, usize),
    what: &str,
    min_side: usize,
    metric: impl FnOnce(Planes) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<Vec<f64>> {
    check(a, b, n, h, w, what);
    if h < min_side || w < min_side {
        return Ok(vec![f64::NAN; n]);
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    metric(luma_planes(gpu, a, b, n, h, w))
}

/// Mean SSIM of each of the `n` pairs, as Wang et al. (2004) and scikit-image's
/// `structural_similarity` with Gaussian weights: luma 0.299 R + 0.587 G + 0.114 B (not
/// rounded), 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, L 255, biased local
/// statistics, the mean over valid windows only; NaN when `h` or `w` is below 11. Computed in
/// f32, the tiles added in f64.
pub fn ssim(
    gpu: &Gpu,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> anyhow::Result<Vec<f64>> {
    on_luma_planes(gpu, (a, b), (n, h, w), "ssim", SSIM_WINDOW, |planes| {
        Ok(ssim_cs(gpu, &planes)?.into_iter().map(|(s, _)| s).collect())
    })
}

/// MS-SSIM of each of the `n` pairs (Wang, Simoncelli & Bovik 2003), as piq's
/// `multi_scale_ssim` computes it on the luma of `ssim` (0..255, data range 255): five scales,
/// each made from the last by 2x2 means after one replicated row and column before an odd
/// side; the SSIM constants and window of `ssim` at every scale; the product of the mean
/// contrast-structure terms of scales 1-4 and the mean SSIM of scale 5, each clamped at 0 and
/// raised to `MS_SSIM_WEIGHTS`. NaN when a side is below `MS_SSIM_MIN_SIDE` (161).
pub fn ms_ssim(
    gpu: &Gpu,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> anyhow::Result<Vec<f64>> {
    on_luma_planes(
        gpu,
        (a, b),
        (n, h, w),
        "ms_ssim",
        MS_SSIM_MIN_SIDE,
        |planes| {
            Ok(ms_ssim_of(gpu, planes)?
                .into_iter()
                .map(|(m, _)| m)
                .collect())
        },
    )
}

/// MS-SSIM and (from its finest scale) SSIM of each pair of the planes.
fn ms_ssim_of(gpu: &Gpu, mut planes: Planes) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut product = vec![1.0f64; planes.n];
    let mut finest_ssim = Vec::new();
    for (scale, weight) in MS_SSIM_WEIGHTS.iter().enumerate() {
        if scale > 0 {
            planes = halve(gpu, &planes, OddSide::ReplicateBefore);
        }
        let terms = ssim_cs(gpu, &planes)?;
        if scale == 0 {
            finest_ssim = terms.iter().map(|t| t.0).collect();
        }
        let last = scale + 1 == MS_SSIM_WEIGHTS.len();
        for (p, (s, cs)) in product.iter_mut().zip(terms) {
            let term = if last { s } else { cs };
            *p *= term.max(0.0).powf(*weight);
        }
    }
    Ok(product.into_iter().zip(finest_ssim).collect())
}

/// GMSD of each of the `n` pairs (Xue, Zhang, Mou & Bovik 2014), as piq's `gmsd` computes it:
/// luma (the Y of YIQ, the weights of `ssim`) on 0..255, 2x2 means (one zero row and column
/// after an odd side), Prewitt gradient magnitudes (3x3, / 3, zero outside the image), the
/// similarity map `(2 m_x m_y + 170) / (m_x^2 + m_y^2 + 170)` and its standard deviation over
/// every pixel. Lower is better: 0 for identical images.
pub fn gmsd(
    gpu: &Gpu,
    a: &[u8],
    b: &[u8],
    n: usize,
    h: usize,
    w: usize,
) -> anyhow::Result<Vec<f64>> {
    on_luma_planes(gpu, (a, b), (n, h, w), "gmsd", 1, |planes| {
        gms_deviation(gpu, &halve(gpu, &planes, OddSide::ZeroAfter))
    })
}

/// The four baselines of one pair of images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baselines {
    /// dB, capped at 100 for identical images so that statistics stay finite.
    pub psnr: f64,
    pub ssim: f64,
    /// NaN for images under 161 pixels on a side.
    pub ms_ssim: f64,
    /// Lower is better.
    pub gmsd: f64,
}

/// PSNR, SSIM, MS-SSIM and GMSD of one pair of whole images, from one set of luma planes: the
/// baselines of `asna eval` and of training runs.
pub fn baselines(gpu: &Gpu, r: &image::RgbImage, d: &image::RgbImage) -> anyhow::Result<Baselines> {
    let (w, h) = (r.width() as usize, r.height() as usize);
    let (a, b) = (r.as_raw().as_slice(), d.as_raw().as_slice());
    check(a, b, 1, h, w, "baselines");
    let psnr = psnr(gpu, a, b, 1, h, w)?[0].min(100.0);
    if h < SSIM_WINDOW || w < SSIM_WINDOW {
        let gmsd = gmsd(gpu, a, b, 1, h, w)?[0];
        let nan = f64::NAN;
        return Ok(Baselines {
            psnr,
            ssim: nan,
            ms_ssim: nan,
            gmsd,
        });
    }
    let planes = luma_planes(gpu, a, b, 1, h, w);
    let gmsd = gms_deviation(gpu, &halve(gpu, &planes, OddSide::ZeroAfter))?[0];
    let (ms_ssim, ssim) = if h < MS_SSIM_MIN_SIDE || w < MS_SSIM_MIN_SIDE {
        (f64::NAN, ssim_cs(gpu, &planes)?[0].0)
    } else {
        ms_ssim_of(gpu, planes)?[0]
    };
    Ok(Baselines {
        psnr,
        ssim,
        ms_ssim,
        gmsd,
    })
}
