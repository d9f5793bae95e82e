//! The predicted-vs-true scatter plot: semi-transparent points and an optional fitted curve.

use super::axes::{draw_frame_and_labels, draw_grid, draw_segment, Frame};
use super::raster::{disc, write_png_atomic};
use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Size of the scatter figure (square).
pub const SCATTER_SIZE: u32 = 800;
const FRAME: Frame = Frame {
    width: SCATTER_SIZE,
    height: SCATTER_SIZE,
    left: 110.0,
    right: 770.0,
    top: 60.0,
    bottom: 700.0,
};
/// Colour and opacity of the scatter points.
const POINT_COLOR: Rgb<u8> = Rgb([31, 119, 180]);
const POINT_ALPHA: f64 = 0.45;
const POINT_RADIUS: f64 = 4.0;
const CURVE_COLOR: Rgb<u8> = Rgb([214, 39, 40]);

/// Predicted-vs-true scatter plot without a fitted curve; see
/// [`scatter_png_with_curve`].
pub fn scatter_png(
    path: &Path,
    x: &[f64],
    y: &[f64],
    x_label: &str,
    y_label: &str,
    title: &str,
) -> Result<()> {
    scatter_png_with_curve(path, x, y, x_label, y_label, title, None)
}

/// 800x800 scatter plot of `y` against `x` (e.g. MOS against predicted
/// score), written atomically as PNG. See [`scatter_image`].
pub fn scatter_png_with_curve(
    path: &Path,
    x: &[f64],
    y: &[f64],
    x_label: &str,
    y_label: &str,
    title: &str,
    curve: Option<&dyn Fn(f64) -> f64>,
) -> Result<()> {
    let img = scatter_image(x, y, x_label, y_label, title, curve)?;
    write_png_atomic(path, &img)
}

/// Renders the scatter plot in memory: white 800x800 figure, title centred on
/// top, data rectangle with light grid lines at about 5 "nice" ticks per axis
/// with numeric labels, axis labels (the y label reads upwards), points as
/// semi-transparent discs (overlaps get darker; non-finite pairs skipped) and,
/// if `curve` is given, `curve(x)` drawn as a red line over the x range
/// (clipped to the data rectangle; e.g. a fitted
/// [`crate::metrics::Logistic4`]: `Some(&|v| fit.eval(v))`).
///
/// Axis ranges are the data ranges padded by 5% on each side.
/// Errors if `x` and `y` have different lengths.
pub fn scatter_image(
    x: &[f64],
    y: &[f64],
    x_label: &str,
    y_label: &str,
    title: &str,
    curve: Option<&dyn Fn(f64) -> f64>,
) -> Result<RgbImage> {
    if x.len() != y.len() {
        bail!("scatter: x has {} values but y has {}", x.len(), y.len());
    }
    let (fx, fy): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (*a, *b))
        .unzip();
    let ax = FRAME.axes(&fx, &fy);
    let mut img = FRAME.blank();
    draw_grid(&mut img, &ax);

    // Points.
    for (&a, &c) in fx.iter().zip(&fy) {
        disc(
            &mut img,
            ax.px(a),
            ax.py(c),
            POINT_RADIUS,
            POINT_COLOR,
            POINT_ALPHA,
        );
    }

    // Fitted curve, as short segments between samples, clipped to the plot.
    if let Some(f) = curve {
        let steps = 4 * (ax.r - ax.l) as usize;
        let mut prev: Option<(f64, f64)> = None;
        for k in 0..=steps {
            let xv = ax.x0 + (ax.x1 - ax.x0) * k as f64 / steps as f64;
            let yv = f(xv);
            if !yv.is_finite() {
                prev = None;
                continue;
            }
            let cur = (ax.px(xv), ax.py(yv));
            if let Some(p) = prev {
                draw_segment(&mut img, &ax, p, cur, CURVE_COLOR, 0.0);
            }
            prev = Some(cur);
        }
    }

    draw_frame_and_labels(&mut img, &ax, title, x_label, y_label);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_files::{listing, tmp_dir};

    #[test]
    fn scatter_png_file_and_point_position() {
        let dir = tmp_dir("scatter");
        let path = dir.join("scatter.png");
        // x range [1.3, 7.7] -> axis [0.98, 8.02]; y range [2.3, 9.7] -> axis [1.93, 10.07]
        // (ticks at multiples of 2 in both, so the points are off the grid lines).
        let x = [1.3, 7.7];
        let y = [2.3, 9.7];
        scatter_png_with_curve(
            &path,
            &x,
            &y,
            "predicted",
            "MOS",
            "ASNA  PLCC 1.000",
            Some(&|v| 0.5 * v + 3.0),
        )
        .unwrap();
        assert_eq!(listing(&dir), ["scatter.png"]);
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (800, 800));
        // Plot rectangle x 110..770, y 60..700 (pixels).
        let px: f64 = 110.0 + (1.3 - 0.98) / (8.02 - 0.98) * 660.0; // 140.0
        let py: f64 = 700.0 - (2.3 - 1.93) / (10.07 - 1.93) * 640.0; // 670.9
        let want = [0, 1, 2].map(|k| (0.45 * POINT_COLOR.0[k] as f64 + 0.55 * 255.0).round() as u8);
        assert_eq!(img.get_pixel(px.round() as u32, py.round() as u32).0, want);
        // The other point, top right.
        let px2: f64 = 110.0 + (7.7 - 0.98) / (8.02 - 0.98) * 660.0;
        let py2: f64 = 700.0 - (9.7 - 1.93) / (10.07 - 1.93) * 640.0;
        assert_eq!(
            img.get_pixel(px2.round() as u32, py2.round() as u32).0,
            want
        );
        // Away from the points the plot area is background.
        assert_eq!(
            img.get_pixel(px.round() as u32 + 10, py.round() as u32 - 10)
                .0,
            [255, 255, 255]
        );
        // The curve y = x / 2 + 3 passes through x = 5 -> y = 5.5.
        let cx = (110.0 + (5.0 - 0.98) / (8.02 - 0.98) * 660.0f64).round() as u32;
        let cy = (700.0 - (5.5 - 1.93) / (10.07 - 1.93) * 640.0f64).round() as u32;
        let near = (cy - 2..=cy + 2).any(|yy| img.get_pixel(cx, yy).0 == CURVE_COLOR.0);
        assert!(near);
        // Mismatched lengths are an error, degenerate data are not.
        assert!(scatter_png(&path, &[1.0], &[], "", "", "").is_err());
        scatter_png(
            &path,
            &[f64::NAN, 2.0, 2.0],
            &[1.0, 1.0, 1.0],
            "x",
            "y",
            "constant",
        )
        .unwrap();
        scatter_png(&path, &[], &[], "x", "y", "empty").unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }
}
