//! A CPU-driver family for stride-1 5x5 products with few input channels (the encoder's first
//! layers), written out tap by tap by tools/gen_conv_taps.py.
//!
//! - Forward (shaders/conv_taps.wgsl, 3 and 8 input channels): each weight is read at a
//!   constant offset of its uniform window, which llvmpipe loads once and broadcasts (an
//!   offset that moves with a loop counter is a gather per lane), and each input an invocation
//!   gathers serves every tap of a run of adjacent pixels that reaches it. The sums are
//!   associated as the direct kernel's, so the results are the same to the bit and a training
//!   forward may run here. In its `TileConfig`, TM is the run of pixels per invocation and TN
//!   the output channels of one dispatch (a block of TN / 4 vec4 columns; wider layers take
//!   one dispatch per block).
//! - Scoring's `dec.down0` (3x3, stride 4, 16 + 8 input channels) has a second forward entry
//!   point that reads its input, the decoder's concatenation [up(low), |f(R) - f(D)|], from
//!   those two sources (`UP_DIFF_KERNELS`, `ops::conv::UpAbsdiffConv`): same values, same
//!   sums, and the 288x288x24 concatenation is never written.
//! - Weight gradient (shaders/conv_taps_dw.wgsl, up to 16 input channels in groups of 3 or 4):
//!   an invocation owns one filter row, a group of input channels and a block of output
//!   channels, and walks a band of output rows, every product of the inputs and dY it gathers
//!   landing in one of its sums; each band's sums are a slice of dW, added afterwards. One
//!   kernel per shape (`dw_kernel_for`), whatever the tile.
//!
//! The input gradient, and every shape without a written-out kernel, runs in the uniform
//! family.

use super::geometry::m_groups;
use super::{
    direct, sum_weight_slices, uniform, ConvFamily, ConvGeom, Family, ForwardOperands, Product,
    Role, TileConfig,
};
use crate::gpu::{uniform_window, whole, Access, DType, Gpu, Kernel, Tensor};
use crate::ops::{f32_only, kernel_in, R, RW, U};

pub const FAMILY: Family = Family(&Taps);

pub struct Taps;

const SHADER: (&str, &str) = (
    "conv_taps.wgsl",
    include_str!("../../../shaders/conv_taps.wgsl"),
);

const BINDINGS: &[Access] = &[RW, R, U, R, R];

const DW_SHADER: (&str, &str) = (
    "conv_taps_dw.wgsl",
    include_str!("../../../shaders/conv_taps_dw.wgsl"),
);

/// One written-out weight gradient: input channels per dispatch (a group of the layer's),
/// filter size, vec4 output channels per dispatch, pixels per step.
pub struct TapsDwKernel {
    pub cg: usize,
    pub k: usize,
    pub n4: usize,
    pub run: usize,
    kernel: Kernel,
}

macro_rules! taps_dw {
    ($cg:literal, $k:literal, $n4:literal, $r:literal) => {
        TapsDwKernel {
            cg: $cg,
            k: $k,
            n4: $n4,
            run: $r,
            kernel: kernel_in(
                DW_SHADER,
                concat!("conv_taps_dw_c", $cg, "_k", $k, "_n", $n4, "_r", $r),
                &[RW, R, R],
            ),
        }
    };
}

/// Every entry point of conv_taps_dw.wgsl (tools/gen_conv_taps.py `DW_CONFIGS`, in order).
pub static DW_KERNELS: &[TapsDwKernel] = &[
    taps_dw!(3, 5, 1, 4),
    taps_dw!(3, 5, 2, 4),
    taps_dw!(4, 5, 2, 4),
];

/// Partial sums of at most this many bands of output rows (slices of dW), so that the
/// weight gradient's scratch stays near the size of dW times this.
const DW_MAX_SLICES: usize = 2048;

