//! The quality map: a per-pixel map upsampled and laid in viridis colours over a greyscale
//! copy of the image it describes, with an optional legend strip below.

use super::axes::format_num;
use super::font::{draw_text, text_height, text_width, TEXT_SCALE};
use super::raster::{fill_rect, write_png_atomic};
use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// The 16-entry viridis table (matplotlib's `viridis` sampled at i/15),
/// interpolated linearly by [`colormap`]. Perceptually ordered: luminance
/// increases monotonically from dark purple (low) to yellow (high).
const VIRIDIS16: [[u8; 3]; 16] = [
    [68, 1, 84],
    [72, 26, 108],
    [71, 47, 125],
    [65, 68, 135],
    [57, 86, 140],
    [49, 104, 142],
    [42, 120, 142],
    [35, 136, 142],
    [31, 152, 139],
    [34, 168, 132],
    [53, 183, 121],
    [84, 197, 104],
    [122, 209, 81],
    [165, 219, 54],
    [210, 226, 27],
    [253, 231, 37],
];

/// Viridis colour for `t` in `[0, 1]` (clamped), as linear interpolation of
/// the 16-entry table, in 0..255 floating point.
pub fn colormap(t: f64) -> [f64; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let f = t * 15.0;
    let i = (f.floor() as usize).min(14);
    let u = f - i as f64;
    let (a, b) = (VIRIDIS16[i], VIRIDIS16[i + 1]);
    [0, 1, 2].map(|k| a[k] as f64 + u * (b[k] as f64 - a[k] as f64))
}

/// Opacity of the heat map over the greyscale base image.
pub const MAP_ALPHA: f64 = 0.55;
/// Height of the legend strip added below the picture by
/// [`quality_map_png`] with `legend = true`.
pub const LEGEND_HEIGHT: u32 = 84;

/// Writes a quality map laid over the image it describes as PNG (atomically);
/// see [`quality_map_image`] for the rendering.
///
/// * `legend = false` (the caller's default): the PNG is exactly `w` x `h`,
///   the size of the input image, pixel-aligned with it.
/// * `legend = true`: the picture is the same `w` x `h` block at the top-left,
///   with a [`LEGEND_HEIGHT`]-pixel legend strip below it (colour bar, min /
///   mid / max values, `legend_title`); if the texts need more room than `w`
///   the figure is widened with background to the right of the picture, so
///   the picture area itself is never scaled or cropped.
#[allow(clippy::too_many_arguments)]
pub fn quality_map_png(
    path: &Path,
    base_rgb: &[u8],
    w: u32,
    h: u32,
    map: &[f32],
    map_w: u32,
    map_h: u32,
    legend_title: &str,
    legend: bool,
) -> Result<()> {
    let img = quality_map_image(base_rgb, w, h, map, map_w, map_h, legend_title, legend)?;
    write_png_atomic(path, &img)
}

