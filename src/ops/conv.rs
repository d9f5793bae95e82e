//! Convolution (and, through it, conv1d and dense layers) as implicit GEMM: forward with fused
//! bias and activation (and, for scoring, a folded evaluation-mode batch norm), gradient of
//! the input, gradient of the weight (split over K), and the bias gradient.

use super::{f32_only, kernel, kernel_f16, reduce, same_dtype, Act, R, RW};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

// The forward product runs on f32 or f16 storage; the gradients (same entry points, other
// MODEs) only on f32.
const CONV_TILED: Kernel = kernel_f16("conv.wgsl", "conv_gemm", &[RW, R, R, R, R]);
const CONV_DIRECT: Kernel = kernel_f16("conv.wgsl", "conv_direct", &[RW, R, R, R, R]);
const CONV_TILED_GRAD: Kernel = kernel("conv.wgsl", "conv_gemm", &[RW, R, R, R, R]);
const CONV_DIRECT_GRAD: Kernel = kernel("conv.wgsl", "conv_direct", &[RW, R, R, R, R]);

/// Which convolution kernel runs: workgroup-memory tiles (GPUs) or direct loads without
/// barriers (CPU drivers, where workgroup memory is ordinary memory and barriers are costly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Tiled,
    Direct,
}

/// The variant for this adapter: `Gpu::prefer_tiled`, then `ASNA_CONV=tiled|direct`, override
/// the choice by device type.
pub fn variant(gpu: &Gpu) -> Variant {
    if let Some(tiled) = gpu.prefer_tiled.get() {
        return if tiled {
            Variant::Tiled
        } else {
            Variant::Direct
        };
    }
    match std::env::var("ASNA_CONV").as_deref() {
        Ok("tiled") => Variant::Tiled,
        Ok("direct") => Variant::Direct,
        _ if gpu.info.device_type == wgpu::DeviceType::Cpu => Variant::Direct,
        _ => Variant::Tiled,
    }
}
const BK: usize = 16;

/// TensorFlow 'same' padding along one axis: output ceil(in / s), total padding
/// max((out - 1) s + k - in, 0), half (rounded down) before.
pub fn same_padding(input: usize, k: usize, s: usize) -> (usize, usize) {
    let out = input.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(input);
    (out, total / 2)
}

/// Shapes of one convolution: input [n, h, w, cin], weight [kh, kw, cin, cout], output
/// [n, oh, ow, cout].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub oh: usize,
    pub ow: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_t: usize,
    pub pad_l: usize,
}

impl ConvGeom {
    pub fn new(x_shape: &[usize], w_shape: &[usize], stride: usize) -> ConvGeom {
        assert!(
            stride.is_power_of_two(),
            "conv stride must be a power of two, got {stride}"
        );
        assert_eq!(x_shape.len(), 4, "conv input must be NHWC, got {x_shape:?}");
        assert_eq!(
            w_shape.len(),
            4,
            "conv weight must be [kh, kw, in, out], got {w_shape:?}"
        );
        let (n, h, w, cin) = (x_shape[0], x_shape[1], x_shape[2], x_shape[3]);
        let (kh, kw, wcin, cout) = (w_shape[0], w_shape[1], w_shape[2], w_shape[3]);
        assert_eq!(
            cin, wcin,
            "conv: input has {cin} channels, weight expects {wcin}"
        );
        let (oh, pad_t) = same_padding(h, kh, stride);
        let (ow, pad_l) = same_padding(w, kw, stride);
        ConvGeom {
            n,
            h,
            w,
            cin,
            oh,
            ow,
            cout,
            kh,
            kw,
            stride,
            pad_t,
            pad_l,
        }
    }
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.oh, self.ow, self.cout]
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.oh * self.ow) as f64
            * (self.kh * self.kw * self.cin * self.cout) as f64
    }
    fn params(
        &self,
        gm: usize,
        gn: usize,
        gk: usize,
        k_chunk: usize,
        has_bias: bool,
        has_bn: bool,
    ) -> [u32; 20] {
        let u = |v: usize| v as u32;
        [
            u(self.n),
            u(self.h),
            u(self.w),
            u(self.cin),
            u(self.oh),
            u(self.ow),
            u(self.cout),
            u(self.kh),
            u(self.kw),
            u(self.stride),
            u(self.pad_t),
            u(self.pad_l),
            u(gm),
            u(gn),
            u(gk),
            u(k_chunk),
            has_bias as u32,
            self.stride.trailing_zeros(),
            has_bn as u32,
            0,
        ]
    }
}

