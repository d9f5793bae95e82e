//! PNG figures drawn with the `image` crate only (no font or plotting crates):
//! a predicted-vs-true scatter plot ([`scatter_png`],
//! [`scatter_png_with_curve`]), a line chart with reference levels
//! ([`line_chart_png`], for learning curves) and a heat-map overlay of a
//! per-pixel quality map on the image it describes ([`quality_map_png`]).
//!
//! Text uses a built-in 5x7 bitmap font (with two descender rows for
//! `g j p q y ,`) drawn at 2x scale. Supported characters: `0-9 A-Z a-z` and
//! `. , - + : = ( ) / % _ ? ` and space; anything else is drawn as `?`.
//!
//! Every PNG is written atomically: encoded in memory, then written through
//! `files::write_atomic` (a temporary file in the same directory, renamed over `path`).
//! Missing parent directories are created.

use anyhow::{bail, Context, Result};
use image::{ImageEncoder, Rgb, RgbImage};
use std::path::Path;

// ---------------------------------------------------------------- font ----

/// Glyph cell: 5 columns, 9 rows (rows 0..7 above the baseline, 7..9 for
/// descenders).
const GLYPH_W: u32 = 5;
const GLYPH_H: u32 = 9;
/// Default text scale (each font pixel becomes a 2x2 block).
pub const TEXT_SCALE: u32 = 2;

/// Every character the font draws (others are drawn as `?`).
pub const FONT_CHARS: &str =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.,-+:=()/%_? ";

