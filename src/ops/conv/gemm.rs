//! The launches of shaders/conv.wgsl, whose two entry points are two families: `conv_gemm`
//! (`tiled.rs`) and `conv_direct` (`direct.rs`). Both read the same parameter block, override
//! constants and grid (one workgroup per BM x BN tile of C); they differ in how a workgroup
//! computes its tile, and so in their limits.

use super::geometry::m_groups;
use super::{sum_weight_slices, ConvGeom, Family, ForwardOperands, Product, TileConfig};
use crate::gpu::{Gpu, Kernel, Tensor};
use crate::ops::{Act, R, RW};

pub(super) const SHADER: (&str, &str) = ("conv.wgsl", include_str!("../../../shaders/conv.wgsl"));

/// The depth of the shader's K blocks (`BK`).
const BK: usize = 16;

/// Workgroup sizes the kernels may use: 64 fits every adapter's defaults, 128 and 256 give a
/// GPU the 64x64 and 128x32 tiles that keep its arithmetic units fed.
pub const WORKGROUP_SIZES: [usize; 3] = [64, 128, 256];

/// One entry point of conv.wgsl: the forward product also runs in f16, the gradients (same
/// entry point, other MODEs) only in f32.
pub(super) struct EntryPoint {
    pub forward: Kernel,
    pub gradients: Kernel,
}

impl EntryPoint {
    pub const fn new(entry: &'static str) -> EntryPoint {
        const BINDINGS: &[crate::gpu::Access] = &[RW, R, R, R, R];
        EntryPoint {
            forward: crate::ops::kernel_in_f16(SHADER, entry, BINDINGS),
            gradients: crate::ops::kernel_in(SHADER, entry, BINDINGS),
        }
    }

    fn kernel(&self, product: Product) -> &Kernel {
        match product {
            Product::Forward => &self.forward,
            _ => &self.gradients,
        }
    }

    /// Both kernels for every product (`ConvFamily::launches`).
    pub fn launches(
        &'static self,
        cfg: &TileConfig,
    ) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)> {
        Product::ALL
            .into_iter()
            .map(|p| (self.kernel(p), constants(cfg, p, Act::None)))
            .collect()
    }
}

/// The shader's parameter block, field by field as shaders/conv.wgsl `Params`.
struct Params {
    gm: usize,
    gn: usize,
    gk: usize,
    k_chunk: usize,
    has_bias: bool,
    has_bn: bool,
}

impl Params {
    fn block(&self, g: &ConvGeom) -> [u32; 20] {
        let u = |v: usize| v as u32;
        [
            u(g.n),
            u(g.h),
            u(g.w),
            u(g.cin),
            u(g.oh),
            u(g.ow),
            u(g.cout),
            u(g.kh),
            u(g.kw),
            u(g.stride),
            u(g.pad_t),
            u(g.pad_l),
            u(self.gm),
            u(self.gn),
            u(self.gk),
            u(self.k_chunk),
            self.has_bias as u32,
            g.stride.trailing_zeros(),
            self.has_bn as u32,
            0,
        ]
    }
}

/// The shader's override constants for one configuration.
fn constants(cfg: &TileConfig, product: Product, act: Act) -> Vec<(&'static str, f64)> {
    vec![
        ("MODE", product.mode() as f64),
        ("ACT", act as u32 as f64),
        ("TM", cfg.tm as f64),
        ("TN", cfg.tn as f64),
        ("THREADS_N", cfg.threads_n as f64),
        ("WG", cfg.wg as f64),
    ]
}

/// Whether the register arrays hold the tile: 8 rows, 8 columns and 32 accumulators, every
/// size a power of two so that the threads divide the tiles evenly.
pub(super) fn registers_fit(cfg: &TileConfig) -> bool {
    let pow2 = |v: usize| v.is_power_of_two();
    pow2(cfg.tm)
        && pow2(cfg.tn)
        && pow2(cfg.threads_n)
        && cfg.tm <= 8
        && cfg.tn <= 8
        && cfg.tm * cfg.tn <= 32
        && WORKGROUP_SIZES.contains(&cfg.wg)
        && cfg.threads_n <= cfg.wg
}

