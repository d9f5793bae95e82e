//! Setting the five levels of each distortion the way TID2013 did.
//!
//! For the types where PSNR is meaningful (noise, blur, denoising, compression, quantisation,
//! aberrations) TID2013 chose each level's parameter so that the distorted image's PSNR is
//! about 33, 30, 27, 24 and 21 dB for levels 1 (mildest) to 5. We do the same on every crop:
//! a search over the strength on the actual crop until the PSNR (all three channels, 8-bit,
//! peak 255) is within [`TOLERANCE_DB`] of the target.
//!
//! * Continuous strengths: the noise realisation is fixed (the distortion gets a clone of the
//!   image's `Rng` at every trial), so PSNR is a smooth, monotone function of the strength. We
//!   bracket the target starting from a guess and doubling/halving, then run the Illinois
//!   variant of regula falsi on PSNR against log(strength), stopping at 0.02 dB.
//! * Integer strengths (JPEG quality): bisection for the crossing; the closer of the two
//!   neighbours is taken.
//! * A target can be out of reach: JPEG quality 1 of `image`'s encoder (4:2:2) stays above
//!   21.5 dB on smooth crops (about half the Kodak crops at level 5), a quality step at very
//!   low quality can jump by more than 1 dB, blur (sigma <= 40) or chromatic aberration
//!   (shift <= 64 px) cannot bring a nearly flat crop down to 21 dB, and quantisation's PSNR
//!   can jump when a large flat area changes bin. The closest image is still produced and
//!   labelled, and its record (`synth.json`, [`Calibrated::within_tolerance`]) says
//!   `within_tolerance: false`, so such images can be left out where calibrated levels matter.
//!   On the 24 Kodak images (one crop each, seed 1) that is 23 of 1,200 calibrated images
//!   (16 JPEG, 3 blur, 3 aberration, 1 quantisation, 0 others); all the others are within
//!   0.02 dB except JPEG (discrete quality, mean error 0.09 dB), quantisation and rare cases.
//! * Fixed ladders (mean shift, contrast, saturation): no PSNR target; see the ladders in
//!   `distortions`.

use image::RgbImage;

use super::distortions::Distortion;
use super::psnr_u8;
use crate::rng::Rng;

/// TID2013's PSNR targets for levels 1..5, in dB.
pub const PSNR_TARGETS: [f64; 5] = [33.0, 30.0, 27.0, 24.0, 21.0];

/// Allowed distance between the measured PSNR and the level's target.
pub const TOLERANCE_DB: f64 = 0.5;

/// Search stops once this close to the target.
const STOP_DB: f64 = 0.02;

/// How a distortion's five levels are set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Levels {
    /// PSNR-calibrated real strength in [lo, hi]; PSNR falls as it grows (rises if
    /// `rising`, e.g. a number of colours). `guess27` is a typical strength for the 27 dB
    /// level, the starting point of the search.
    Continuous {
        lo: f64,
        hi: f64,
        guess27: f64,
        rising: bool,
    },
    /// PSNR-calibrated integer strength in [lo, hi]; PSNR rises with it (JPEG quality,
    /// number of colours). `log`: bisect geometrically.
    Integer { lo: i64, hi: i64, log: bool },
    /// Fixed strengths for levels 1..5; PSNR does not apply.
    Ladder([f64; 5]),
}

impl Levels {
    pub fn is_psnr_calibrated(&self) -> bool {
        !matches!(self, Levels::Ladder(_))
    }
}

/// The outcome for one image.
#[derive(Clone, Debug)]
pub struct Calibrated {
    pub strength: f64,
    pub image: RgbImage,
    pub psnr: f64,
    /// None for ladder types.
    pub target_psnr: Option<f64>,
    /// None for ladder types.
    pub within_tolerance: Option<bool>,
}

/// The PSNR target of a level (1..=5).
pub fn target_psnr(level: u32) -> f64 {
    PSNR_TARGETS[(level - 1) as usize]
}

struct Best {
    strength: f64,
    image: RgbImage,
    psnr: f64,
    err: f64,
}

impl Best {
    fn offer(slot: &mut Option<Best>, strength: f64, image: RgbImage, psnr: f64, target: f64) {
        let err = (psnr - target).abs();
        let better = match slot {
            None => true,
            Some(b) => err < b.err || (err == b.err && strength < b.strength),
        };
        if better {
            *slot = Some(Best {
                strength,
                image,
                psnr,
                err,
            });
        }
    }
}