/// Renders the overlay in memory (see [`quality_map_png`] for the sizes).
///
/// * The map (`map_w` x `map_h`, row-major) is upsampled bilinearly to
///   `w` x `h` with pixel centres aligned (`align_corners = false`, edge
///   samples clamped), then normalised so that its finite minimum maps to 0
///   and its maximum to 1 (a constant map gives 0.5 everywhere).
/// * Colours: viridis ([`colormap`]); high map values are bright yellow.
/// * Each output pixel is `0.55 * colour + 0.45 * grey`, where grey is the
///   luma `0.299 R + 0.587 G + 0.114 B` of the base pixel. Where the
///   upsampled map is NaN (a NaN map sample within reach), only grey is shown.
///
/// Errors if a buffer size does not match its dimensions or a dimension is 0.
#[allow(clippy::too_many_arguments)]
pub fn quality_map_image(
    base_rgb: &[u8],
    w: u32,
    h: u32,
    map: &[f32],
    map_w: u32,
    map_h: u32,
    legend_title: &str,
    legend: bool,
) -> Result<RgbImage> {
    if w == 0 || h == 0 || map_w == 0 || map_h == 0 {
        bail!("quality map: zero dimension (image {w}x{h}, map {map_w}x{map_h})");
    }
    if base_rgb.len() != (w as usize) * (h as usize) * 3 {
        bail!(
            "quality map: base image has {} bytes, expected {}x{}x3",
            base_rgb.len(),
            w,
            h
        );
    }
    if map.len() != (map_w as usize) * (map_h as usize) {
        bail!(
            "quality map: map has {} values, expected {}x{}",
            map.len(),
            map_w,
            map_h
        );
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in map.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v as f64);
        hi = hi.max(v as f64);
    }
    let norm = |v: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };

    // Sampling positions of the bilinear upsampling along one axis.
    let taps = |out: u32, src: u32| -> Vec<(usize, usize, f64)> {
        (0..out)
            .map(|o| {
                let s =
                    ((o as f64 + 0.5) * src as f64 / out as f64 - 0.5).clamp(0.0, (src - 1) as f64);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(src as usize - 1);
                (i0, i1, s - i0 as f64)
            })
            .collect()
    };
    let xt = taps(w, map_w);
    let yt = taps(h, map_h);

    let out_w = if legend {
        let need = |s: &str| text_width(s, TEXT_SCALE) + 16;
        let labels = format!(
            "{}  {}  {}",
            format_num(lo),
            format_num((lo + hi) / 2.0),
            format_num(hi)
        );
        w.max(need(legend_title)).max(need(&labels)).max(96)
    } else {
        w
    };
    let out_h = if legend { h + LEGEND_HEIGHT } else { h };
    let mut img = RgbImage::from_pixel(out_w, out_h, Rgb([255, 255, 255]));

    let mw = map_w as usize;
    for (py, &(y0, y1, fy)) in yt.iter().enumerate() {
        for (px, &(x0, x1, fx)) in xt.iter().enumerate() {
            let m = |yy: usize, xx: usize| map[yy * mw + xx] as f64;
            let top = m(y0, x0) * (1.0 - fx) + m(y0, x1) * fx;
            let bot = m(y1, x0) * (1.0 - fx) + m(y1, x1) * fx;
            let v = top * (1.0 - fy) + bot * fy;
            let i = (py * w as usize + px) * 3;
            let grey = 0.299 * base_rgb[i] as f64
                + 0.587 * base_rgb[i + 1] as f64
                + 0.114 * base_rgb[i + 2] as f64;
            let px_out = if v.is_finite() {
                let c = colormap(norm(v));
                c.map(|ck| {
                    (MAP_ALPHA * ck + (1.0 - MAP_ALPHA) * grey)
                        .round()
                        .clamp(0.0, 255.0) as u8
                })
            } else {
                [grey.round().clamp(0.0, 255.0) as u8; 3]
            };
            img.put_pixel(px as u32, py as u32, Rgb(px_out));
        }
    }

    if legend {
        draw_legend(&mut img, h, lo, hi, legend_title);
    }
    Ok(img)
}