/// Register tile per thread and threads along N, chosen by the width of the product so that
/// narrow layers (3 or 8 output channels) do not waste a 64-wide tile.
struct Tiles {
    tm: usize,
    tn: usize,
    threads_n: usize,
}

impl Tiles {
    fn for_width(variant: Variant, gn: usize) -> Tiles {
        let t = |tm, tn, threads_n| Tiles { tm, tn, threads_n };
        if variant == Variant::Direct {
            // Neighbouring threads take neighbouring output channels (contiguous weight loads).
            return match gn {
                0..=1 => t(8, 1, 1),
                2 => t(8, 1, 2),
                3..=4 => t(8, 1, 4),
                5..=8 => t(8, 1, 8),
                9..=16 => t(8, 2, 8),
                17..=32 => t(8, 4, 8),
                _ => t(4, 8, 8),
            };
        }
        match gn {
            0..=4 => t(2, 4, 1),
            5..=8 => t(4, 4, 2),
            9..=16 => t(4, 4, 4),
            17..=32 => t(8, 4, 8),
            _ => t(4, 8, 8),
        }
    }
    fn bm(&self) -> usize {
        64 / self.threads_n * self.tm
    }
    fn bn(&self) -> usize {
        self.threads_n * self.tn
    }
    fn constants(&self, mode: u32, act: Act) -> Vec<(&'static str, f64)> {
        vec![
            ("MODE", mode as f64),
            ("ACT", act as u32 as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("THREADS_N", self.threads_n as f64),
        ]
    }
}

/// M tiles folded into (y, z) so that each stays within 65535 workgroups.
fn m_groups(tiles_m: usize) -> (u32, u32) {
    if tiles_m <= 65535 {
        (tiles_m as u32, 1)
    } else {
        let z = tiles_m.div_ceil(65535);
        (tiles_m.div_ceil(z) as u32, z as u32)
    }
}

/// y = act(conv(x, w) + b), TF-'same' padding.
pub fn forward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    act: Act,
) -> Tensor {
    forward_affine(gpu, x, w, b, stride, act, None)
}

/// y = act(conv(x, w) + b) * scale + shift per output channel, with `affine` the packed f32
/// [scale; shift] of an evaluation-mode batch norm (see `batchnorm::fold`), or plain
/// `forward` without it. x and w share their element type (f32 or f16), which y takes; the
/// bias and the affine map stay f32.
pub fn forward_affine(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    act: Act,
    affine: Option<&Tensor>,
) -> Tensor {
    let dtype = same_dtype("conv", &[x, w]);
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let y = gpu.empty_as(&g.out_shape(), dtype);
    let (gm, gn, gk) = (g.n * g.oh * g.ow, g.cout, g.kh * g.kw * g.cin);
    let v = variant(gpu);
    let t = Tiles::for_width(v, gn);
    let kernel = if v == Variant::Direct {
        &CONV_DIRECT
    } else {
        &CONV_TILED
    };
    let (gy, gz) = m_groups(gm.div_ceil(t.bm()));
    if let Some(b) = b {
        assert_eq!(b.numel(), g.cout, "conv bias size");
        assert_eq!(b.dtype, DType::F32, "conv bias is f32");
    }
    if let Some(a) = affine {
        assert_eq!(a.numel(), 2 * g.cout, "conv affine map: [scale; shift]");
        assert_eq!(a.dtype, DType::F32, "conv affine map is f32");
    }
    // Absent vectors are bound to a tensor already at hand; the kernel never reads them.
    let bias = b.unwrap_or(w).raw();
    let bn = affine.unwrap_or(w).raw();
    let bytes = (x.bytes() + w.bytes() + y.bytes()) as f64;
    gpu.dispatch_as(
        kernel,
        dtype,
        &t.constants(0, act),
        &g.params(gm, gn, gk, gk, b.is_some(), affine.is_some()),
        &[y.raw(), x.raw(), w.raw(), bias, bn],
        [gn.div_ceil(t.bn()) as u32, gy, gz],
        (g.flops(), bytes),
    );
    y
}

