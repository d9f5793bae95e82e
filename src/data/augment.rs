//! Crops, geometric augmentation and CIE Lab lightness scaling (training and test-time).
//!
//! Training applies the same random quarter-turn rotation and horizontal / vertical flips to
//! both images of a pair, and scales the L channel in CIE Lab of both by one factor in
//! U(0.3, 1.5); docs/MODEL.md ("Augmentation") compares this with the authors' code.

use anyhow::bail;
use image::{imageops, RgbImage};

use crate::rng::Rng;

fn check_crop(a: &RgbImage, b: &RgbImage, size: u32) -> anyhow::Result<()> {
    if a.dimensions() != b.dimensions() {
        bail!(
            "cannot crop a pair of different sizes ({}x{} and {}x{})",
            a.width(),
            a.height(),
            b.width(),
            b.height()
        );
    }
    if size == 0 || a.width() < size || a.height() < size {
        bail!(
            "image {}x{} is smaller than the {size}x{size} crop",
            a.width(),
            a.height()
        );
    }
    Ok(())
}

fn crop_at(img: &RgbImage, x: u32, y: u32, size: u32) -> RgbImage {
    imageops::crop_imm(img, x, y, size, size).to_image()
}

/// The same uniformly random `size` x `size` window of both images (two `Rng::below` draws: x, then y).
/// Errors (no panic) when the images differ in size or are smaller than the crop.
pub fn random_crop_pair(
    a: &RgbImage,
    b: &RgbImage,
    size: u32,
    rng: &mut Rng,
) -> anyhow::Result<(RgbImage, RgbImage)> {
    check_crop(a, b, size)?;
    let x = rng.below((a.width() - size + 1) as u64) as u32;
    let y = rng.below((a.height() - size + 1) as u64) as u32;
    Ok((crop_at(a, x, y, size), crop_at(b, x, y, size)))
}

/// The central `size` x `size` window of both images (offsets rounded down).
pub fn center_crop_pair(
    a: &RgbImage,
    b: &RgbImage,
    size: u32,
) -> anyhow::Result<(RgbImage, RgbImage)> {
    check_crop(a, b, size)?;
    let x = (a.width() - size) / 2;
    let y = (a.height() - size) / 2;
    Ok((crop_at(a, x, y, size), crop_at(b, x, y, size)))
}

/// One augmentation, applied identically to both images of a pair.
///
/// Order in [`apply`](Self::apply): rotate `rot90` quarter turns clockwise, then mirror
/// left-right if `flip_h`, then top-bottom if `flip_v`, then multiply CIE Lab L by `l_scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Quarter turns clockwise, 0..=3.
    pub rot90: u8,
    pub flip_h: bool,
    pub flip_v: bool,
    /// Factor on CIE Lab lightness; 1.0 leaves the colours untouched.
    pub l_scale: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment::identity()
    }
}

impl Augment {
    pub fn identity() -> Self {
        Augment {
            rot90: 0,
            flip_h: false,
            flip_v: false,
            l_scale: 1.0,
        }
    }

    /// Training augmentation: rotation uniform in {0, 90, 180, 270} degrees, each flip with
    /// probability 1/2, L factor uniform in [0.3, 1.5). Draws, in order: below(4), uniform,
    /// uniform, range.
    pub fn sample(rng: &mut Rng) -> Self {
        let rot90 = rng.below(4) as u8;
        let flip_h = rng.uniform() < 0.5;
        let flip_v = rng.uniform() < 0.5;
        let l_scale = rng.range(0.3, 1.5) as f32;
        Augment {
            rot90,
            flip_h,
            flip_v,
            l_scale,
        }
    }

    pub fn is_identity(&self) -> bool {
        self.rot90.is_multiple_of(4) && !self.flip_h && !self.flip_v && self.l_scale == 1.0
    }

    /// The transformed image (a square image keeps its size; rotation swaps a rectangle's sides).
    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        let mut out = match self.rot90 % 4 {
            1 => imageops::rotate90(img),
            2 => imageops::rotate180(img),
            3 => imageops::rotate270(img),
            _ => img.clone(),
        };
        if self.flip_h {
            imageops::flip_horizontal_in_place(&mut out);
        }
        if self.flip_v {
            imageops::flip_vertical_in_place(&mut out);
        }
        if self.l_scale != 1.0 {
            scale_lightness_in_place(&mut out, self.l_scale);
        }
        out
    }

    /// [`apply`](Self::apply) to both images of a pair.
    pub fn apply_pair(&self, a: &RgbImage, b: &RgbImage) -> (RgbImage, RgbImage) {
        (self.apply(a), self.apply(b))
    }
}

