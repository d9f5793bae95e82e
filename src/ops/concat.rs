//! Concatenation along channels (the last axis) and its adjoint, the split.
//!
//! Shader: shaders/concat.wgsl · Reference and tests: tests/ops/concat.rs · Gradient rule:
//! `Concat` in src/autograd/mod.rs

use super::{kernel_f16, same_dtype, R, RW};
use crate::gpu::{grid_1d, Gpu, Kernel, Tensor};

// A plain copy: the same kernel for both directions and both element types.
const COPY_CHANNELS: Kernel = kernel_f16("concat.wgsl", "copy_channels", &[RW, R]);
const UPSAMPLE_ABSDIFF_CONCAT: Kernel =
    kernel_f16("concat.wgsl", "upsample_absdiff_concat", &[RW, R, R]);
const UPSAMPLE_ABSDIFF_CONCAT4: Kernel =
    kernel_f16("concat.wgsl", "upsample_absdiff_concat4", &[RW, R, R]);

fn copy(gpu: &Gpu, dst: &Tensor, dst_off: usize, src: &Tensor, src_off: usize, count: usize) {
    let (sc, dc) = (src.channels(), dst.channels());
    let rows = src.numel() / sc;
    assert_eq!(
        rows,
        dst.numel() / dc,
        "concat: row counts differ: {:?} vs {:?}",
        src.shape,
        dst.shape
    );
    let p = [
        rows as u32,
        sc as u32,
        dc as u32,
        src_off as u32,
        dst_off as u32,
        count as u32,
        0,
        0,
    ];
    let dtype = same_dtype("concat", &[dst, src]);
    if rows * count == 0 {
        return;
    }
    // Four channels per invocation when the count allows (a run never crosses a row).
    let per = if count % 4 == 0 { 4 } else { 1 };
    gpu.dispatch_as(
        &COPY_CHANNELS,
        dtype,
        &[("COUNT", count as f64), ("PER", per as f64)],
        &p,
        &[dst.raw(), src.raw()],
        grid_1d(rows * count / per),
        (
            0.0,
            2.0 * (rows as u64 * count as u64 * dtype.size()) as f64,
        ),
    );
}

/// Channel concatenation of tensors with equal leading axes, in order.
pub fn concat(gpu: &Gpu, parts: &[&Tensor]) -> Tensor {
    let mut shape = parts[0].shape.clone();
    let total: usize = parts.iter().map(|t| t.channels()).sum();
    *shape.last_mut().unwrap() = total;
    let dtype = same_dtype("concat", parts);
    let out = gpu.empty_as(&shape, dtype);
    let mut off = 0;
    for t in parts {
        copy(gpu, &out, off, t, 0, t.channels());
        off += t.channels();
    }
    out
}

/// Splits dY of a concatenation back into parts with the given channel counts.
pub fn split(gpu: &Gpu, dy: &Tensor, channels: &[usize]) -> Vec<Tensor> {
    let mut off = 0;
    channels
        .iter()
        .map(|&c| {
            let mut shape = dy.shape.clone();
            *shape.last_mut().unwrap() = c;
            let part = gpu.empty_as(&shape, dy.dtype);
            copy(gpu, &part, 0, dy, off, c);
            off += c;
            part
        })
        .collect()
}

/// `concat(upsample2x(low), |feats[:n] - feats[n:]|)` in one pass (forward only, for scoring):
/// low [n, h/2, w/2, c1], feats [2n, h, w, c2] -> [n, h, w, c1 + c2].
pub fn upsample_absdiff_concat(gpu: &Gpu, low: &Tensor, feats: &Tensor) -> Tensor {
    let (n, lh, lw, c1) = low.nhwc();
    let (n2, h, w, c2) = feats.nhwc();
    assert!(
        n2 == 2 * n && h == 2 * lh && w == 2 * lw,
        "upsample_absdiff_concat: {:?} does not pair with {:?}",
        low.shape,
        feats.shape
    );
    let dtype = same_dtype("upsample_absdiff_concat", &[low, feats]);
    let out = gpu.empty_as(&[n, h, w, c1 + c2], dtype);
    let rows = n * h * w;
    let p = [
        rows as u32,
        c1 as u32,
        (c1 + c2) as u32,
        0,
        0,
        c1 as u32,
        h as u32,
        w as u32,
    ];
    if out.numel() == 0 {
        return out;
    }
    // Four channels per invocation, as one vec4, where both parts' channel counts are
    // multiples of 4, so that no group of four straddles the concatenation.
    let (kernel, per) = if c1 % 4 == 0 && c2 % 4 == 0 {
        (&UPSAMPLE_ABSDIFF_CONCAT4, 4)
    } else {
        (&UPSAMPLE_ABSDIFF_CONCAT, 1)
    };
    gpu.dispatch_as(
        kernel,
        dtype,
        &[
            ("COUNT", c1 as f64),
            ("DST_C", (c1 + c2) as f64),
            ("H", h as f64),
            ("W", w as f64),
        ],
        &p,
        &[out.raw(), low.raw(), feats.raw()],
        grid_1d(out.numel() / per),
        (
            (rows * c2) as f64,
            (low.bytes() + feats.bytes() + out.bytes()) as f64,
        ),
    );
    out
}
