//! What every chart shares: its frame, the data-to-pixel mapping, "nice" ticks, the grid,
//! the frame with title and axis labels, clipped and dashed line segments, and numbers
//! formatted for labels.

use super::font::{draw_text, draw_text_vertical, text_height, text_width, TEXT_SCALE};
use super::raster::fill_rect;
use image::{Rgb, RgbImage};

/// A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) for about
/// `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let nm = if m < 1.5 {
        1.0
    } else if m < 2.25 {
        2.0
    } else if m < 3.5 {
        2.5
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    nm * p
}

/// Tick values (multiples of the nice step) inside `[lo, hi]`, and the number
/// of decimals needed to print them.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, usize) {
    let step = nice_step(hi - lo, 5.0);
    let mut decimals = (-step.log10().floor()).max(0.0) as usize;
    if ((step / 10f64.powf(step.log10().floor())) - 2.5).abs() < 1e-9 && step < 10.0 {
        decimals += 1;
    }
    let decimals = decimals.min(8);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let v = (first..=last).map(|k| k as f64 * step).collect();
    (v, decimals)
}

/// Compact number for legends: 4 significant digits, scientific notation for
/// very large or very small magnitudes.
pub(super) fn format_num(v: f64) -> String {
    if !v.is_finite() {
        return "nan".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = if a == 0.0 {
        0
    } else {
        (3 - a.log10().floor() as i64).clamp(0, 6) as usize
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Axis range: the finite data range padded by 5% each side (a constant or
/// empty range gets a unit-wide range around its value).
fn axis_range(v: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &a in v.iter().filter(|a| a.is_finite()) {
        lo = lo.min(a);
        hi = hi.max(a);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1e-300) {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A chart's figure: its size and the pixel bounds of its data rectangle; the margins hold
/// the title (top), tick labels and axis labels (left and bottom).
pub(super) struct Frame {
    pub width: u32,
    pub height: u32,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    /// A white figure of the frame's size.
    pub fn blank(&self) -> RgbImage {
        RgbImage::from_pixel(self.width, self.height, Rgb([255, 255, 255]))
    }

    /// Axes mapping the data ranges (each padded as [`axis_range`] does) onto the data
    /// rectangle.
    pub fn axes(&self, xs: &[f64], ys: &[f64]) -> Axes {
        let (x0, x1) = axis_range(xs);
        let (y0, y1) = axis_range(ys);
        Axes {
            x0,
            x1,
            y0,
            y1,
            l: self.left,
            r: self.right,
            t: self.top,
            b: self.bottom,
        }
    }
}

/// Data-to-pixel mapping: data ranges onto the data rectangle (pixel bounds
/// left, right, top, bottom).
pub(super) struct Axes {
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
    pub l: f64,
    pub r: f64,
    pub t: f64,
    pub b: f64,
}

impl Axes {
    pub fn px(&self, x: f64) -> f64 {
        self.l + (x - self.x0) / (self.x1 - self.x0) * (self.r - self.l)
    }
    pub fn py(&self, y: f64) -> f64 {
        self.b - (y - self.y0) / (self.y1 - self.y0) * (self.b - self.t)
    }
    pub fn inside(&self, qx: f64, qy: f64) -> bool {
        (self.l..=self.r).contains(&qx) && (self.t..=self.b).contains(&qy)
    }
}

/// Light grid lines at about 5 "nice" ticks per axis, tick marks and
/// numeric tick labels.
pub(super) fn draw_grid(img: &mut RgbImage, ax: &Axes) {
    let black = Rgb([0, 0, 0]);
    let grid = Rgb([225, 225, 225]);
    let (l, r, t, b) = (ax.l as i64, ax.r as i64, ax.t as i64, ax.b as i64);
    let (xt, xd) = ticks(ax.x0, ax.x1);
    for &v in &xt {
        let p = ax.px(v).round() as i64;
        fill_rect(img, p, t, p + 1, b, grid);
        fill_rect(img, p, b, p + 1, b + 6, black);
        let label = format!("{v:.xd$}");
        let w = text_width(&label, TEXT_SCALE) as i64;
        draw_text(img, p - w / 2, b + 10, &label, TEXT_SCALE, black);
    }
    let (yt, yd) = ticks(ax.y0, ax.y1);
    for &v in &yt {
        let p = ax.py(v).round() as i64;
        fill_rect(img, l, p, r, p + 1, grid);
        fill_rect(img, l - 6, p, l, p + 1, black);
        let label = format!("{v:.yd$}");
        let w = text_width(&label, TEXT_SCALE) as i64;
        draw_text(
            img,
            l - 10 - w,
            p - 7 * TEXT_SCALE as i64 / 2,
            &label,
            TEXT_SCALE,
            black,
        );
    }
}

/// The data rectangle's frame, the title centred on top of the figure and
/// the axis labels (the y label reads upwards).
pub(super) fn draw_frame_and_labels(
    img: &mut RgbImage,
    ax: &Axes,
    title: &str,
    x_label: &str,
    y_label: &str,
) {
    let black = Rgb([0, 0, 0]);
    let (l, r, t, b) = (ax.l as i64, ax.r as i64, ax.t as i64, ax.b as i64);
    let th = text_height(TEXT_SCALE) as i64;
    fill_rect(img, l, t, r + 1, t + 1, black);
    fill_rect(img, l, b, r + 1, b + 1, black);
    fill_rect(img, l, t, l + 1, b + 1, black);
    fill_rect(img, r, t, r + 1, b + 1, black);
    let w = text_width(title, TEXT_SCALE) as i64;
    draw_text(
        img,
        (img.width() as i64 - w) / 2,
        (t - th) / 2,
        title,
        TEXT_SCALE,
        black,
    );
    let w = text_width(x_label, TEXT_SCALE) as i64;
    draw_text(
        img,
        (l + r - w) / 2,
        b + 10 + th + 14,
        x_label,
        TEXT_SCALE,
        black,
    );
    let w = text_width(y_label, TEXT_SCALE) as i64;
    draw_text_vertical(img, 12, (t + b - w) / 2, y_label, TEXT_SCALE, black);
}

/// A 2-pixel line from `p` to `q` (pixel coordinates), clipped to the data
/// rectangle; `dash` > 0 draws dashes and gaps of that many pixels.
pub(super) fn draw_segment(
    img: &mut RgbImage,
    ax: &Axes,
    p: (f64, f64),
    q: (f64, f64),
    c: Rgb<u8>,
    dash: f64,
) {
    let n = ((q.0 - p.0).abs().max((q.1 - p.1).abs()).ceil() as usize).clamp(1, 4000);
    for i in 0..=n {
        let u = i as f64 / n as f64;
        if dash > 0.0 && (i as f64 / dash) as u64 % 2 == 1 {
            continue;
        }
        let (qx, qy) = (p.0 + u * (q.0 - p.0), p.1 + u * (q.1 - p.1));
        if ax.inside(qx, qy) {
            let (ix, iy) = (qx.round() as i64, qy.round() as i64);
            fill_rect(img, ix - 1, iy - 1, ix + 1, iy + 1, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(ticks(-0.5, 10.5), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 0));
        let (t, d) = ticks(0.0, 1.0);
        assert_eq!((t.len(), d), (6, 1));
        assert_eq!(ticks(0.0, 12.0).0, vec![0.0, 2.5, 5.0, 7.5, 10.0]);
        assert_eq!(ticks(0.0, 12.0).1, 1);
        assert_eq!(format_num(0.123456), "0.1235");
        assert_eq!(format_num(1381.05), "1381");
        assert_eq!(format_num(-2.5), "-2.5");
        assert_eq!(format_num(0.0), "0");
        assert_eq!(format_num(2.5e-6), "2.50e-6");
    }
}