/// The weight gradient kernel for `g`: stride 1, a square filter, input channels a whole
/// number of its groups, and the widest block up to the output channels.
fn dw_kernel_for(g: &ConvGeom) -> Option<&'static TapsDwKernel> {
    if g.stride != 1 || g.kh != g.kw {
        return None;
    }
    let want = g.cout.div_ceil(4);
    DW_KERNELS
        .iter()
        .filter(|t| t.k == g.kh && (g.cin == t.cg || (g.cin % t.cg == 0 && g.cin <= 16)))
        .filter(|t| t.n4 <= want.max(1))
        .max_by_key(|t| (t.cg == g.cin, t.n4, t.cg))
}

/// Whether the family has a weight gradient kernel for `g`.
pub fn serves_grad_weight(g: &ConvGeom) -> bool {
    dw_kernel_for(g).is_some()
}

/// One written-out kernel: input channels, filter size (square), stride, vec4 output columns
/// per dispatch, pixels per invocation; for some kernels of one block, a twin whose sums are
/// vec3, which runs layers of at most 3 output channels (tools/gen_conv_taps.py
/// `THREE_LANE_CONFIGS`).
pub struct TapsKernel {
    pub cin: usize,
    pub k: usize,
    pub stride: usize,
    pub n4: usize,
    pub run: usize,
    kernel: Kernel,
    three_lanes: Option<Kernel>,
}

impl TapsKernel {
    /// The entry point that runs `g`: the vec3 twin where there is one and the layer has at
    /// most 3 output channels (the same sums in the same order, one lane fewer).
    fn kernel_for_channels(&self, g: &ConvGeom) -> &Kernel {
        match &self.three_lanes {
            Some(k) if g.cout <= 3 => k,
            _ => &self.kernel,
        }
    }
}

macro_rules! taps {
    ($cin:literal, $k:literal, $n4:literal, $r:literal) => {
        TapsKernel {
            cin: $cin,
            k: $k,
            stride: 1,
            n4: $n4,
            run: $r,
            kernel: kernel_in(
                SHADER,
                concat!("conv_taps_c", $cin, "_k", $k, "_n", $n4, "_r", $r),
                BINDINGS,
            ),
            three_lanes: None,
        }
    };
    ($cin:literal, $k:literal, 1, $r:literal, lanes3) => {
        TapsKernel {
            three_lanes: Some(kernel_in(
                SHADER,
                concat!("conv_taps_c", $cin, "_k", $k, "_n1_r", $r, "_lanes3"),
                BINDINGS,
            )),
            ..taps!($cin, $k, 1, $r)
        }
    };
    ($cin:literal, $k:literal, s $s:literal, $n4:literal, $r:literal) => {
        TapsKernel {
            cin: $cin,
            k: $k,
            stride: $s,
            n4: $n4,
            run: $r,
            kernel: kernel_in(
                SHADER,
                concat!("conv_taps_c", $cin, "_k", $k, "_s", $s, "_n", $n4, "_r", $r),
                BINDINGS,
            ),
            three_lanes: None,
        }
    };
}

/// Every entry point of the shader (tools/gen_conv_taps.py `CONFIGS`, in its order, with the
/// twins of `THREE_LANE_CONFIGS`).
pub static KERNELS: &[TapsKernel] = &[
    taps!(3, 5, 1, 4),
    taps!(3, 5, 1, 8, lanes3),
    taps!(3, 5, 2, 4),
    taps!(3, 5, 2, 8),
    taps!(8, 5, 2, 4),
    taps!(8, 5, 4, 4),
    taps!(24, 3, s 4, 8, 2),
];

/// A scoring forward whose input is the decoder's concatenation [up(low), |f(R) - f(D)|]
/// (`ops::concat::upsample_absdiff_concat`), read from its two sources: the channels of the
/// upsampled half from low at (y / 2, x / 2), those of the difference from the stacked
/// features, so the concatenation is never written. The values and the order of every sum
/// are the plain kernel's on the built concatenation, so the results are the same to the bit.
pub struct TapsUpDiffKernel {
    pub up: usize,
    pub diff: usize,
    /// The plain kernel of the same filter, stride, block and run.
    pub plain: &'static TapsKernel,
    kernel: Kernel,
}

