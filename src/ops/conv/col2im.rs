//! The input gradient of a strided convolution as one product with every filter tap, then a
//! gather (shaders/conv_col2im.wgsl, which explains the steps). A product that walks every
//! tap and masks those that skip a pixel does stride^2 times the work: for the model's 3x3
//! stride-4 layer that made its input gradient 15x slower than its forward
//! (docs/PERFORMANCE.md, step 19). The product is a 1x1 convolution, run by whichever family
//! the policy chooses for it.

use super::ConvGeom;
use crate::gpu::{grid_1d, Gpu, Kernel, Tensor};
use crate::ops::{kernel, Act, R, RW};

const FILTER_ROWS: Kernel = kernel("conv_col2im.wgsl", "filter_rows", &[RW, R]);
const COL2IM: Kernel = kernel("conv_col2im.wgsl", "col2im", &[RW, R]);

/// The tap columns of this many bytes at most per product, so that a batch of large images
/// runs in chunks of images rather than one buffer the size of dX times the taps.
pub const CHUNK_BYTES: u64 = 32 << 20;

/// Writes dX of the strided convolution `g` into `dx` from dZ and the filter `w`, in products
/// of at most `chunk_bytes` of tap columns (at least one image each). Returns false, writing
/// nothing, when one image's columns exceed the adapter's largest binding.
pub fn grad_input(
    gpu: &Gpu,
    g: &ConvGeom,
    dz: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    chunk_bytes: u64,
) -> bool {
    let taps = g.kh * g.kw * g.cin;
    let image_bytes = (g.oh * g.ow * taps * 4) as u64;
    if image_bytes > gpu.max_binding() {
        return false;
    }
    let mut params = [
        g.h as u32,
        g.w as u32,
        g.cin as u32,
        g.cout as u32,
        g.oh as u32,
        g.ow as u32,
        g.kh as u32,
        g.kw as u32,
        g.stride as u32,
        g.pad_t as u32,
        g.pad_l as u32,
        0,
        (taps * g.cout) as u32,
        0,
        0,
        0,
    ];
    let rows = gpu.empty(&[1, 1, g.cout, taps]);
    gpu.dispatch(
        &FILTER_ROWS,
        &[],
        &params,
        &[rows.raw(), w.raw()],
        grid_1d(taps * g.cout),
        (0.0, 2.0 * w.bytes() as f64),
    );
    let per_chunk = ((chunk_bytes / image_bytes) as usize).clamp(1, g.n);
    let pixels = g.h * g.w;
    for img0 in (0..g.n).step_by(per_chunk) {
        let images = per_chunk.min(g.n - img0);
        let dz_chunk = if images == g.n {
            dz.clone()
        } else {
            gpu.gather_batch(dz, &(img0..img0 + images).collect::<Vec<_>>())
        };
        let cols = super::forward(gpu, &dz_chunk, &rows, None, 1, Act::None);
        params[11] = img0 as u32;
        params[12] = (images * pixels) as u32;
        gpu.dispatch(
            &COL2IM,
            &[],
            &params,
            &[dx.raw(), cols.raw()],
            grid_1d(images * pixels),
            (
                (images * pixels * g.cin) as f64,
                (cols.bytes() + (images * pixels * g.cin * 4) as u64) as f64,
            ),
        );
    }
    true
}