/// dX from dZ (the gradient at the convolution's output, before activation).
pub fn backward_input(gpu: &Gpu, dz: &Tensor, w: &Tensor, g: &ConvGeom) -> Tensor {
    f32_only("conv backward_input", &[dz, w]);
    let dx = gpu.empty(&[g.n, g.h, g.w, g.cin]);
    let (gm, gn, gk) = (g.n * g.h * g.w, g.cin, g.kh * g.kw * g.cout);
    let v = variant(gpu);
    let t = Tiles::for_width(v, gn);
    let kernel = if v == Variant::Direct {
        &CONV_DIRECT_GRAD
    } else {
        &CONV_TILED_GRAD
    };
    let (gy, gz) = m_groups(gm.div_ceil(t.bm()));
    gpu.dispatch(
        kernel,
        &t.constants(1, Act::None),
        &g.params(gm, gn, gk, gk, false, false),
        &[dx.raw(), dz.raw(), w.raw(), w.raw(), w.raw()],
        [gn.div_ceil(t.bn()) as u32, gy, gz],
        (g.flops(), (dz.bytes() + w.bytes() + dx.bytes()) as f64),
    );
    dx
}

/// dW [kh, kw, cin, cout] from the input x and dZ. The reduction runs over every output
/// position of the batch, so it is split into slices summed afterwards.
pub fn backward_weight(gpu: &Gpu, x: &Tensor, dz: &Tensor, g: &ConvGeom) -> Tensor {
    f32_only("conv backward_weight", &[x, dz]);
    let (gm, gn, gk) = (g.kh * g.kw * g.cin, g.cout, g.n * g.oh * g.ow);
    let v = variant(gpu);
    let t = Tiles::for_width(v, gn);
    let kernel = if v == Variant::Direct {
        &CONV_DIRECT_GRAD
    } else {
        &CONV_TILED_GRAD
    };
    let tiles = gm.div_ceil(t.bm()) * gn.div_ceil(t.bn());
    // Enough workgroups to fill a large GPU, but each slice long enough to be worth a pass.
    let want = 1024usize.div_ceil(tiles).max(1);
    let max_splits = gk.div_ceil(BK * 8).max(1);
    let splits = want.min(max_splits).min(4096);
    let k_chunk = gk.div_ceil(splits).div_ceil(BK) * BK;
    let splits = gk.div_ceil(k_chunk);
    let work = (g.flops(), (x.bytes() + dz.bytes()) as f64);
    let consts = t.constants(2, Act::None);
    let groups = [
        gn.div_ceil(t.bn()) as u32,
        gm.div_ceil(t.bm()) as u32,
        splits as u32,
    ];
    let wshape = [g.kh, g.kw, g.cin, g.cout];
    if splits == 1 {
        let dw = gpu.empty(&wshape);
        gpu.dispatch(
            kernel,
            &consts,
            &g.params(gm, gn, gk, k_chunk, false, false),
            &[dw.raw(), x.raw(), dz.raw(), dz.raw(), dz.raw()],
            groups,
            work,
        );
        return dw;
    }
    let parts = gpu.empty(&[splits, gm * gn]);
    gpu.dispatch(
        kernel,
        &consts,
        &g.params(gm, gn, gk, k_chunk, false, false),
        &[parts.raw(), x.raw(), dz.raw(), dz.raw(), dz.raw()],
        groups,
        work,
    );
    reduce::sum_splits(gpu, &parts).reshape(&wshape)
}

/// db = sum of dZ over every position.
pub fn backward_bias(gpu: &Gpu, dz: &Tensor) -> Tensor {
    f32_only("conv backward_bias", &[dz]);
    let c = dz.channels();
    let rows = dz.numel() / c;
    reduce::columns(
        gpu,
        &dz.reshape(&[1, rows, c]),
        reduce::Summand::Value,
        None,
        None,
        1.0,
    )
    .reshape(&[c])
}