/// Every up-and-difference entry point (tools/gen_conv_taps.py `UP_DIFF_CONFIGS`).
pub static UP_DIFF_KERNELS: &[TapsUpDiffKernel] = &[TapsUpDiffKernel {
    up: 16,
    diff: 8,
    plain: &KERNELS[6],
    kernel: kernel_in(
        SHADER,
        "conv_taps_up16_diff8_k3_s4_n8_r2",
        &[RW, R, U, R, R, R],
    ),
}];

/// Whether `t` is written for `g`'s input channels, filter and stride.
fn fits(t: &TapsKernel, g: &ConvGeom) -> bool {
    t.cin == g.cin && t.k == g.kh && t.k == g.kw && t.stride == g.stride
}

/// The kernel that runs `cfg` on `g`, if there is one.
fn kernel_for(g: &ConvGeom, cfg: &TileConfig) -> Option<&'static TapsKernel> {
    KERNELS
        .iter()
        .find(|t| fits(t, g) && t.n4 * 4 == cfg.tn && t.run == cfg.tm)
}

/// Where the family has no kernel, the uniform family runs the product.
fn fallback(product: Product, g: &ConvGeom) -> TileConfig {
    uniform::FAMILY.default_for(product, g)
}

/// The family's own default for the forward of `g`, None where it has no kernel for it.
pub fn default_forward(g: &ConvGeom) -> Option<TileConfig> {
    // The widest block within the layer's channels, else the narrowest there is (its
    // channels past the layer's are not stored); the longest run of that block.
    let want = g.cout.div_ceil(4);
    let written = || KERNELS.iter().filter(|t| fits(t, g));
    let n4 = written()
        .map(|t| t.n4)
        .filter(|&n4| n4 <= want)
        .max()
        .or_else(|| written().map(|t| t.n4).min())?;
    written()
        .filter(|t| t.n4 == n4)
        .max_by_key(|t| t.run)
        .map(|t| TileConfig::new(FAMILY, t.run, t.n4 * 4, 1))
}

/// The up-and-difference kernel that runs `cfg` on `g` (the concatenation's geometry) for
/// `up` upsampled and `diff` difference channels, if there is one.
pub fn up_diff_kernel(
    g: &ConvGeom,
    cfg: &TileConfig,
    up: usize,
    diff: usize,
) -> Option<&'static TapsUpDiffKernel> {
    if cfg.family != FAMILY {
        return None;
    }
    let t = kernel_for(g, cfg)?;
    UP_DIFF_KERNELS
        .iter()
        .find(|f| std::ptr::eq(f.plain, t) && f.up == up && f.diff == diff)
}

impl TapsUpDiffKernel {
    /// `forward` of conv(concat[up(low), |f(R) - f(D)|]) (`g` its geometry) into y, from low
    /// [N, H/2, W/2, up] and the stacked features [2N, H, W, diff] (`op.x` unused).
    pub fn forward(
        &self,
        gpu: &Gpu,
        g: &ConvGeom,
        low: &Tensor,
        feats: &Tensor,
        op: &ForwardOperands,
        y: &Tensor,
    ) {
        f32_only("conv forward (taps family)", &[low, feats, op.w]);
        launch_forward(gpu, self.plain, &self.kernel, g, op, low, Some(feats), y);
    }
}

