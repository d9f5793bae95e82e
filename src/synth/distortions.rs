//! The distortion bank: one function per TID2013 distortion type.
//!
//! Every function has the signature `fn(&RgbImage, strength: f64, &mut Rng) -> RgbImage`
//! (see [`DistortFn`]): it takes the reference crop and returns the distorted image, drawing
//! all randomness from the given `Rng`. Called twice with clones of the same `Rng` it returns
//! the same noise realisation scaled by `strength`, which is what makes PSNR calibration by
//! search well behaved (PSNR then falls smoothly as `strength` grows). What `strength` means
//! is given per function. See the module doc of `synth` for the list of types and the
//! modelling choices.

// Pixel and DCT loops index several buffers with the same counters.
#![allow(clippy::needless_range_loop)]

use image::{ImageBuffer, Rgb, RgbImage};

use super::calibrate::Levels;
use crate::rng::Rng;

/// The common signature of a distortion.
pub type DistortFn = fn(&RgbImage, f64, &mut Rng) -> RgbImage;

/// One entry of the bank.
#[derive(Clone, Copy)]
pub struct Distortion {
    /// TID2013's type number (1..=24).
    pub tid_type: u32,
    /// Short machine name; `dis_type` in labels.csv is `t{type:02}_{slug}`.
    pub slug: &'static str,
    pub apply: DistortFn,
    /// How the five levels are set (PSNR search or fixed ladder).
    pub levels: Levels,
}

impl Distortion {
    /// `t01_additive_gaussian_noise` etc.
    pub fn dis_type(&self) -> String {
        format!("t{:02}_{}", self.tid_type, self.slug)
    }
}

/// Mean shift ladder, levels 1..5 (added to every channel, 8-bit units). TID2013 shifts the
/// intensity both ways; we alternate darker / brighter / darker / brighter / darker with a
/// growing magnitude. The magnitudes 255*10^(-P/20) for P = 33, 30, 27, 24, 21 dB are the
/// shifts that would give TID2013's PSNR ladder before clipping, so the ordering of
/// annoyance follows TID2013's monotonically falling MOS for this type (6.08 .. 4.66); the
/// larger brightening at level 2 scoring like the smaller darkening at level 1 is consistent
/// with brightening being the less annoying direction.
pub const MEAN_SHIFT_LADDER: [f64; 5] = [-5.70, 8.05, -11.37, 16.06, -22.69];

/// Contrast ladder, levels 1..5 (factor applied about the image mean). TID2013's MOS for
/// this type alternates (5.63, 6.48, 4.48, 6.29, 3.45): the odd levels decrease contrast
/// (increasingly) and are disliked, the even levels increase it and score even above the
/// mild noise levels. So: decrease, increase, stronger decrease, stronger increase,
/// strongest decrease.
pub const CONTRAST_LADDER: [f64; 5] = [0.80, 1.20, 0.60, 1.40, 0.40];

/// Saturation ladder, levels 1..5 (factor on the chroma, luma kept). TID2013 changes the
/// saturation both ways as well; its MOS falls monotonically with the level (5.06 .. 3.69), so
/// the ladder alternates desaturation / oversaturation with a magnitude that grows at every
/// level: less saturated, more, less, more, less.
pub const SATURATION_LADDER: [f64; 5] = [0.75, 1.40, 0.50, 1.80, 0.25];