/// Rows of the glyph for `c` (`#` = ink); fewer than [`GLYPH_H`] rows means
/// the rest are blank. `None` for unsupported characters.
fn glyph(c: char) -> Option<&'static [&'static str]> {
    Some(match c {
        '0' => &[
            " ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### ",
        ],
        '1' => &[
            "  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        '2' => &[
            " ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####",
        ],
        '3' => &[
            "#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### ",
        ],
        '4' => &[
            "   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # ",
        ],
        '5' => &[
            "#####", "#    ", "#### ", "    #", "    #", "#   #", " ### ",
        ],
        '6' => &[
            "  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### ",
        ],
        '7' => &[
            "#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   ",
        ],
        '8' => &[
            " ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### ",
        ],
        '9' => &[
            " ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  ",
        ],
        'A' => &[
            " ### ", "#   #", "#   #", "#   #", "#####", "#   #", "#   #",
        ],
        'B' => &[
            "#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### ",
        ],
        'C' => &[
            " ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### ",
        ],
        'D' => &[
            "###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  ",
        ],
        'E' => &[
            "#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####",
        ],
        'F' => &[
            "#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    ",
        ],
        'G' => &[
            " ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####",
        ],
        'H' => &[
            "#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #",
        ],
        'I' => &[
            " ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'J' => &[
            "  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  ",
        ],
        'K' => &[
            "#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #",
        ],
        'L' => &[
            "#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####",
        ],
        'M' => &[
            "#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #",
        ],
        'N' => &[
            "#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #",
        ],
        'O' => &[
            " ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### ",
        ],
        'P' => &[
            "#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    ",
        ],
        'Q' => &[
            " ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #",
        ],
        'R' => &[
            "#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #",
        ],
        'S' => &[
            " ####", "#    ", "#    ", " ### ", "    #", "    #", "#### ",
        ],
        'T' => &[
            "#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ",
        ],
        'U' => &[
            "#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### ",
        ],
        'V' => &[
            "#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  ",
        ],
        'W' => &[
            "#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # ",
        ],
        'X' => &[
            "#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #",
        ],
        'Y' => &[
            "#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  ",
        ],
        'Z' => &[
            "#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####",
        ],
        'a' => &[
            "     ", "     ", " ### ", "    #", " ####", "#   #", " ####",
        ],
        'b' => &[
            "#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#### ",
        ],
        'c' => &[
            "     ", "     ", " ### ", "#    ", "#    ", "#   #", " ### ",
        ],
        'd' => &[
            "    #", "    #", " ## #", "#  ##", "#   #", "#   #", " ####",
        ],
        'e' => &[
            "     ", "     ", " ### ", "#   #", "#####", "#    ", " ### ",
        ],
        'f' => &[
            "  ## ", " #  #", " #   ", "###  ", " #   ", " #   ", " #   ",
        ],
        'g' => &[
            "     ", "     ", " ####", "#   #", "#   #", "#   #", " ####", "    #", " ### ",
        ],
        'h' => &[
            "#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'i' => &[
            "  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'j' => &[
            "   # ", "     ", "  ## ", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  ",
        ],
        'k' => &[
            "#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # ",
        ],
        'l' => &[
            " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'm' => &[
            "     ", "     ", "## # ", "# # #", "# # #", "# # #", "# # #",
        ],
        'n' => &[
            "     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'o' => &[
            "     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### ",
        ],
        'p' => &[
            "     ", "     ", "#### ", "#   #", "#   #", "#   #", "#### ", "#    ", "#    ",
        ],
        'q' => &[
            "     ", "     ", " ####", "#   #", "#   #", "#   #", " ####", "    #", "    #",
        ],
        'r' => &[
            "     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    ",
        ],
        's' => &[
            "     ", "     ", " ####", "#    ", " ### ", "    #", "#### ",
        ],
        't' => &[
            " #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## ",
        ],
        'u' => &[
            "     ", "     ", "#   #", "#   #", "#   #", "#  ##", " ## #",
        ],
        'v' => &[
            "     ", "     ", "#   #", "#   #", "#   #", " # # ", "  #  ",
        ],
        'w' => &[
            "     ", "     ", "#   #", "#   #", "# # #", "# # #", " # # ",
        ],
        'x' => &[
            "     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #",
        ],
        'y' => &[
            "     ", "     ", "#   #", "#   #", "#   #", "#   #", " ####", "    #", " ### ",
        ],
        'z' => &[
            "     ", "     ", "#####", "   # ", "  #  ", " #   ", "#####",
        ],
        '.' => &[
            "     ", "     ", "     ", "     ", "     ", " ##  ", " ##  ",
        ],
        ',' => &[
            "     ", "     ", "     ", "     ", "     ", " ##  ", " ##  ", "  #  ", " #   ",
        ],
        '-' => &[
            "     ", "     ", "     ", "#####", "     ", "     ", "     ",
        ],
        '+' => &[
            "     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     ",
        ],
        ':' => &[
            "     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     ",
        ],
        '=' => &[
            "     ", "     ", "#####", "     ", "#####", "     ", "     ",
        ],
        '(' => &[
            "   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # ",
        ],
        ')' => &[
            " #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   ",
        ],
        '/' => &[
            "     ", "    #", "   # ", "  #  ", " #   ", "#    ", "     ",
        ],
        '%' => &[
            "##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##",
        ],
        '_' => &[
            "     ", "     ", "     ", "     ", "     ", "     ", "     ", "#####",
        ],
        '?' => &[
            " ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  ",
        ],
        ' ' => &[],
        _ => return None,
    })
}

/// Width in pixels of `text` drawn at `scale` (one blank font column between
/// characters, none after the last).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 {
        0
    } else {
        (n * (GLYPH_W + 1) - 1) * scale
    }
}

/// Height in pixels of a line of text at `scale` (including descenders).
pub fn text_height(scale: u32) -> u32 {
    GLYPH_H * scale
}

/// Draws `text` with its top-left corner at (`x`, `y`); pixels outside the
/// image are clipped. `vertical` rotates the text 90 degrees
/// counter-clockwise (reading bottom to top), with (`x`, `y`) the top-left
/// of the rotated box.
fn draw_text_impl(
    img: &mut RgbImage,
    x: i64,
    y: i64,
    text: &str,
    scale: u32,
    color: Rgb<u8>,
    vertical: bool,
) {
    let s = scale as i64;
    let tw = text_width(text, scale) as i64;
    for (ci, c) in text.chars().enumerate() {
        let rows = glyph(c).or_else(|| glyph('?')).unwrap_or(&[]);
        for (gy, row) in rows.iter().enumerate() {
            for (gx, ch) in row.bytes().enumerate() {
                if ch != b'#' {
                    continue;
                }
                // Top-left of this font pixel in horizontal text coordinates.
                let hx = (ci as i64 * (GLYPH_W as i64 + 1) + gx as i64) * s;
                let hy = gy as i64 * s;
                for dy in 0..s {
                    for dx in 0..s {
                        let (u, v) = (hx + dx, hy + dy);
                        let (px, py) = if vertical {
                            (x + v, y + tw - 1 - u)
                        } else {
                            (x + u, y + v)
                        };
                        put(img, px, py, color);
                    }
                }
            }
        }
    }
}