/// Runs `kernel`, written for `t`'s block and run, on `g`: one dispatch per block of output
/// channels, each binding its window of the packed weights. `src` is the input (low, for an
/// up-and-difference kernel, whose stacked features come as `feats`).
#[allow(clippy::too_many_arguments)]
fn launch_forward(
    gpu: &Gpu,
    t: &TapsKernel,
    kernel: &Kernel,
    g: &ConvGeom,
    op: &ForwardOperands,
    src: &Tensor,
    feats: Option<&Tensor>,
    y: &Tensor,
) {
    let (packed, mut params) = uniform::blocked_forward_weights(
        gpu,
        op.w,
        g,
        t.n4,
        op.bias.is_some(),
        op.affine.is_some(),
    );
    let runs = g.n * g.oh * g.ow.div_ceil(t.run);
    let (gy, gz) = m_groups(runs.div_ceil(64));
    let bias = op.bias.unwrap_or(op.w).raw();
    let bn = op.affine.unwrap_or(op.w).raw();
    let blocks = g.cout.div_ceil(t.n4 * 4);
    let read = src.bytes() + feats.map_or(0, |f| f.bytes());
    for b in 0..blocks {
        params.b0 = b;
        let mut bindings = vec![
            whole(y.raw()),
            whole(src.raw()),
            uniform_window(packed.raw(), b * params.kp * t.n4),
            whole(bias),
            whole(bn),
        ];
        bindings.extend(feats.map(|f| whole(f.raw())));
        gpu.dispatch_bindings(
            kernel,
            DType::F32,
            &[("ACT", op.act as u32 as f64)],
            &params.block(g),
            &bindings,
            [1, gy, gz],
            (
                g.flops() / blocks as f64,
                (read + y.bytes() / blocks as u64) as f64,
            ),
        );
    }
}