/// The implemented types, in TID2013 order.
pub const BANK: &[Distortion] = &[
    Distortion {
        tid_type: 1,
        slug: "additive_gaussian_noise",
        apply: additive_gaussian_noise,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 400.0,
            guess27: 11.4,
            rising: false,
        },
    },
    Distortion {
        tid_type: 2,
        slug: "additive_colour_noise",
        apply: colour_noise,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 400.0,
            guess27: 6.0,
            rising: false,
        },
    },
    Distortion {
        tid_type: 3,
        slug: "spatially_correlated_noise",
        apply: correlated_noise,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 400.0,
            guess27: 11.4,
            rising: false,
        },
    },
    Distortion {
        tid_type: 4,
        slug: "masked_noise",
        apply: masked_noise,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 400.0,
            guess27: 11.4,
            rising: false,
        },
    },
    Distortion {
        tid_type: 5,
        slug: "high_frequency_noise",
        apply: high_frequency_noise,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 400.0,
            guess27: 11.4,
            rising: false,
        },
    },
    Distortion {
        tid_type: 6,
        slug: "impulse_noise",
        apply: impulse_noise,
        levels: Levels::Continuous {
            lo: 1e-7,
            hi: 1.0,
            guess27: 0.008,
            rising: false,
        },
    },
    Distortion {
        tid_type: 7,
        slug: "quantization_noise",
        apply: quantization_noise,
        levels: Levels::Continuous {
            lo: 1.0,
            hi: 255.0,
            guess27: 39.0,
            rising: false,
        },
    },
    Distortion {
        tid_type: 8,
        slug: "gaussian_blur",
        apply: gaussian_blur,
        levels: Levels::Continuous {
            lo: 0.05,
            hi: 40.0,
            guess27: 1.5,
            rising: false,
        },
    },
    Distortion {
        tid_type: 9,
        slug: "image_denoising",
        apply: denoised,
        levels: Levels::Continuous {
            lo: 0.5,
            hi: 400.0,
            guess27: 30.0,
            rising: false,
        },
    },
    Distortion {
        tid_type: 10,
        slug: "jpeg_compression",
        apply: jpeg_compression,
        levels: Levels::Integer {
            lo: 1,
            hi: 100,
            log: false,
        },
    },
    Distortion {
        tid_type: 16,
        slug: "mean_shift",
        apply: mean_shift,
        levels: Levels::Ladder(MEAN_SHIFT_LADDER),
    },
    Distortion {
        tid_type: 17,
        slug: "contrast_change",
        apply: contrast_change,
        levels: Levels::Ladder(CONTRAST_LADDER),
    },
    Distortion {
        tid_type: 18,
        slug: "colour_saturation_change",
        apply: saturation_change,
        levels: Levels::Ladder(SATURATION_LADDER),
    },
    Distortion {
        tid_type: 19,
        slug: "multiplicative_gaussian_noise",
        apply: multiplicative_noise,
        levels: Levels::Continuous {
            lo: 1e-5,
            hi: 20.0,
            guess27: 0.1,
            rising: false,
        },
    },
    Distortion {
        tid_type: 21,
        slug: "lossy_compression_of_noisy_images",
        apply: noisy_image_compression,
        levels: Levels::Continuous {
            lo: 0.25,
            hi: 400.0,
            guess27: 15.0,
            rising: false,
        },
    },
    Distortion {
        tid_type: 22,
        slug: "colour_quantization_with_dither",
        apply: colour_quantization_dither,
        levels: Levels::Continuous {
            lo: 2.0,
            hi: 4096.0,
            guess27: 16.0,
            rising: true,
        },
    },
    Distortion {
        tid_type: 23,
        slug: "chromatic_aberrations",
        apply: chromatic_aberration,
        levels: Levels::Continuous {
            lo: 0.01,
            hi: 64.0,
            guess27: 2.0,
            rising: false,
        },
    },
];

/// TID2013 types not produced, with the reason.
pub const SKIPPED: &[(u32, &str)] = &[
    (11, "JPEG2000 compression: no JPEG2000 encoder among the dependencies"),
    (12, "JPEG transmission errors: needs TID2013's bit-error channel and error-tolerant decoder"),
    (13, "JPEG2000 transmission errors: no JPEG2000 codec"),
    (14, "non-eccentricity pattern noise: the published description is too vague to reproduce"),
    (15, "local block-wise distortions: block placement/colours unknown, and TID2013's MOS rises with the level, so its level semantics cannot be reproduced"),
    (20, "comfort noise: depends on a specific codec's noise-injection post-processing"),
    (24, "sparse sampling and reconstruction: needs TID2013's compressive-sensing reconstruction"),
];

/// The bank entry for a TID2013 type, if implemented.
pub fn distortion(tid_type: u32) -> Option<&'static Distortion> {
    BANK.iter().find(|d| d.tid_type == tid_type)
}

// ---------------------------------------------------------------------------------------------
// Float planes

/// An image as three f32 planes (R, G, B), values in 0..255.
#[derive(Clone)]
struct Planes {
    w: usize,
    h: usize,
    c: [Vec<f32>; 3],
}

impl Planes {
    fn from_rgb(img: &RgbImage) -> Planes {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut c = [vec![0f32; w * h], vec![0f32; w * h], vec![0f32; w * h]];
        for (i, px) in img.pixels().enumerate() {
            for k in 0..3 {
                c[k][i] = px[k] as f32;
            }
        }
        Planes { w, h, c }
    }

    fn zeros(w: usize, h: usize) -> Planes {
        Planes {
            w,
            h,
            c: [vec![0f32; w * h], vec![0f32; w * h], vec![0f32; w * h]],
        }
    }

    /// Rounded and clipped to 8 bits.
    fn to_rgb(&self) -> RgbImage {
        let mut out: RgbImage = ImageBuffer::new(self.w as u32, self.h as u32);
        for (i, px) in out.pixels_mut().enumerate() {
            *px = Rgb([
                to_u8(self.c[0][i]),
                to_u8(self.c[1][i]),
                to_u8(self.c[2][i]),
            ]);
        }
        out
    }

