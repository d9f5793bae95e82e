//! The line chart of learning curves: series of points joined by lines, horizontal dashed
//! reference levels, and a legend below the x label.

use super::axes::{draw_frame_and_labels, draw_grid, draw_segment, Axes, Frame};
use super::font::{draw_text, text_height, text_width, TEXT_SCALE};
use super::raster::{disc, write_png_atomic};
use anyhow::{bail, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Size (width, height) of the line chart.
pub const LINE_CHART_SIZE: (u32, u32) = (FRAME.width, FRAME.height);
// The data rectangle leaves room below the x label for the legend.
const FRAME: Frame = Frame {
    width: 960,
    height: 640,
    left: 110.0,
    right: 930.0,
    top: 60.0,
    bottom: 520.0,
};
const MARKER_RADIUS: f64 = 3.5;
/// Length of a level's dashes and of the gaps between them, in pixels.
const DASH: f64 = 8.0;

/// A curve of the line chart: (x, y) points in x order; a non-finite y
/// leaves a gap.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [(f64, f64)],
    pub color: Rgb<u8>,
}

/// A horizontal dashed line of the line chart (a reference level).
pub struct Level<'a> {
    pub label: &'a str,
    pub y: f64,
    pub color: Rgb<u8>,
}

/// Line chart of `series` (lines with a marker at every point) and
/// horizontal dashed `levels` (non-finite ones left out), written atomically
/// as PNG; see [`line_chart_image`].
pub fn line_chart_png(
    path: &Path,
    series: &[Series],
    levels: &[Level],
    x_label: &str,
    y_label: &str,
    title: &str,
) -> Result<()> {
    let img = line_chart_image(series, levels, x_label, y_label, title)?;
    write_png_atomic(path, &img)
}

/// Renders the line chart in memory: white figure of [`LINE_CHART_SIZE`],
/// grid, ticks, frame and labels as the scatter plot, the y range covering
/// every finite point and level (padded by 5%), and a legend of every series
/// and level below the x label. Errors when no series has a finite point.
pub fn line_chart_image(
    series: &[Series],
    levels: &[Level],
    x_label: &str,
    y_label: &str,
    title: &str,
) -> Result<RgbImage> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).map(|p| p.0))
        .collect();
    if xs.is_empty() {
        bail!("line chart: no finite point to draw");
    }
    let levels: Vec<&Level> = levels.iter().filter(|l| l.y.is_finite()).collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).map(|p| p.1))
        .chain(levels.iter().map(|l| l.y))
        .collect();
    let ax = FRAME.axes(&xs, &ys);
    let mut img = FRAME.blank();
    draw_grid(&mut img, &ax);
    for l in &levels {
        let y = ax.py(l.y);
        draw_segment(&mut img, &ax, (ax.l, y), (ax.r, y), l.color, DASH);
    }
    for s in series {
        let mut prev: Option<(f64, f64)> = None;
        for p in s.points {
            if !(p.0.is_finite() && p.1.is_finite()) {
                prev = None;
                continue;
            }
            let cur = (ax.px(p.0), ax.py(p.1));
            if let Some(q) = prev {
                draw_segment(&mut img, &ax, q, cur, s.color, 0.0);
            }
            disc(&mut img, cur.0, cur.1, MARKER_RADIUS, s.color, 1.0);
            prev = Some(cur);
        }
    }
    draw_frame_and_labels(&mut img, &ax, title, x_label, y_label);

    // Legend: a swatch and the label of every series, then every level.
    let th = text_height(TEXT_SCALE) as i64;
    let y = ax.b as i64 + 10 + th + 14 + th + 18;
    let mut x = ax.l as i64;
    let entries = series
        .iter()
        .map(|s| (s.label, s.color, 0.0))
        .chain(levels.iter().map(|l| (l.label, l.color, DASH / 2.0)));
    let whole = Axes {
        l: 0.0,
        r: FRAME.width as f64,
        t: 0.0,
        b: FRAME.height as f64,
        ..ax
    };
    for (label, color, dash) in entries {
        let mid = (y + th / 2) as f64;
        draw_segment(
            &mut img,
            &whole,
            (x as f64, mid),
            (x as f64 + 28.0, mid),
            color,
            dash,
        );
        draw_text(&mut img, x + 36, y, label, TEXT_SCALE, Rgb([0, 0, 0]));
        x += 36 + text_width(label, TEXT_SCALE) as i64 + 28;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_points_levels_and_gaps() {
        let blue = Rgb([31, 119, 180]);
        let green = Rgb([44, 160, 44]);
        // x over [0, 100] -> axis [-5, 105]; y over [0.2, 0.8] (with the level) ->
        // axis [0.17, 0.83].
        let pts = [(0.0, 0.2), (50.0, f64::NAN), (100.0, 0.6)];
        let img = line_chart_image(
            &[Series {
                label: "SRCC",
                points: &pts,
                color: blue,
            }],
            &[
                Level {
                    label: "PSNR",
                    y: 0.8,
                    color: green,
                },
                Level {
                    label: "nan",
                    y: f64::NAN,
                    color: green,
                },
            ],
            "step",
            "correlation",
            "learning curve",
        )
        .unwrap();
        assert_eq!(img.dimensions(), LINE_CHART_SIZE);
        let px = |x: f64| (110.0 + (x + 5.0) / 110.0 * 820.0).round() as u32;
        let py = |y: f64| (520.0 - (y - 0.17) / 0.66 * 460.0).round() as u32;
        // Markers at the finite points; no line across the gap.
        assert_eq!(img.get_pixel(px(0.0), py(0.2)).0, blue.0);
        assert_eq!(img.get_pixel(px(100.0), py(0.6)).0, blue.0);
        assert_ne!(img.get_pixel(px(50.0), py(0.4)).0, blue.0);
        // The level is a dashed line: some of its row in the level's colour, not all.
        let row: Vec<bool> = (px(0.0)..px(100.0))
            .map(|x| (0..=1).any(|d| img.get_pixel(x, py(0.8) - d).0 == green.0))
            .collect();
        let on = row.iter().filter(|b| **b).count();
        assert!(
            on > row.len() / 4 && on < row.len() * 3 / 4,
            "{on} of {}",
            row.len()
        );
        // Nothing finite to draw is an error.
        let none = [(1.0, f64::NAN)];
        assert!(line_chart_image(
            &[Series {
                label: "x",
                points: &none,
                color: blue
            }],
            &[],
            "",
            "",
            ""
        )
        .is_err());
    }
}
