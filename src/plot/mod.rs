//! PNG figures drawn with the `image` crate only (no font or plotting crates):
//! a predicted-vs-true scatter plot ([`scatter_png`], [`scatter_png_with_curve`]), a line
//! chart with reference levels ([`line_chart_png`], for learning curves) and a heat-map
//! overlay of a per-pixel quality map on the image it describes ([`quality_map_png`]).
//!
//! Parts: `font` (the built-in bitmap font), `raster` (pixels, shapes, PNG writing), `axes`
//! (frame, ticks, grid and labels every chart shares), then one module per kind of chart:
//! `scatter`, `line_chart`, `quality_map`. Each `*_image` function renders in memory; each
//! `*_png` writes that image through [`crate::files::write_atomic`], creating missing parent
//! directories.

mod axes;
mod font;
mod line_chart;
mod quality_map;
mod raster;
mod scatter;

pub use font::{draw_text, draw_text_vertical, text_height, text_width, FONT_CHARS, TEXT_SCALE};
pub use line_chart::{line_chart_image, line_chart_png, Level, Series, LINE_CHART_SIZE};
pub use quality_map::{colormap, quality_map_image, quality_map_png, LEGEND_HEIGHT, MAP_ALPHA};
pub use scatter::{scatter_image, scatter_png, scatter_png_with_curve, SCATTER_SIZE};

#[cfg(test)]
mod test_files {
    use std::path::{Path, PathBuf};

    /// A fresh, empty directory for one test.
    pub fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("asna-plot-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The names in `dir`, sorted: a written PNG and nothing else (no temporary file).
    pub fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