/// The 22 test-time variants over which the authors average the score, in this order:
/// rotations by 0, 90, 180 and 270 degrees (4); flips left-right, top-bottom, and both (3);
/// L scales 0.1, 0.2, ..., 1.5 (15; 1.0 repeats the identity, as in the authors' count).
/// Each variant changes one thing only.
pub fn tta_variants() -> Vec<Augment> {
    let id = Augment::identity();
    let mut v: Vec<Augment> = (0..4).map(|r| Augment { rot90: r, ..id }).collect();
    v.push(Augment { flip_h: true, ..id });
    v.push(Augment { flip_v: true, ..id });
    v.push(Augment {
        flip_h: true,
        flip_v: true,
        ..id
    });
    v.extend((1..=15).map(|i| Augment {
        l_scale: i as f32 / 10.0,
        ..id
    }));
    v
}

// ---- CIE Lab (D65, 2 degree observer) on sRGB ----

const M_RGB_TO_XYZ: [[f32; 3]; 3] = [
    [0.412_456_4, 0.357_576_1, 0.180_437_5],
    [0.212_672_9, 0.715_152_2, 0.072_175_0],
    [0.019_333_9, 0.119_192, 0.950_304_1],
];
const M_XYZ_TO_RGB: [[f32; 3]; 3] = [
    [3.240_454_2, -1.537_138_5, -0.498_531_4],
    [-0.969_266, 1.876_010_8, 0.041_556_0],
    [0.055_643_4, -0.204_025_9, 1.057_225_2],
];
// D65 white = the matrix's image of RGB (1, 1, 1), so that white has a = b = 0 exactly.
const WHITE: [f32; 3] = [
    0.412_456_4 + 0.357_576_1 + 0.180_437_5,
    0.212_672_9 + 0.715_152_2 + 0.072_175_0,
    0.019_333_9 + 0.119_192 + 0.950_304_1,
];
const DELTA: f32 = 6.0 / 29.0;

fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.040_45 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 {
        c * 12.92
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

fn lab_f(t: f32) -> f32 {
    if t > DELTA * DELTA * DELTA {
        t.cbrt()
    } else {
        t / (3.0 * DELTA * DELTA) + 4.0 / 29.0
    }
}

fn lab_f_inv(t: f32) -> f32 {
    if t > DELTA {
        t * t * t
    } else {
        3.0 * DELTA * DELTA * (t - 4.0 / 29.0)
    }
}

fn mat(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

fn linear_to_lab(lin: [f32; 3]) -> [f32; 3] {
    let xyz = mat(&M_RGB_TO_XYZ, lin);
    let fx = lab_f(xyz[0] / WHITE[0]);
    let fy = lab_f(xyz[1] / WHITE[1]);
    let fz = lab_f(xyz[2] / WHITE[2]);
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// sRGB (components in 0..=255, gamma-encoded, D65) to CIE Lab (L in 0..=100).
pub fn rgb_to_lab(rgb: [f32; 3]) -> [f32; 3] {
    linear_to_lab(rgb.map(|c| srgb_to_linear(c / 255.0)))
}

/// CIE Lab to sRGB components on the 0..=255 scale, unclamped (out-of-gamut colours fall outside).
pub fn lab_to_rgb(lab: [f32; 3]) -> [f32; 3] {
    let fy = (lab[0] + 16.0) / 116.0;
    let fx = fy + lab[1] / 500.0;
    let fz = fy - lab[2] / 200.0;
    let xyz = [
        WHITE[0] * lab_f_inv(fx),
        WHITE[1] * lab_f_inv(fy),
        WHITE[2] * lab_f_inv(fz),
    ];
    let lin = mat(&M_XYZ_TO_RGB, xyz);
    lin.map(|c| {
        let s = if c < 0.0 {
            -linear_to_srgb(-c)
        } else {
            linear_to_srgb(c)
        };
        s * 255.0
    })
}

/// Multiplies every pixel's CIE Lab L by `factor` (a and b unchanged), then converts back to
/// sRGB, clamped to [0, 255] and rounded. Always converts (factor 1.0 round-trips to within a level).
pub fn scale_lightness(img: &RgbImage, factor: f32) -> RgbImage {
    let mut out = img.clone();
    scale_lightness_in_place(&mut out, factor);
    out
}

fn scale_lightness_in_place(img: &mut RgbImage, factor: f32) {
    let lut: Vec<f32> = (0..256).map(|i| srgb_to_linear(i as f32 / 255.0)).collect();
    for px in img.pixels_mut() {
        let lin = [
            lut[px.0[0] as usize],
            lut[px.0[1] as usize],
            lut[px.0[2] as usize],
        ];
        let mut lab = linear_to_lab(lin);
        lab[0] *= factor;
        let rgb = lab_to_rgb(lab);
        px.0 = rgb.map(|c| c.round().clamp(0.0, 255.0) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut r = Rng::new(seed);
        RgbImage::from_fn(w, h, |_, _| {
            image::Rgb([r.below(256) as u8, r.below(256) as u8, r.below(256) as u8])
        })
    }

    #[test]
    fn lab_known_values() {
        let w = rgb_to_lab([255.0, 255.0, 255.0]);
        assert!(
            (w[0] - 100.0).abs() < 1e-3 && w[1].abs() < 1e-3 && w[2].abs() < 1e-3,
            "{w:?}"
        );
        let k = rgb_to_lab([0.0, 0.0, 0.0]);
        assert!(k.iter().all(|v| v.abs() < 1e-4), "{k:?}");
        // Reference values (D65): sRGB red = (53.24, 80.09, 67.20); mid grey 128 has L = 53.59.
        let r = rgb_to_lab([255.0, 0.0, 0.0]);
        assert!(
            (r[0] - 53.24).abs() < 0.02
                && (r[1] - 80.09).abs() < 0.05
                && (r[2] - 67.20).abs() < 0.05,
            "{r:?}"
        );
        let g = rgb_to_lab([128.0, 128.0, 128.0]);
        assert!(
            (g[0] - 53.59).abs() < 0.02 && g[1].abs() < 1e-3 && g[2].abs() < 1e-3,
            "{g:?}"
        );
    }

    #[test]
    fn lab_round_trip_within_one_level() {
        let mut worst = 0.0f32;
        let grid: Vec<f32> = (0..=255)
            .step_by(3)
            .chain([254, 255])
            .map(|v| v as f32)
            .collect();
        for &r in &grid {
            for &g in &grid {
                for &b in &grid {
                    let back = lab_to_rgb(rgb_to_lab([r, g, b]));
                    for (x, y) in back.iter().zip([r, g, b]) {
                        worst = worst.max((x.round() - y).abs());
                    }
                }
            }
        }
        assert!(worst <= 1.0, "worst round-trip error {worst}");
    }

    #[test]
    fn geometry_is_exact_permutation() {
        let img = test_image(5, 7, 1);
        let r1 = Augment {
            rot90: 1,
            ..Augment::identity()
        };
        let mut x = img.clone();
        for _ in 0..4 {
            x = r1.apply(&x);
        }
        assert_eq!(x, img);
        assert_eq!(r1.apply(&img).dimensions(), (7, 5));
        // Clockwise: the top-left pixel goes to the top-right corner.
        assert_eq!(r1.apply(&img).get_pixel(6, 0), img.get_pixel(0, 0));
        let fh = Augment {
            flip_h: true,
            ..Augment::identity()
        };
        let fv = Augment {
            flip_v: true,
            ..Augment::identity()
        };
        assert_eq!(fh.apply(&fh.apply(&img)), img);
        assert_eq!(fv.apply(&fv.apply(&img)), img);
        assert_eq!(fh.apply(&img).get_pixel(4, 0), img.get_pixel(0, 0));
        assert_eq!(fv.apply(&img).get_pixel(0, 6), img.get_pixel(0, 0));
        let both = Augment {
            flip_h: true,
            flip_v: true,
            ..Augment::identity()
        };
        assert_eq!(
            both.apply(&img),
            Augment {
                rot90: 2,
                ..Augment::identity()
            }
            .apply(&img)
        );
        // A permutation: same multiset of pixels.
        let mut a: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        let mut b: Vec<[u8; 3]> = Augment {
            rot90: 3,
            flip_h: true,
            ..Augment::identity()
        }
        .apply(&img)
        .pixels()
        .map(|p| p.0)
        .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(Augment::identity().apply(&img), img);
    }

    #[test]
    fn same_transform_on_both_images() {
        let a = test_image(16, 16, 2);
        let b = a.clone();
        let mut rng = Rng::new(5);
        for _ in 0..8 {
            let aug = Augment::sample(&mut rng);
            assert!(aug.rot90 < 4 && (0.3..1.5).contains(&aug.l_scale));
            let (x, y) = aug.apply_pair(&a, &b);
            assert_eq!(x, y);
        }
        let (ca, cb) =
            random_crop_pair(&test_image(40, 30, 3), &test_image(40, 30, 3), 16, &mut rng).unwrap();
        assert_eq!(ca, cb);
        assert_eq!(ca.dimensions(), (16, 16));
    }

    #[test]
    fn crops_pick_the_same_window() {
        let a = test_image(40, 30, 4);
        let b = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let mut rng = Rng::new(9);
        for _ in 0..20 {
            let (ca, cb) = random_crop_pair(&a, &b, 10, &mut rng).unwrap();
            let (x0, y0) = (
                cb.get_pixel(0, 0).0[0] as u32,
                cb.get_pixel(0, 0).0[1] as u32,
            );
            assert!(x0 <= 30 && y0 <= 20);
            assert_eq!(ca, imageops::crop_imm(&a, x0, y0, 10, 10).to_image());
        }
        let (_, cb) = center_crop_pair(&a, &b, 10).unwrap();
        assert_eq!(cb.get_pixel(0, 0).0, [15, 10, 0]);
        assert!(center_crop_pair(&a, &b, 31)
            .unwrap_err()
            .to_string()
            .contains("smaller than the 31x31 crop"));
        assert!(random_crop_pair(&a, &test_image(30, 40, 1), 8, &mut rng).is_err());
    }

    #[test]
    fn lightness_scaling() {
        let img = test_image(32, 32, 6);
        let same = scale_lightness(&img, 1.0);
        for (p, q) in img.pixels().zip(same.pixels()) {
            for k in 0..3 {
                assert!((p.0[k] as i32 - q.0[k] as i32).abs() <= 1);
            }
        }
        // Darkening keeps chroma (a, b) for in-gamut results and lowers L by the factor.
        let mid = RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([100 + 8 * x as u8, 120, 90 + 6 * y as u8])
        });
        let dark = scale_lightness(&mid, 0.7);
        for (p, q) in mid.pixels().zip(dark.pixels()) {
            let lp = rgb_to_lab(p.0.map(|v| v as f32));
            let lq = rgb_to_lab(q.0.map(|v| v as f32));
            assert!((lq[0] - 0.7 * lp[0]).abs() < 0.6, "{lp:?} {lq:?}");
            assert!(
                (lq[1] - lp[1]).abs() < 1.5 && (lq[2] - lp[2]).abs() < 1.5,
                "{lp:?} {lq:?}"
            );
        }
        let bright = scale_lightness(&mid, 1.3);
        let mean = |i: &RgbImage| {
            i.pixels()
                .map(|p| rgb_to_lab(p.0.map(|v| v as f32))[0])
                .sum::<f32>()
        };
        assert!(mean(&bright) > mean(&mid) && mean(&dark) < mean(&mid));
        let white = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        assert_eq!(scale_lightness(&white, 1.5), white); // clamped
    }

    #[test]
    fn tta_has_22_single_change_variants() {
        let v = tta_variants();
        assert_eq!(v.len(), 22);
        assert_eq!(v[0], Augment::identity());
        assert_eq!(v.iter().filter(|a| a.rot90 != 0).count(), 3);
        assert_eq!(v.iter().filter(|a| a.flip_h || a.flip_v).count(), 3);
        let scales: Vec<f32> = v[7..].iter().map(|a| a.l_scale).collect();
        assert_eq!(scales.len(), 15);
        assert!((scales[0] - 0.1).abs() < 1e-6 && (scales[14] - 1.5).abs() < 1e-6);
    }
}