    /// Orthonormal opponent colour transform (R+G+B)/sqrt3, (R-B)/sqrt2, (R-2G+B)/sqrt6: i.i.d.
    /// noise stays i.i.d. with the same sigma, and the luminance-like channel is decorrelated.
    fn rgb_to_opponent(&self) -> Planes {
        let mut o = Planes::zeros(self.w, self.h);
        for i in 0..self.w * self.h {
            let v = opp_forward([self.c[0][i], self.c[1][i], self.c[2][i]]);
            for k in 0..3 {
                o.c[k][i] = v[k];
            }
        }
        o
    }

    fn opponent_to_rgb(&self) -> Planes {
        let mut o = Planes::zeros(self.w, self.h);
        for i in 0..self.w * self.h {
            let v = opp_inverse([self.c[0][i], self.c[1][i], self.c[2][i]]);
            for k in 0..3 {
                o.c[k][i] = v[k];
            }
        }
        o
    }
}

const OPP: [[f32; 3]; 3] = [
    [0.577_350_26, 0.577_350_26, 0.577_350_26],
    [0.707_106_77, 0.0, -0.707_106_77],
    [0.408_248_3, -0.816_496_6, 0.408_248_3],
];

fn opp_forward(v: [f32; 3]) -> [f32; 3] {
    let mut o = [0f32; 3];
    for r in 0..3 {
        o[r] = OPP[r][0] * v[0] + OPP[r][1] * v[1] + OPP[r][2] * v[2];
    }
    o
}

fn opp_inverse(v: [f32; 3]) -> [f32; 3] {
    let mut o = [0f32; 3];
    for r in 0..3 {
        o[r] = OPP[0][r] * v[0] + OPP[1][r] * v[1] + OPP[2][r] * v[2];
    }
    o
}

fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.round().clamp(0.0, 255.0) as u8
    }
}

/// BT.601 luma.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn white_noise(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// Symmetric (half-sample) reflection of an index into 0..n.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur of a w x h plane, symmetric borders.
fn blur_plane(p: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return p.to_vec();
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let mut tmp = vec![0f32; w * h];
    let mut row = vec![0f32; w + 2 * r as usize];
    for y in 0..h {
        for (j, v) in row.iter_mut().enumerate() {
            *v = p[y * w + reflect(j as isize - r, w)];
        }
        for x in 0..w {
            let mut acc = 0f32;
            for (j, kv) in k.iter().enumerate() {
                acc += kv * row[x + j];
            }
            tmp[y * w + x] = acc;
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let dst = &mut out[y * w..(y + 1) * w];
        for (j, kv) in k.iter().enumerate() {
            let sy = reflect(y as isize + j as isize - r, h);
            let src = &tmp[sy * w..(sy + 1) * w];
            for x in 0..w {
                dst[x] += kv * src[x];
            }
        }
    }
    out
}

fn normalise_unit_variance(v: &mut [f32]) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt().max(1e-12);
    v.iter_mut()
        .for_each(|x| *x = ((*x as f64 - mean) / sd) as f32);
}

fn add_scaled(img: &RgbImage, noise: &[Vec<f32>; 3], s: f64) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    let s = s as f32;
    for k in 0..3 {
        for (v, n) in p.c[k].iter_mut().zip(&noise[k]) {
            *v += s * n;
        }
    }
    p.to_rgb()
}

// ---------------------------------------------------------------------------------------------
// 1..7: noise

/// Type 1, additive Gaussian noise: i.i.d. N(0, strength^2) added to each of R, G, B.
pub fn additive_gaussian_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let n = (img.width() * img.height()) as usize;
    let noise = [
        white_noise(n, rng),
        white_noise(n, rng),
        white_noise(n, rng),
    ];
    add_scaled(img, &noise, strength)
}

/// Chroma noise standard deviation relative to the luma noise for type 2.
pub const CHROMA_NOISE_RATIO: f32 = 2.0;

/// Type 2, additive noise more intensive in the colour components than in luminance: white
/// Gaussian noise of std `strength` on Y and `CHROMA_NOISE_RATIO * strength` on Cb and Cr
/// (BT.601 YCbCr), mapped back to RGB.
pub fn colour_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let n = (img.width() * img.height()) as usize;
    let ny = white_noise(n, rng);
    let ncb = white_noise(n, rng);
    let ncr = white_noise(n, rng);
    let mut noise = [vec![0f32; n], vec![0f32; n], vec![0f32; n]];
    for i in 0..n {
        let (y, cb, cr) = (
            ny[i],
            CHROMA_NOISE_RATIO * ncb[i],
            CHROMA_NOISE_RATIO * ncr[i],
        );
        noise[0][i] = y + 1.402 * cr;
        noise[1][i] = y - 0.344_136 * cb - 0.714_136 * cr;
        noise[2][i] = y + 1.772 * cb;
    }
    add_scaled(img, &noise, strength)
}

