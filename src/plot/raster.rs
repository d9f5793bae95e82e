//! Pixels: clipped and blended pixel writes, rectangles, discs, and writing a figure as PNG.

use anyhow::{Context, Result};
use image::{ImageEncoder, Rgb, RgbImage};
use std::path::Path;

/// Sets one pixel; pixels outside the image are clipped.
pub(super) fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Blends `c` over one pixel with opacity `alpha`; pixels outside the image are clipped.
fn blend_px(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>, alpha: f64) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        let p = img.get_pixel_mut(x as u32, y as u32);
        for k in 0..3 {
            p.0[k] = (alpha * c.0[k] as f64 + (1.0 - alpha) * p.0[k] as f64).round() as u8;
        }
    }
}

/// Fills the rectangle `x0..x1` x `y0..y1`, clipped to the image.
pub(super) fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    for y in y0..y1 {
        for x in x0..x1 {
            put(img, x, y, c);
        }
    }
}

/// Filled disc of radius `r` centred at (`cx`, `cy`), alpha-blended.
pub(super) fn disc(img: &mut RgbImage, cx: f64, cy: f64, r: f64, c: Rgb<u8>, alpha: f64) {
    let (x0, x1) = ((cx - r).floor() as i64, (cx + r).ceil() as i64);
    let (y0, y1) = ((cy - r).floor() as i64, (cy + r).ceil() as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            if dx * dx + dy * dy <= r * r {
                blend_px(img, x, y, c, alpha);
            }
        }
    }
}

/// Encodes `img` as PNG in memory, creates missing parent directories and writes the bytes
/// through [`crate::files::write_atomic`], so a figure appears whole or not at all.
pub(super) fn write_png_atomic(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .context("encoding PNG")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::files::write_atomic(path, &bytes)?;
    Ok(())
}
