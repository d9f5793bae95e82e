//! Column reductions ([G, R, C] -> [G, C]) and the sum of split-K slices.
//!
//! Shader: shaders/reduce.wgsl · Reference and tests: tests/ops/reduce.rs · Gradient rules:
//! `MeanHw`, `SumSquares` in src/autograd/mod.rs

use super::{f32_only, kernel, kernel_f16, R, RW};
use crate::gpu::{f, grid_1d, DType, Gpu, Kernel, Tensor};

// Column sums also serve the scoring pass (the attention's spatial mean), so they run on f16
// too; sums are accumulated in f32 either way.
const REDUCE: Kernel = kernel_f16("reduce.wgsl", "reduce_cols", &[RW, R, R, R]);
const SUM_SPLITS: Kernel = kernel("reduce.wgsl", "sum_splits", &[RW, R, R, R]);

/// What is summed for each element x (and the optional same-shaped y and per-column m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summand {
    Value = 0,
    SquaredDeviation = 1,
    Product = 2,
    ProductWithDeviation = 3,
    Square = 4,
    ProductWhereNegative = 5,
}

/// Rows each thread adds on its own before the tree: short sequential sums keep the f32
/// rounding of long reductions (batch statistics over a whole batch) close to a tree's.
const ROWS_PER_THREAD: usize = 16;
/// The same for sums of gradients: four times fewer workgroups and trees, 1.6-1.9x the
/// bandwidth on lavapipe. A gradient's rounding reaches no kink of the forward pass, so it
/// may round differently from the forward's statistics, which keep their 16-row runs.
const GRADIENT_ROWS_PER_THREAD: usize = 64;

/// `out[g, c] = scale * sum_r summand(x[g, r, c], y[g, r, c], m[c])`; out takes x's element
/// type (y likewise, m is f32).
pub fn columns(
    gpu: &Gpu,
    x: &Tensor,
    summand: Summand,
    y: Option<&Tensor>,
    m: Option<&Tensor>,
    scale: f32,
) -> Tensor {
    columns_in_runs(gpu, x, summand, y, m, scale, ROWS_PER_THREAD)
}

/// `columns` for sums of gradients (bias, batch-norm and broadcast gradients), in longer runs
/// per thread (`GRADIENT_ROWS_PER_THREAD`).
pub fn gradient_columns(
    gpu: &Gpu,
    x: &Tensor,
    summand: Summand,
    y: Option<&Tensor>,
    m: Option<&Tensor>,
    scale: f32,
) -> Tensor {
    columns_in_runs(gpu, x, summand, y, m, scale, GRADIENT_ROWS_PER_THREAD)
}

fn columns_in_runs(
    gpu: &Gpu,
    x: &Tensor,
    summand: Summand,
    y: Option<&Tensor>,
    m: Option<&Tensor>,
    scale: f32,
    run: usize,
) -> Tensor {
    assert_eq!(x.shape.len(), 3, "reduce expects [G, R, C]");
    let (g, r, c) = (x.shape[0], x.shape[1], x.shape[2]);
    // Columns per workgroup: all of them up to 256 (the tensors are channels-last, so a row of
    // columns is contiguous), a power of two so that the 256 threads divide evenly.
    let cw = c.next_power_of_two().min(256);
    let col_groups = c.div_ceil(cw);
    assert!(
        col_groups <= 65535 && g <= 65535,
        "reduce: too many columns or groups"
    );
    let dtype = x.dtype;
    if let Some(y) = y {
        assert_eq!(y.dtype, dtype, "reduce: x and y element types differ");
    }
    if let Some(m) = m {
        f32_only("reduce (per-column m)", &[m]);
    }
    let row_lanes = 256 / cw;
    // f16 partial sums would round; with f16 storage one workgroup sums each whole column.
    let rows_per = if dtype == DType::F16 {
        r.max(1)
    } else {
        (row_lanes * run).max(r.div_ceil(65535))
    };
    let splits = r.div_ceil(rows_per).max(1);
    let dummy = gpu.empty(&[1]);
    let yb = y.map(|t| t.raw()).unwrap_or(dummy.raw());
    let mb = m.map(|t| t.raw()).unwrap_or(dummy.raw());
    let work = (
        2.0 * x.numel() as f64,
        (x.bytes() + y.map_or(0, |t| t.bytes())) as f64,
    );
    // One pass when the rows fit one workgroup; otherwise partial sums per slice of rows,
    // themselves reduced the same way.
    let pass_scale = if splits == 1 { scale } else { 1.0 };
    let out = gpu.empty_as(&[g, splits, c], dtype);
    let p = [
        g as u32,
        r as u32,
        c as u32,
        rows_per as u32,
        splits as u32,
        f(pass_scale),
        cw as u32,
        0,
    ];
    gpu.dispatch_as(
        &REDUCE,
        dtype,
        &[("MODE", summand as u32 as f64)],
        &p,
        &[out.raw(), x.raw(), yb, mb],
        [splits as u32, col_groups as u32, g as u32],
        work,
    );
    if splits == 1 {
        return out.reshape(&[g, c]);
    }
    columns_in_runs(gpu, &out, Summand::Value, None, None, scale, run)
}

/// Sum of all elements of x, as a 1-element tensor; with `Summand::Square`, the squared norm.
pub fn total(gpu: &Gpu, x: &Tensor, summand: Summand) -> Tensor {
    columns(
        gpu,
        &x.reshape(&[1, x.numel(), 1]),
        summand,
        None,
        None,
        1.0,
    )
    .reshape(&[1])
}

/// `out[i] = sum_s parts[s, i]` for parts `[S, L]`.
pub fn sum_splits(gpu: &Gpu, parts: &Tensor) -> Tensor {
    f32_only("sum_splits", &[parts]);
    let (s, len) = (parts.shape[0], parts.shape[1]);
    let out = gpu.empty(&[len]);
    let dummy = gpu.empty(&[1]);
    let p = [1, s as u32, len as u32, 0, 1, f(1.0), 0, 0];
    gpu.dispatch(
        &SUM_SPLITS,
        &[("MODE", 0.0)],
        &p,
        &[out.raw(), parts.raw(), dummy.raw(), dummy.raw()],
        grid_1d(len),
        (s as f64 * len as f64, parts.bytes() as f64),
    );
    out
}
