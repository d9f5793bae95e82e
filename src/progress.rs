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

/// Says on stderr, while the first batches run, that GPU kernels are being compiled, when that
/// takes long, as it does the first time an adapter or driver runs them (later runs find
/// them in the driver's cache): a bar with the kernels ready and left on a terminal, one line
/// otherwise, then a line with the time taken. Nothing is shown when `quiet`, or when the
/// kernels are ready at once. `windows`: the windows of a first batch (see `Model::prepare`).
pub fn show_kernel_compilation(model: &crate::Model, windows: usize, quiet: bool) {
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let adapter = model.gpu().info.name.clone();
    let mut shown: Option<ProgressBar> = None;
    model.prepare(windows, move |ready, total| {
        if quiet {
            return;
        }
        // Shown when the wait is long: past 1.5 s, and 10 s or more at this pace (a warm
        // driver cache readies the model's kernels in a few seconds, a cold one in minutes
        // on a CPU driver).
        let elapsed = started.elapsed().as_secs_f64();
        let projected = elapsed / ready as f64 * total as f64;
        if shown.is_none() && ready < total && elapsed >= 1.5 && projected >= 10.0 {
            let what = format!(
                "compiling GPU kernels for {adapter} (first use of this adapter or driver; \
                 later runs reuse them)"
            );
            shown = Some(if terminal {
                let b = bar(
                    total as u64,
                    true,
                    "{msg}\n{bar:40} {pos}/{len} kernels  ETA {eta}",
                );
                b.set_message(what);
                b
            } else {
                eprintln!("{what}: {ready} of {total} ready, {} left", total - ready);
                ProgressBar::hidden()
            });
        }
        if let Some(b) = &shown {
            b.set_position(ready as u64);
            if ready == total {
                b.finish_and_clear();
                eprintln!(
                    "compiled {total} GPU kernels in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
}