/// Distort `reference` at `level` (1..=5) with `d`, drawing randomness from clones of `rng`.
pub fn calibrate(d: &Distortion, reference: &RgbImage, level: u32, rng: &Rng) -> Calibrated {
    assert!((1..=5).contains(&level), "level must be 1..=5");
    let eval = |s: f64| -> (RgbImage, f64) {
        let img = (d.apply)(reference, s, &mut rng.clone());
        let p = psnr_u8(reference, &img);
        (img, p)
    };
    match d.levels {
        Levels::Ladder(ladder) => {
            let s = ladder[(level - 1) as usize];
            let (image, psnr) = eval(s);
            Calibrated {
                strength: s,
                image,
                psnr,
                target_psnr: None,
                within_tolerance: None,
            }
        }
        Levels::Continuous {
            lo,
            hi,
            guess27,
            rising,
        } => {
            let t = target_psnr(level);
            let e = if rising { t - 27.0 } else { 27.0 - t };
            let guess = (guess27 * 10f64.powf(e / 20.0)).clamp(lo, hi);
            finish(search_continuous(&eval, lo, hi, guess, t, rising), t)
        }
        Levels::Integer { lo, hi, log } => {
            let t = target_psnr(level);
            finish(search_integer(&eval, lo, hi, log, t), t)
        }
    }
}

fn finish(b: Best, t: f64) -> Calibrated {
    Calibrated {
        strength: b.strength,
        within_tolerance: Some(b.err <= TOLERANCE_DB),
        psnr: b.psnr,
        image: b.image,
        target_psnr: Some(t),
    }
}

/// PSNR falls with the strength (rises if `rising`). Works on x = ln(strength).
fn search_continuous(
    eval: &dyn Fn(f64) -> (RgbImage, f64),
    lo: f64,
    hi: f64,
    guess: f64,
    t: f64,
    rising: bool,
) -> Best {
    let mut best: Option<Best> = None;
    let f = |x: f64, best: &mut Option<Best>| -> f64 {
        let s = x.exp();
        let (img, p) = eval(s);
        // identical image: treat as very high PSNR so the search moves up
        let g = if p.is_finite() { p - t } else { 200.0 };
        let g = if rising { -g } else { g };
        Best::offer(best, s, img, p, t);
        g
    };
    let (xlo, xhi) = (lo.ln(), hi.ln());
    // bracket [a, b] with g(a) > 0 (too mild) and g(b) < 0 (too strong)
    let x0 = guess.ln();
    let g0 = f(x0, &mut best);
    let (mut a, mut ga, mut b, mut gb);
    if g0.abs() < STOP_DB {
        return best.unwrap();
    } else if g0 > 0.0 {
        (a, ga) = (x0, g0);
        let mut x = x0;
        loop {
            if x >= xhi {
                return best.unwrap(); // cannot get strong enough
            }
            x = (x + std::f64::consts::LN_2).min(xhi);
            let g = f(x, &mut best);
            if g.abs() < STOP_DB {
                return best.unwrap();
            }
            if g < 0.0 {
                (b, gb) = (x, g);
                break;
            }
            (a, ga) = (x, g);
        }
    } else {
        (b, gb) = (x0, g0);
        let mut x = x0;
        loop {
            if x <= xlo {
                return best.unwrap(); // cannot get mild enough
            }
            x = (x - std::f64::consts::LN_2).max(xlo);
            let g = f(x, &mut best);
            if g.abs() < STOP_DB {
                return best.unwrap();
            }
            if g > 0.0 {
                (a, ga) = (x, g);
                break;
            }
            (b, gb) = (x, g);
        }
    }
    // Illinois regula falsi
    let mut side = 0i32;
    for _ in 0..60 {
        if (b - a).abs() < 1e-9 {
            break;
        }
        let mut x = (a * gb - b * ga) / (gb - ga);
        if !x.is_finite() || x <= a.min(b) || x >= a.max(b) {
            x = 0.5 * (a + b);
        }
        let g = f(x, &mut best);
        if g.abs() < STOP_DB {
            break;
        }
        if g > 0.0 {
            (a, ga) = (x, g);
            if side == 1 {
                gb *= 0.5;
            }
            side = 1;
        } else {
            (b, gb) = (x, g);
            if side == -1 {
                ga *= 0.5;
            }
            side = -1;
        }
    }
    best.unwrap()
}

/// PSNR rises with the integer strength.
fn search_integer(
    eval: &dyn Fn(f64) -> (RgbImage, f64),
    lo: i64,
    hi: i64,
    log: bool,
    t: f64,
) -> Best {
    let mut best: Option<Best> = None;
    let f = |k: i64, best: &mut Option<Best>| -> f64 {
        let (img, p) = eval(k as f64);
        Best::offer(best, k as f64, img, p, t);
        if p.is_finite() {
            p
        } else {
            1e9
        }
    };
    if f(hi, &mut best) < t {
        return best.unwrap(); // even the mildest setting is too strong
    }
    if f(lo, &mut best) >= t {
        return best.unwrap(); // even the strongest setting is too mild
    }
    // invariant: psnr(a) < t <= psnr(b)
    let (mut a, mut b) = (lo, hi);
    while b - a > 1 {
        let m = if log {
            ((a as f64) * (b as f64)).sqrt().round() as i64
        } else {
            (a + b) / 2
        };
        let m = m.clamp(a + 1, b - 1);
        if f(m, &mut best) >= t {
            b = m;
        } else {
            a = m;
        }
    }
    best.unwrap()
}