impl ConvFamily for Taps {
    fn name(&self) -> &'static str {
        "taps"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        SHADER
    }

    /// Its own two, and the uniform family's, whose `pack_weights` lays the weights out.
    fn shaders(&self) -> Vec<(&'static str, &'static str)> {
        vec![SHADER, DW_SHADER, uniform::SHADER]
    }

    /// On CPU adapters the winograd family hands it the forward products it has kernels for
    /// where Winograd runs them slower, cannot (a stride) or may not (a training forward),
    /// and the weight gradients it has kernels for; `asna tune` times it.
    fn role(&self, device: wgpu::DeviceType) -> Role {
        if device == wgpu::DeviceType::Cpu {
            Role::Candidate
        } else {
            Role::Unused
        }
    }

    fn f16_stand_in(&self) -> Option<Family> {
        Some(direct::FAMILY)
    }

    fn valid(&self, cfg: &TileConfig) -> bool {
        cfg.threads_n == 1
            && cfg.wg == 64
            && KERNELS
                .iter()
                .any(|t| t.n4 * 4 == cfg.tn && t.run == cfg.tm)
    }

    fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        let mut out: Vec<TileConfig> = Vec::new();
        for t in KERNELS.iter().filter(|t| t.n4 <= gn.div_ceil(4).max(1)) {
            let c = TileConfig::new(FAMILY, t.run, t.n4 * 4, 1);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        let d = self.default_tile(gn);
        if !out.contains(&d) {
            out.push(d);
        }
        out
    }

    fn default_tile(&self, gn: usize) -> TileConfig {
        let n4 = KERNELS
            .iter()
            .map(|t| t.n4)
            .filter(|&n4| n4 <= gn.div_ceil(4).max(1))
            .max()
            .unwrap_or(1);
        let run = KERNELS
            .iter()
            .filter(|t| t.n4 == n4)
            .map(|t| t.run)
            .max()
            .unwrap_or(4);
        TileConfig::new(FAMILY, run, n4 * 4, 1)
    }

    fn default_for(&self, product: Product, g: &ConvGeom) -> TileConfig {
        match product {
            Product::Forward => default_forward(g).unwrap_or_else(|| fallback(product, g)),
            Product::GradWeight if serves_grad_weight(g) => self.default_tile(g.cout),
            _ => fallback(product, g),
        }
    }

    /// The forward of a shape with a kernel for `cfg` runs here; a shape with kernels of
    /// other blocks or runs takes the family's default; the rest goes to the uniform family.
    fn resolve(
        &self,
        product: Product,
        g: &ConvGeom,
        cfg: TileConfig,
        _for_gradient: bool,
    ) -> TileConfig {
        match product {
            Product::Forward => {}
            // One kernel per shape; the tile does not choose among them.
            Product::GradWeight if serves_grad_weight(g) => return cfg,
            _ => return fallback(product, g),
        }
        if kernel_for(g, &cfg).is_some() {
            return cfg;
        }
        default_forward(g).unwrap_or_else(|| fallback(product, g))
    }

    fn describe(&self, cfg: &TileConfig) -> String {
        format!(
            "taps written out, runs of {} pixels, {} channels per dispatch",
            cfg.tm, cfg.tn
        )
    }

    fn launches(&self, cfg: &TileConfig) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)> {
        let mut out = vec![uniform::pack_weights_launch(cfg.tn / 4)];
        for t in KERNELS
            .iter()
            .filter(|t| t.n4 * 4 == cfg.tn && t.run == cfg.tm)
        {
            out.push((&t.kernel, vec![("ACT", 0.0)]));
            out.extend(t.three_lanes.iter().map(|k| (k, vec![("ACT", 0.0)])));
        }
        for f in UP_DIFF_KERNELS
            .iter()
            .filter(|f| f.plain.n4 * 4 == cfg.tn && f.plain.run == cfg.tm)
        {
            out.push((&f.kernel, vec![("ACT", 0.0)]));
        }
        for t in DW_KERNELS.iter().filter(|t| t.n4 * 4 == cfg.tn) {
            out.push((&t.kernel, vec![]));
        }
        out
    }

    fn forward(&self, gpu: &Gpu, cfg: &TileConfig, g: &ConvGeom, op: &ForwardOperands, y: &Tensor) {
        f32_only("conv forward (taps family)", &[op.x, op.w]);
        let Some(t) = kernel_for(g, cfg) else {
            // Not reached through `resolve`; a configuration forced onto another shape.
            let c = fallback(Product::Forward, g);
            return c.family.forward(gpu, &c, g, op, y);
        };
        launch_forward(gpu, t, t.kernel_for_channels(g), g, op, op.x, None, y);
    }

    fn grad_input(
        &self,
        gpu: &Gpu,
        _cfg: &TileConfig,
        g: &ConvGeom,
        dz: &Tensor,
        w: &Tensor,
        dx: &Tensor,
    ) {
        let c = fallback(Product::GradInput, g);
        c.family.grad_input(gpu, &c, g, dz, w, dx)
    }

    fn grad_weight(
        &self,
        gpu: &Gpu,
        _cfg: &TileConfig,
        g: &ConvGeom,
        x: &Tensor,
        dz: &Tensor,
    ) -> Tensor {
        let Some(t) = dw_kernel_for(g) else {
            let c = fallback(Product::GradWeight, g);
            return c.family.grad_weight(gpu, &c, g, x, dz);
        };
        f32_only("conv weight gradient (taps family)", &[x, dz]);
        let rows = g.n * g.oh;
        let band_rows = rows.div_ceil(DW_MAX_SLICES).max(1);
        let bands = rows.div_ceil(band_rows);
        let (gm, gn, gk) = Product::GradWeight.gemm(g);
        let partial = if bands == 1 {
            gpu.empty(&g.weight_shape())
        } else {
            gpu.empty(&[bands, gm * gn])
        };
        let mut params = uniform::Params {
            gm,
            gn,
            gk,
            kp: 0,
            has_bias: false,
            has_bn: false,
            b0: 0,
            k0: 0,
            k1: 0,
            first: true,
            last: true,
            k_chunk: band_rows,
        };
        let (gy, gz) = m_groups((bands * g.kh).div_ceil(64));
        let groups = g.cin / t.cg;
        let blocks = g.cout.div_ceil(t.n4 * 4);
        for group in 0..groups {
            for block in 0..blocks {
                params.k0 = group * t.cg;
                params.b0 = block;
                gpu.dispatch_bindings(
                    &t.kernel,
                    DType::F32,
                    &[],
                    &params.block(g),
                    &[whole(partial.raw()), whole(x.raw()), whole(dz.raw())],
                    [1, gy, gz],
                    (
                        g.flops() / (groups * blocks) as f64,
                        (x.bytes() / groups as u64 + dz.bytes() / blocks as u64) as f64,
                    ),
                );
            }
        }
        sum_weight_slices(gpu, partial, bands, g)
    }
}