/// A unit-variance spatially correlated ("pink", 1/f amplitude spectrum) noise plane: the
/// sum of octave bands of equal variance, octave k being white noise at 1/2^k resolution,
/// smoothed (Gaussian, sigma 1 at that resolution) and bilinearly upsampled.
fn pink_plane(w: usize, h: usize, rng: &mut Rng) -> Vec<f32> {
    let mut acc = vec![0f32; w * h];
    let octaves = {
        let mut k = 0;
        while k < 6 && (w.min(h) >> (k + 1)) >= 8 {
            k += 1;
        }
        k + 1
    };
    for k in 0..octaves {
        let f = 1usize << k;
        let (cw, ch) = (w.div_ceil(f) + 3, h.div_ceil(f) + 3);
        let coarse = white_noise(cw * ch, rng);
        let coarse = blur_plane(&coarse, cw, ch, 1.0);
        let mut band = vec![0f32; w * h];
        for y in 0..h {
            let cy = (y as f32 + 0.5) / f as f32 - 0.5 + 1.0;
            let y0 = cy.floor() as usize;
            let ty = cy - y0 as f32;
            for x in 0..w {
                let cx = (x as f32 + 0.5) / f as f32 - 0.5 + 1.0;
                let x0 = cx.floor() as usize;
                let tx = cx - x0 as f32;
                let a = coarse[y0 * cw + x0] * (1.0 - tx) + coarse[y0 * cw + x0 + 1] * tx;
                let b =
                    coarse[(y0 + 1) * cw + x0] * (1.0 - tx) + coarse[(y0 + 1) * cw + x0 + 1] * tx;
                band[y * w + x] = a * (1.0 - ty) + b * ty;
            }
        }
        normalise_unit_variance(&mut band);
        acc.iter_mut().zip(&band).for_each(|(a, b)| *a += b);
    }
    normalise_unit_variance(&mut acc);
    acc
}

/// Type 3, spatially correlated noise: pink (1/f) Gaussian noise of std `strength`,
/// independent in R, G, B (TID2013's image files call this type "pink noise").
pub fn correlated_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let noise = [
        pink_plane(w, h, rng),
        pink_plane(w, h, rng),
        pink_plane(w, h, rng),
    ];
    add_scaled(img, &noise, strength)
}

/// Type 4, masked noise: Gaussian noise whose local std follows the local activity of the
/// image (std of the luminance in a Gaussian window, sigma 2 px), so it sits in textures and
/// edges where it is masked and spares flat areas; scaled so that its RMS std is `strength`.
pub fn masked_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let p = Planes::from_rgb(img);
    let (w, h) = (p.w, p.h);
    let n = w * h;
    let l: Vec<f32> = (0..n)
        .map(|i| luma(p.c[0][i], p.c[1][i], p.c[2][i]))
        .collect();
    let l2: Vec<f32> = l.iter().map(|v| v * v).collect();
    let m = blur_plane(&l, w, h, 2.0);
    let m2 = blur_plane(&l2, w, h, 2.0);
    let mut act: Vec<f32> = (0..n)
        .map(|i| (m2[i] - m[i] * m[i]).max(0.0).sqrt())
        .collect();
    let rms = (act.iter().map(|a| (*a as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
    if rms < 1e-6 {
        act.iter_mut().for_each(|a| *a = 1.0); // flat image: nothing to mask with
    } else {
        act.iter_mut().for_each(|a| *a /= rms as f32);
    }
    let mut noise = [
        white_noise(n, rng),
        white_noise(n, rng),
        white_noise(n, rng),
    ];
    for plane in noise.iter_mut() {
        plane.iter_mut().zip(&act).for_each(|(v, a)| *v *= a);
    }
    add_scaled(img, &noise, strength)
}

/// Type 5, high-frequency noise: white noise minus its Gaussian low-pass (sigma 1 px),
/// normalised to unit variance and scaled to std `strength`, independent in R, G, B.
pub fn high_frequency_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut noise = [Vec::new(), Vec::new(), Vec::new()];
    for plane in noise.iter_mut() {
        let wn = white_noise(w * h, rng);
        let lp = blur_plane(&wn, w, h, 1.0);
        let mut hp: Vec<f32> = wn.iter().zip(&lp).map(|(a, b)| a - b).collect();
        normalise_unit_variance(&mut hp);
        *plane = hp;
    }
    add_scaled(img, &noise, strength)
}

/// Type 6, impulse (salt and pepper) noise: each sample of each channel is, with probability
/// `strength`, replaced by 0 or 255 (equally likely). The set of hit samples grows
/// monotonically with `strength` for a fixed `Rng`.
pub fn impulse_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let mut out = img.clone();
    for px in out.pixels_mut() {
        for k in 0..3 {
            let hit = rng.uniform() < strength;
            let salt = rng.uniform() < 0.5;
            if hit {
                px[k] = if salt { 255 } else { 0 };
            }
        }
    }
    out
}