/// Draws `text` horizontally with its top-left corner at (`x`, `y`).
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: Rgb<u8>) {
    draw_text_impl(img, x, y, text, scale, color, false);
}

/// Draws `text` rotated 90 degrees counter-clockwise (reading upwards); the
/// rotated box has its top-left corner at (`x`, `y`).
pub fn draw_text_vertical(
    img: &mut RgbImage,
    x: i64,
    y: i64,
    text: &str,
    scale: u32,
    color: Rgb<u8>,
) {
    draw_text_impl(img, x, y, text, scale, color, true);
}

// ------------------------------------------------------- raster helpers ----

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn blend_px(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>, alpha: f64) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        let p = img.get_pixel_mut(x as u32, y as u32);
        for k in 0..3 {
            p.0[k] = (alpha * c.0[k] as f64 + (1.0 - alpha) * p.0[k] as f64).round() as u8;
        }
    }
}

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    for y in y0..y1 {
        for x in x0..x1 {
            put(img, x, y, c);
        }
    }
}

/// Filled disc of radius `r` centred at (`cx`, `cy`), alpha-blended.
fn disc(img: &mut RgbImage, cx: f64, cy: f64, r: f64, c: Rgb<u8>, alpha: f64) {
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

/// Encodes `img` as PNG and writes it atomically (`files::write_atomic`).
fn write_png_atomic(path: &Path, img: &RgbImage) -> Result<()> {
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

// -------------------------------------------------------------- numbers ----

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
fn format_num(v: f64) -> String {
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

// -------------------------------------------------------------- scatter ----

/// Size of the scatter figure.
pub const SCATTER_SIZE: u32 = 800;
// Plot area (pixel bounds of the data rectangle) in the 800x800 figure.
const PLOT_L: f64 = 110.0;
const PLOT_R: f64 = 770.0;
const PLOT_T: f64 = 60.0;
const PLOT_B: f64 = 700.0;
/// Colour and opacity of the scatter points.
const POINT_COLOR: Rgb<u8> = Rgb([31, 119, 180]);
const POINT_ALPHA: f64 = 0.45;
const POINT_RADIUS: f64 = 4.0;
const CURVE_COLOR: Rgb<u8> = Rgb([214, 39, 40]);

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

/// Data-to-pixel mapping: data ranges onto the data rectangle (pixel bounds
/// left, right, top, bottom).
struct Axes {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    l: f64,
    r: f64,
    t: f64,
    b: f64,
}

impl Axes {
    fn px(&self, x: f64) -> f64 {
        self.l + (x - self.x0) / (self.x1 - self.x0) * (self.r - self.l)
    }
    fn py(&self, y: f64) -> f64 {
        self.b - (y - self.y0) / (self.y1 - self.y0) * (self.b - self.t)
    }
    fn inside(&self, qx: f64, qy: f64) -> bool {
        (self.l..=self.r).contains(&qx) && (self.t..=self.b).contains(&qy)
    }
}

/// Light grid lines at about 5 "nice" ticks per axis, tick marks and
/// numeric tick labels.
fn draw_grid(img: &mut RgbImage, ax: &Axes) {
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
fn draw_frame_and_labels(img: &mut RgbImage, ax: &Axes, title: &str, x_label: &str, y_label: &str) {
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
fn draw_segment(
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
    let (x0, x1) = axis_range(&fx);
    let (y0, y1) = axis_range(&fy);
    let ax = Axes {
        x0,
        x1,
        y0,
        y1,
        l: PLOT_L,
        r: PLOT_R,
        t: PLOT_T,
        b: PLOT_B,
    };
    let s = SCATTER_SIZE;
    let mut img = RgbImage::from_pixel(s, s, Rgb([255, 255, 255]));
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
        let steps = 4 * (PLOT_R - PLOT_L) as usize;
        let mut prev: Option<(f64, f64)> = None;
        for k in 0..=steps {
            let xv = x0 + (x1 - x0) * k as f64 / steps as f64;
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

// ----------------------------------------------------------- line chart ----

/// Size (width, height) of the line chart.
pub const LINE_CHART_SIZE: (u32, u32) = (960, 640);
// Data rectangle of the line chart; the legend goes below the x label.
const LINE_L: f64 = 110.0;
const LINE_R: f64 = 930.0;
const LINE_T: f64 = 60.0;
const LINE_B: f64 = 520.0;
const LINE_MARKER_RADIUS: f64 = 3.5;
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
    let (x0, x1) = axis_range(&xs);
    let (y0, y1) = axis_range(&ys);
    let ax = Axes {
        x0,
        x1,
        y0,
        y1,
        l: LINE_L,
        r: LINE_R,
        t: LINE_T,
        b: LINE_B,
    };
    let (w, h) = LINE_CHART_SIZE;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
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
            disc(&mut img, cur.0, cur.1, LINE_MARKER_RADIUS, s.color, 1.0);
            prev = Some(cur);
        }
    }
    draw_frame_and_labels(&mut img, &ax, title, x_label, y_label);

    // Legend: a swatch and the label of every series, then every level.
    let th = text_height(TEXT_SCALE) as i64;
    let y = LINE_B as i64 + 10 + th + 14 + th + 18;
    let mut x = LINE_L as i64;
    let entries = series
        .iter()
        .map(|s| (s.label, s.color, 0.0))
        .chain(levels.iter().map(|l| (l.label, l.color, DASH / 2.0)));
    let whole = Axes {
        l: 0.0,
        r: w as f64,
        t: 0.0,
        b: h as f64,
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

// ---------------------------------------------------------- quality map ----

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
    use std::path::PathBuf;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asna-plot-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The names in `dir`, sorted: a written PNG and nothing else (no temporary file).
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn font_covers_every_supported_char() {
        for c in FONT_CHARS.chars() {
            let g = glyph(c).unwrap_or_else(|| panic!("no glyph for {c:?}"));
            assert!(g.len() <= GLYPH_H as usize, "{c:?}");
            for row in g {
                assert_eq!(row.len(), GLYPH_W as usize, "{c:?}");
                assert!(row.bytes().all(|b| b == b' ' || b == b'#'), "{c:?}");
            }
            assert!(
                c == ' ' || g.iter().any(|r| r.contains('#')),
                "{c:?} is blank"
            );
        }
        assert!(glyph('@').is_none());
        // Drawing everything (also partly outside the image, and rotated) must not panic.
        let mut img = RgbImage::from_pixel(1000, 60, Rgb([255, 255, 255]));
        draw_text(&mut img, 2, 2, FONT_CHARS, TEXT_SCALE, Rgb([0, 0, 0]));
        draw_text(&mut img, -7, 50, FONT_CHARS, 3, Rgb([0, 0, 0]));
        draw_text_vertical(&mut img, 990, -5, "Ag(%)@", TEXT_SCALE, Rgb([0, 0, 0]));
        let w = text_width(FONT_CHARS, TEXT_SCALE);
        assert_eq!(w, (FONT_CHARS.len() as u32 * 6 - 1) * 2);
        // Ink lands inside the advertised text box only.
        let inked: Vec<(u32, u32)> = (0..980)
            .flat_map(|x| (0..50).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 == [0, 0, 0])
            .collect();
        assert!(!inked.is_empty());
        assert!(inked.iter().all(|&(x, y)| x >= 2
            && x < 2 + w
            && y >= 2
            && y < 2 + text_height(TEXT_SCALE)
            || y >= 40));
        // Unsupported characters are drawn as '?'.
        let mut a = RgbImage::from_pixel(12, 20, Rgb([255, 255, 255]));
        let mut b = a.clone();
        draw_text(&mut a, 0, 0, "@", TEXT_SCALE, Rgb([0, 0, 0]));
        draw_text(&mut b, 0, 0, "?", TEXT_SCALE, Rgb([0, 0, 0]));
        assert_eq!(a, b);
    }

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