/// The register-blocked shapes worth measuring for a product `gn` wide, with `workgroups`
/// threads: those whose tile is not much wider than the product, and the family's default.
pub(super) fn candidates(family: Family, workgroups: &[usize], gn: usize) -> Vec<TileConfig> {
    let width = gn.next_power_of_two().max(1);
    let mut out = Vec::new();
    for &wg in workgroups {
        for tm in [1, 2, 4, 8] {
            for tn in [1, 2, 4, 8] {
                for threads_n in [1, 2, 4, 8, 16, 32] {
                    let c = TileConfig::new(family, tm, tn, threads_n).with_wg(wg);
                    let blocking = tm * tn;
                    if c.valid()
                        && (4..=32).contains(&blocking)
                        && c.bn() <= width.max(4)
                        && c.bm() >= 16
                    {
                        out.push(c);
                    }
                }
            }
        }
    }
    let d = family.default_tile(gn);
    if !out.contains(&d) {
        out.push(d);
    }
    out
}

pub(super) fn forward(
    gpu: &Gpu,
    entry: &EntryPoint,
    cfg: &TileConfig,
    g: &ConvGeom,
    op: &ForwardOperands,
    y: &Tensor,
) {
    let (gm, gn, gk) = Product::Forward.gemm(g);
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    // Absent vectors are bound to a tensor already at hand; the kernel never reads them.
    let bias = op.bias.unwrap_or(op.w).raw();
    let bn = op.affine.unwrap_or(op.w).raw();
    let params = Params {
        gm,
        gn,
        gk,
        k_chunk: gk,
        has_bias: op.bias.is_some(),
        has_bn: op.affine.is_some(),
    };
    let bytes = (op.x.bytes() + op.w.bytes() + y.bytes()) as f64;
    gpu.dispatch_as(
        &entry.forward,
        y.dtype,
        &constants(cfg, Product::Forward, op.act),
        &params.block(g),
        &[y.raw(), op.x.raw(), op.w.raw(), bias, bn],
        [gn.div_ceil(cfg.bn()) as u32, gy, gz],
        (g.flops(), bytes),
    );
}

pub(super) fn grad_input(
    gpu: &Gpu,
    entry: &EntryPoint,
    cfg: &TileConfig,
    g: &ConvGeom,
    dz: &Tensor,
    w: &Tensor,
    dx: &Tensor,
) {
    let (gm, gn, gk) = Product::GradInput.gemm(g);
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    let params = Params {
        gm,
        gn,
        gk,
        k_chunk: gk,
        has_bias: false,
        has_bn: false,
    };
    gpu.dispatch(
        &entry.gradients,
        &constants(cfg, Product::GradInput, Act::None),
        &params.block(g),
        &[dx.raw(), dz.raw(), w.raw(), w.raw(), w.raw()],
        [gn.div_ceil(cfg.bn()) as u32, gy, gz],
        (g.flops(), (dz.bytes() + w.bytes() + dx.bytes()) as f64),
    );
}

/// dW with the reduction split over workgroups along z, each slice written apart and the
/// slices summed afterwards.
pub(super) fn grad_weight(
    gpu: &Gpu,
    entry: &EntryPoint,
    cfg: &TileConfig,
    g: &ConvGeom,
    x: &Tensor,
    dz: &Tensor,
) -> Tensor {
    let (gm, gn, gk) = Product::GradWeight.gemm(g);
    let tiles = gm.div_ceil(cfg.bm()) * gn.div_ceil(cfg.bn());
    // Enough workgroups to fill a large GPU, but each slice long enough to be worth a pass.
    let want = 1024usize.div_ceil(tiles).max(1);
    let max_splits = gk.div_ceil(BK * 8).max(1);
    let splits = want.min(max_splits).min(4096);
    let k_chunk = gk.div_ceil(splits).div_ceil(BK) * BK;
    let splits = gk.div_ceil(k_chunk);
    let groups = [
        gn.div_ceil(cfg.bn()) as u32,
        gm.div_ceil(cfg.bm()) as u32,
        splits as u32,
    ];
    // One slice writes dW itself; several write partial products.
    let out = if splits == 1 {
        gpu.empty(&g.weight_shape())
    } else {
        gpu.empty(&[splits, gm * gn])
    };
    let params = Params {
        gm,
        gn,
        gk,
        k_chunk,
        has_bias: false,
        has_bn: false,
    };
    gpu.dispatch(
        &entry.gradients,
        &constants(cfg, Product::GradWeight, Act::None),
        &params.block(g),
        &[out.raw(), x.raw(), dz.raw(), dz.raw(), dz.raw()],
        groups,
        (g.flops(), (x.bytes() + dz.bytes()) as f64),
    );
    sum_weight_slices(gpu, out, splits, g)
}
