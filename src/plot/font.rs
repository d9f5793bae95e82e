//! The figures' text: a built-in 5x7 bitmap font (with two descender rows for `g j p q y ,`),
//! drawn at an integer scale, horizontally or rotated to read upwards. Supported characters:
//! `0-9 A-Z a-z` and `. , - + : = ( ) / % _ ? ` and space; anything else is drawn as `?`.

use super::raster::put;
use image::{Rgb, RgbImage};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