/// Type 7, quantization noise: uniform mid-tread quantisation of each channel with step
/// `strength` (real-valued, >= 1), i.e. round(x / step) * step, clipped.
pub fn quantization_noise(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let q = strength.max(1.0);
    let mut out = img.clone();
    for px in out.pixels_mut() {
        for k in 0..3 {
            let v = ((px[k] as f64 / q).round() * q).round().clamp(0.0, 255.0);
            px[k] = v as u8;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 8..10, 21: blur, denoising, compression

/// Type 8, Gaussian blur with standard deviation `strength` pixels (symmetric borders).
pub fn gaussian_blur(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    for k in 0..3 {
        p.c[k] = blur_plane(&p.c[k], p.w, p.h, strength as f32);
    }
    p.to_rgb()
}

/// An 8x8 block of one plane, or its DCT coefficients.
type Block = [[f32; 8]; 8];

/// The orthonormal 8x8 DCT-II (JPEG's transform), as a matrix C and its transpose.
struct Dct8 {
    c: Block,
    ct: Block,
}

impl Dct8 {
    fn new() -> Dct8 {
        let mut c = [[0f32; 8]; 8];
        for (u, row) in c.iter_mut().enumerate() {
            let a = if u == 0 {
                (1.0f64 / 8.0).sqrt()
            } else {
                (2.0f64 / 8.0).sqrt()
            };
            for (x, v) in row.iter_mut().enumerate() {
                *v = (a * (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / 16.0).cos())
                    as f32;
            }
        }
        let mut ct = [[0f32; 8]; 8];
        for (u, row) in c.iter().enumerate() {
            for (x, &v) in row.iter().enumerate() {
                ct[x][u] = v;
            }
        }
        Dct8 { c, ct }
    }

    /// Coefficients of a block: C B C^T.
    fn forward(&self, b: &Block) -> Block {
        mul8(&mul8(&self.c, b), &self.ct)
    }

    /// The block of coefficients `f`: C^T F C.
    fn inverse(&self, f: &Block) -> Block {
        mul8(&mul8(&self.ct, f), &self.c)
    }
}

/// The matrix product `a b`, each entry summed in index order (so the distortions, and the
/// labels calibrated on them, stay the same bit for bit).
fn mul8(a: &Block, b: &Block) -> Block {
    let mut o = [[0f32; 8]; 8];
    for (i, row) in o.iter_mut().enumerate() {
        for (j, out) in row.iter_mut().enumerate() {
            let mut s = 0f32;
            for k in 0..8 {
                s += a[i][k] * b[k][j];
            }
            *out = s;
        }
    }
    o
}

/// Block origins along an axis of length n: 0, step, 2*step, ... and always n - 8.
fn block_origins(n: usize, step: usize) -> Vec<usize> {
    if n < 8 {
        return Vec::new();
    }
    let mut v: Vec<usize> = (0..=n - 8).step_by(step).collect();
    if *v.last().unwrap() != n - 8 {
        v.push(n - 8);
    }
    v
}

/// Sliding-window 8x8 DCT hard-thresholding denoiser (the DCT filter of Ponomarenko, Lukin et
/// al.): AC coefficients below `thr` are zeroed; overlapping blocks (origins every `step` px)
/// are aggregated with weights 1 / (1 + number of kept AC coefficients).
fn dct_denoise_plane(p: &[f32], w: usize, h: usize, thr: f32, step: usize) -> Vec<f32> {
    let (xs, ys) = (block_origins(w, step), block_origins(h, step));
    if xs.is_empty() || ys.is_empty() {
        return p.to_vec();
    }
    let dct = Dct8::new();
    let mut acc = vec![0f32; w * h];
    let mut wsum = vec![0f32; w * h];
    let mut b = [[0f32; 8]; 8];
    for &y0 in &ys {
        for &x0 in &xs {
            for (y, row) in b.iter_mut().enumerate() {
                row.copy_from_slice(&p[(y0 + y) * w + x0..(y0 + y) * w + x0 + 8]);
            }
            let mut f = dct.forward(&b);
            let mut kept = 0usize;
            for (u, row) in f.iter_mut().enumerate() {
                for (v, val) in row.iter_mut().enumerate() {
                    if u == 0 && v == 0 {
                        continue;
                    }
                    if val.abs() < thr {
                        *val = 0.0;
                    } else {
                        kept += 1;
                    }
                }
            }
            let r = dct.inverse(&f);
            let wt = 1.0 / (1.0 + kept as f32);
            for y in 0..8 {
                let i0 = (y0 + y) * w + x0;
                for x in 0..8 {
                    acc[i0 + x] += wt * r[y][x];
                    wsum[i0 + x] += wt;
                }
            }
        }
    }
    acc.iter().zip(&wsum).map(|(a, s)| a / s).collect()
}

/// The reference plus i.i.d. Gaussian noise of std sigma, stored as an 8-bit image would be.
fn noisy_8bit(img: &RgbImage, sigma: f64, rng: &mut Rng) -> Planes {
    let noisy = additive_gaussian_noise(img, sigma, rng);
    Planes::from_rgb(&noisy)
}

/// Hard threshold of the DCT denoiser, in units of the noise sigma.
pub const DENOISE_THRESHOLD_SIGMAS: f32 = 2.7;

/// Type 9, image denoising: the residual distortion left by a denoiser. The reference gets
/// white Gaussian noise of std `strength` (8-bit, clipped), which is then removed by a
/// sliding-window 8x8 DCT hard-thresholding filter (threshold 2.7 sigma, block step 2 px)
/// applied in an orthonormal opponent colour space; what is scored is the filter's output:
/// over-smoothing, lost texture, ringing and residual noise.
pub fn denoised(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let noisy = noisy_8bit(img, strength, rng).rgb_to_opponent();
    let thr = DENOISE_THRESHOLD_SIGMAS * strength as f32;
    let mut o = noisy.clone();
    for k in 0..3 {
        o.c[k] = dct_denoise_plane(&noisy.c[k], noisy.w, noisy.h, thr, 2);
    }
    o.opponent_to_rgb().to_rgb()
}

/// Type 10, JPEG compression with the `image` crate's baseline encoder at quality
/// `strength` (rounded, 1..=100), decoded back.
pub fn jpeg_compression(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let q = strength.round().clamp(1.0, 100.0) as u8;
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)
        .encode_image(img)
        .expect("JPEG encoding to memory cannot fail");
    image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .expect("decoding our own JPEG cannot fail")
        .to_rgb8()
}

/// Quantisation step of the type-21 coder in units of the noise sigma.
pub const NOISY_CODER_QS_SIGMAS: f32 = 4.0;

/// Type 21, lossy compression of noisy images: white Gaussian noise of std `strength`
/// (8-bit), then an 8x8 block-DCT coder (JPEG's transform, non-overlapping blocks, uniform
/// quantisation of all coefficients) in an orthonormal opponent colour space with quantisation
/// step QS = 4 sigma: the "optimal operation point" at which Ponomarenko, Lukin et al. compress
/// noisy images, where the coder also suppresses much of the noise. (A JPEG quality factor
/// cannot express QS as a function of sigma; entropy coding is lossless and omitted.)
pub fn noisy_image_compression(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let noisy = noisy_8bit(img, strength, rng).rgb_to_opponent();
    let qs = (NOISY_CODER_QS_SIGMAS * strength as f32).max(1e-3);
    let dct = Dct8::new();
    let (w, h) = (noisy.w, noisy.h);
    let mut o = noisy.clone();
    let mut b = [[0f32; 8]; 8];
    for k in 0..3 {
        let src = &noisy.c[k];
        let dst = &mut o.c[k];
        for by in (0..h).step_by(8) {
            for bx in (0..w).step_by(8) {
                // partial border blocks are padded by edge replication
                for (y, row) in b.iter_mut().enumerate() {
                    let sy = (by + y).min(h - 1);
                    for (x, v) in row.iter_mut().enumerate() {
                        *v = src[sy * w + (bx + x).min(w - 1)];
                    }
                }
                let mut f = dct.forward(&b);
                for row in f.iter_mut() {
                    for v in row.iter_mut() {
                        *v = (*v / qs).round() * qs;
                    }
                }
                let r = dct.inverse(&f);
                for y in 0..8.min(h - by) {
                    for x in 0..8.min(w - bx) {
                        dst[(by + y) * w + bx + x] = r[y][x];
                    }
                }
            }
        }
    }
    o.opponent_to_rgb().to_rgb()
}

// ---------------------------------------------------------------------------------------------
// 16..19: global changes, multiplicative noise

/// Type 16, mean shift: `strength` (8-bit units, signed) added to every channel, clipped.
pub fn mean_shift(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    for k in 0..3 {
        p.c[k].iter_mut().for_each(|v| *v += strength as f32);
    }
    p.to_rgb()
}

/// Type 17, contrast change: `m + strength * (x - m)` with m the mean over all samples
/// (`strength` < 1 lowers contrast, > 1 raises it), clipped.
pub fn contrast_change(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    let n = (p.w * p.h * 3) as f64;
    let m =
        (p.c.iter()
            .flat_map(|c| c.iter())
            .map(|&v| v as f64)
            .sum::<f64>()
            / n) as f32;
    for k in 0..3 {
        p.c[k]
            .iter_mut()
            .for_each(|v| *v = m + strength as f32 * (*v - m));
    }
    p.to_rgb()
}

/// Type 18, change of colour saturation: each pixel's chroma (its difference from its BT.601
/// luma) is multiplied by `strength` (< 1 desaturates, 0 is grey, > 1 oversaturates), clipped.
pub fn saturation_change(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    let f = strength as f32;
    for i in 0..p.w * p.h {
        let y = luma(p.c[0][i], p.c[1][i], p.c[2][i]);
        for k in 0..3 {
            p.c[k][i] = y + f * (p.c[k][i] - y);
        }
    }
    p.to_rgb()
}

/// Type 19, multiplicative Gaussian noise: x * (1 + strength * n), n ~ N(0, 1) i.i.d. per
/// sample (speckle).
pub fn multiplicative_noise(img: &RgbImage, strength: f64, rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    let s = strength as f32;
    for k in 0..3 {
        for v in p.c[k].iter_mut() {
            *v *= 1.0 + s * rng.normal() as f32;
        }
    }
    p.to_rgb()
}

// ---------------------------------------------------------------------------------------------
// 22, 23: colour quantisation, chromatic aberrations

/// A palette by greedy variance splitting (the "minimum variance" quantiser): the box of
/// pixels with the largest squared error is split at the median of its widest-variance
/// channel, each colour being its box's mean. `n` real >= 2: floor(n) boxes, plus one more
/// split whose two colours move apart from their parent's mean by the fraction n - floor(n),
/// so that the palette (and PSNR) changes continuously with `n`.
fn variance_split_palette(img: &RgbImage, n: f64) -> Vec<[f32; 3]> {
    let px: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let mut idx: Vec<u32> = (0..px.len() as u32).collect();
    struct Box {
        start: usize,
        end: usize,
        sse: f64,
        var: [f64; 3],
        mean: [f64; 3],
    }
    let stats = |idx: &[u32], start: usize, end: usize| -> Box {
        let len = (end - start) as f64;
        let mut s = [0f64; 3];
        let mut s2 = [0f64; 3];
        for &i in &idx[start..end] {
            for k in 0..3 {
                let v = px[i as usize][k] as f64;
                s[k] += v;
                s2[k] += v * v;
            }
        }
        let mean = [s[0] / len, s[1] / len, s[2] / len];
        let var = [
            s2[0] / len - mean[0] * mean[0],
            s2[1] / len - mean[1] * mean[1],
            s2[2] / len - mean[2] * mean[2],
        ];
        let sse = (var[0] + var[1] + var[2]).max(0.0) * len;
        Box {
            start,
            end,
            sse,
            var,
            mean,
        }
    };
    let full = n.floor().max(1.0) as usize;
    let frac = (n - full as f64).clamp(0.0, 1.0);
    let wanted = if frac > 0.0 { full + 1 } else { full };
    let mut boxes = vec![stats(&idx, 0, px.len())];
    let mut last_split: Option<(usize, [f64; 3])> = None;
    while boxes.len() < wanted {
        let Some((bi, _)) = boxes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.end - b.start >= 2 && b.sse > 1e-9)
            .max_by(|a, b| a.1.sse.total_cmp(&b.1.sse).then(b.0.cmp(&a.0)))
        else {
            break;
        };
        let b = &boxes[bi];
        let (start, end, parent) = (b.start, b.end, b.mean);
        let ch = (0..3)
            .max_by(|&a, &c| b.var[a].total_cmp(&b.var[c]).then(c.cmp(&a)))
            .unwrap();
        idx[start..end].sort_by_key(|&i| px[i as usize][ch]);
        let mid = start + (end - start) / 2;
        let (lo, hi) = (stats(&idx, start, mid), stats(&idx, mid, end));
        boxes[bi] = lo;
        boxes.push(hi);
        last_split = Some((bi, parent));
    }
    let mut means: Vec<[f64; 3]> = boxes.iter().map(|b| b.mean).collect();
    if frac > 0.0 && boxes.len() == wanted {
        if let Some((bi, parent)) = last_split {
            let j = means.len() - 1;
            for i in [bi, j] {
                for k in 0..3 {
                    means[i][k] = parent[k] + frac * (means[i][k] - parent[k]);
                }
            }
        }
    }
    means
        .iter()
        .map(|m| {
            [
                m[0].round() as f32,
                m[1].round() as f32,
                m[2].round() as f32,
            ]
        })
        .collect()
}

/// Nearest palette colour; `pal` is sorted by the green component, `greens` are those values.
fn nearest(pal: &[[f32; 3]], greens: &[f32], q: [f32; 3]) -> usize {
    let start = greens.partition_point(|&g| g < q[1]);
    let d2 = |c: &[f32; 3]| (c[0] - q[0]).powi(2) + (c[1] - q[1]).powi(2) + (c[2] - q[2]).powi(2);
    let mut best = usize::MAX;
    let mut bd = f32::INFINITY;
    let (mut lo, mut hi) = (start as isize - 1, start);
    loop {
        let mut progressed = false;
        if hi < pal.len() {
            let dg = pal[hi][1] - q[1];
            if dg * dg < bd {
                let d = d2(&pal[hi]);
                if d < bd || (d == bd && hi < best) {
                    bd = d;
                    best = hi;
                }
                hi += 1;
                progressed = true;
            } else {
                hi = pal.len();
            }
        }
        if lo >= 0 {
            let l = lo as usize;
            let dg = q[1] - pal[l][1];
            if dg * dg < bd {
                let d = d2(&pal[l]);
                if d < bd || (d == bd && l < best) {
                    bd = d;
                    best = l;
                }
                lo -= 1;
                progressed = true;
            } else {
                lo = -1;
            }
        }
        if !progressed {
            return best;
        }
    }
}

/// Type 22, image colour quantisation with dither: the image is reduced to a palette of
/// about `strength` colours (>= 2; a minimum-variance palette computed from the image, whose
/// last colour fades in continuously with the fractional part) and rendered with
/// Floyd-Steinberg error diffusion. Fewer colours = stronger distortion.
pub fn colour_quantization_dither(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut pal = variance_split_palette(img, strength.max(2.0));
    pal.sort_by(|a, b| {
        a[1].total_cmp(&b[1])
            .then(a[0].total_cmp(&b[0]))
            .then(a[2].total_cmp(&b[2]))
    });
    let greens: Vec<f32> = pal.iter().map(|c| c[1]).collect();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut buf: Vec<[f32; 3]> = img
        .pixels()
        .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
        .collect();
    let mut out: RgbImage = ImageBuffer::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let v = buf[i];
            let q = [
                v[0].clamp(0.0, 255.0),
                v[1].clamp(0.0, 255.0),
                v[2].clamp(0.0, 255.0),
            ];
            let c = pal[nearest(&pal, &greens, q)];
            out.put_pixel(
                x as u32,
                y as u32,
                Rgb([c[0] as u8, c[1] as u8, c[2] as u8]),
            );
            let e = [q[0] - c[0], q[1] - c[1], q[2] - c[2]];
            let mut spread = |xx: isize, yy: usize, f: f32| {
                if xx >= 0 && (xx as usize) < w && yy < h {
                    let t = &mut buf[yy * w + xx as usize];
                    for k in 0..3 {
                        t[k] += e[k] * f;
                    }
                }
            };
            let xi = x as isize;
            spread(xi + 1, y, 7.0 / 16.0);
            spread(xi - 1, y + 1, 3.0 / 16.0);
            spread(xi, y + 1, 5.0 / 16.0);
            spread(xi + 1, y + 1, 1.0 / 16.0);
        }
    }
    out
}

/// Horizontal shift of a plane by `d` px (out(x) = in(x - d)), linear interpolation, edges
/// clamped.
fn shift_plane(p: &[f32], w: usize, h: usize, d: f32) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let sx = (x as f32 - d).clamp(0.0, (w - 1) as f32);
            let x0 = sx.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let t = sx - x0 as f32;
            out[y * w + x] = p[y * w + x0] * (1.0 - t) + p[y * w + x1] * t;
        }
    }
    out
}

/// Type 23, chromatic aberrations: the red component is shifted right and the blue one left by
/// `strength` px (sub-pixel, linear interpolation) with green as the reference, and the two
/// shifted components are defocused by a Gaussian blur of sigma `strength / 2` (lateral plus
/// longitudinal aberration of a lens that focuses green).
pub fn chromatic_aberration(img: &RgbImage, strength: f64, _rng: &mut Rng) -> RgbImage {
    let mut p = Planes::from_rgb(img);
    let d = strength as f32;
    for (k, dir) in [(0usize, 1.0f32), (2, -1.0)] {
        let s = shift_plane(&p.c[k], p.w, p.h, dir * d);
        p.c[k] = blur_plane(&s, p.w, p.h, 0.5 * d);
    }
    p.to_rgb()
}