/// Legend strip below the picture (rows `h..h + LEGEND_HEIGHT`): title,
/// horizontal colour bar, min / mid / max labels.
fn draw_legend(img: &mut RgbImage, h: u32, lo: f64, hi: f64, title: &str) {
    let black = Rgb([0, 0, 0]);
    let w = img.width() as i64;
    let top = h as i64;
    let th = text_height(TEXT_SCALE) as i64;
    let pad = 8i64;
    draw_text(img, pad, top + 6, title, TEXT_SCALE, black);
    let (bx0, bx1) = (pad, w - pad);
    let (by0, by1) = (top + 6 + th + 4, top + 6 + th + 4 + 16);
    for x in bx0..bx1 {
        let t = (x - bx0) as f64 / ((bx1 - bx0 - 1).max(1)) as f64;
        let c = colormap(t).map(|v| v.round() as u8);
        fill_rect(img, x, by0, x + 1, by1, Rgb(c));
    }
    // Thin frame around the bar.
    fill_rect(img, bx0 - 1, by0 - 1, bx1 + 1, by0, black);
    fill_rect(img, bx0 - 1, by1, bx1 + 1, by1 + 1, black);
    fill_rect(img, bx0 - 1, by0 - 1, bx0, by1 + 1, black);
    fill_rect(img, bx1, by0 - 1, bx1 + 1, by1 + 1, black);
    let (lo, hi) = if lo <= hi {
        (lo, hi)
    } else {
        (f64::NAN, f64::NAN)
    };
    let ly = by1 + 5;
    let lo_s = format_num(lo);
    let hi_s = format_num(hi);
    let mid_s = format_num((lo + hi) / 2.0);
    draw_text(img, bx0, ly, &lo_s, TEXT_SCALE, black);
    let hw = text_width(&hi_s, TEXT_SCALE) as i64;
    draw_text(img, bx1 - hw, ly, &hi_s, TEXT_SCALE, black);
    let mw = text_width(&mid_s, TEXT_SCALE) as i64;
    let lw = text_width(&lo_s, TEXT_SCALE) as i64;
    let mx = (bx0 + bx1 - mw) / 2;
    // Mid label only where it does not collide with the end labels.
    if mx > bx0 + lw + 12 && mx + mw + 12 < bx1 - hw {
        draw_text(img, mx, ly, &mid_s, TEXT_SCALE, black);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_files::{listing, tmp_dir};

    #[test]
    fn colormap_is_monotone_in_luminance() {
        let lin = |c: f64| {
            let c = c / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let lum = |c: [f64; 3]| 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
        let mut prev = -1.0;
        for k in 0..=1000 {
            let l = lum(colormap(k as f64 / 1000.0));
            assert!(
                l > prev,
                "luminance not increasing at t = {}",
                k as f64 / 1000.0
            );
            prev = l;
        }
        assert_eq!(colormap(0.0), [68.0, 1.0, 84.0]);
        assert_eq!(colormap(1.0), [253.0, 231.0, 37.0]);
        assert_eq!(colormap(-3.0), colormap(0.0));
        assert_eq!(colormap(7.0), colormap(1.0));
    }

    fn test_base(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [(i % 251) as u8, (i * 7 % 256) as u8, 100])
            .collect()
    }

    #[test]
    fn quality_map_sizes_and_pixels() {
        let dir = tmp_dir("qmap");
        let (w, h) = (37u32, 23u32);
        let base = test_base(w, h);
        let (mw, mh) = (5u32, 4u32);
        let map: Vec<f32> = (0..mw * mh).map(|i| i as f32 * 0.1).collect();
        let exact = dir.join("exact.png");
        quality_map_png(&exact, &base, w, h, &map, mw, mh, "SSIM", false).unwrap();
        let a = image::open(&exact).unwrap().to_rgb8();
        assert_eq!(a.dimensions(), (w, h));
        assert_eq!(listing(&dir), ["exact.png"]);
        let with = dir.join("legend.png");
        quality_map_png(&with, &base, w, h, &map, mw, mh, "SSIM", true).unwrap();
        let b = image::open(&with).unwrap().to_rgb8();
        assert_eq!(b.height(), h + LEGEND_HEIGHT);
        assert!(b.width() >= w);
        // The picture area is identical in both modes.
        for y in 0..h {
            for x in 0..w {
                assert_eq!(a.get_pixel(x, y), b.get_pixel(x, y));
            }
        }
        // Top-left pixel samples the map minimum (clamped edge), bottom-right the maximum.
        let grey = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            0.299 * base[i] as f64 + 0.587 * base[i + 1] as f64 + 0.114 * base[i + 2] as f64
        };
        let expect = |t: f64, g: f64| colormap(t).map(|c| (0.55 * c + 0.45 * g).round() as u8);
        assert_eq!(a.get_pixel(0, 0).0, expect(0.0, grey(0, 0)));
        assert_eq!(a.get_pixel(w - 1, h - 1).0, expect(1.0, grey(w - 1, h - 1)));

        // A legend wider than a tiny picture widens the figure, never the picture.
        let tiny = test_base(4, 4);
        let img = quality_map_image(
            &tiny,
            4,
            4,
            &[0.0, 1.0, 2.0, 3.0],
            2,
            2,
            "error map (ASNA)",
            true,
        )
        .unwrap();
        assert!(img.width() > 4);
        assert_eq!(img.height(), 4 + LEGEND_HEIGHT);
        assert_eq!(
            quality_map_image(&tiny, 4, 4, &[1.0; 4], 2, 2, "", false)
                .unwrap()
                .dimensions(),
            (4, 4)
        );
        // Constant and NaN maps render; bad sizes are errors.
        quality_map_image(&tiny, 4, 4, &[f32::NAN; 4], 2, 2, "nan", true).unwrap();
        assert!(quality_map_image(&tiny, 4, 4, &[0.0; 3], 2, 2, "", false).is_err());
        assert!(quality_map_image(&tiny[..10], 4, 4, &[0.0; 4], 2, 2, "", false).is_err());
        assert!(quality_map_image(&tiny, 4, 4, &[], 0, 0, "", false).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
