//! Progress bars for long work, one look across commands: a bar on stderr when asked for
//! (hidden with --quiet, or when output is JSON), with the position, the total and an ETA.

use indicatif::{ProgressBar, ProgressStyle};

/// Templates of the bars the commands draw.
pub const STEPS: &str = "{bar:30} step {pos}/{len}  {msg}  ETA {eta}";
pub const PAIRS: &str = "{bar:40} {pos}/{len} pairs  {per_sec}  ETA {eta}";
pub const ITEMS: &str = "{bar:30} {pos}/{len} {msg}";

/// A bar of `len` units drawn with `template`, or a hidden one when `show` is false.
pub fn bar(len: u64, show: bool, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        b.set_style(style);
    }
    b
}
