//! The CPU-driver family (shaders/conv_uniform.wgsl): every invocation of a workgroup shares
//! the same output channels, so that the shared operand (weights from a 64 KiB uniform window;
//! dY for the weight gradient) is one load and a broadcast, read as vec4 and reused over
//! several pixels per invocation. f32 only. In its `TileConfig`, TM is the pixels per
//! invocation and TN the workgroup's output channels (a multiple of 4, read as vec4), shared
//! by all of its 64 invocations (threads_n = 1).

use super::geometry::m_groups;
use super::{
    col2im, direct, sum_weight_slices, ConvFamily, ConvGeom, Family, ForwardOperands, Product,
    Role, TileConfig,
};
use crate::gpu::{grid_1d_of, uniform_window, whole, DType, Gpu, Kernel, Tensor};
use crate::ops::{f32_only, kernel_in, Act, R, RW, U};

pub const FAMILY: Family = Family(&Uniform);

pub struct Uniform;

pub(super) const SHADER: (&str, &str) = (
    "conv_uniform.wgsl",
    include_str!("../../../shaders/conv_uniform.wgsl"),
);
static CONV: Kernel = kernel_in(SHADER, "conv_uniform", &[RW, R, U, R, R]);
static CONV_DW: Kernel = kernel_in(SHADER, "conv_uniform_dw", &[RW, R, U]);
static PACK_ROWS: Kernel = kernel_in(SHADER, "pack_rows", &[RW, R]);
static PACK_WEIGHTS: Kernel = kernel_in(SHADER, "pack_weights", &[RW, R]);
/// vec4 in one uniform window (64 KiB).
const WINDOW_VEC4: usize = 4096;
/// The reduction depth from which a product of few rows spreads over more workgroups
/// (`default_for`).
const LONG_REDUCTION: usize = 4096;

impl ConvFamily for Uniform {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        SHADER
    }

    /// On CPU adapters the winograd family runs its stride-1 3x3 and 5x5 products and hands
    /// it the rest; `asna tune` times it beside that family.
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

    /// An invocation holds 8 pixels and 16 vec4 accumulators; a workgroup is 64 invocations.
    fn valid(&self, cfg: &TileConfig) -> bool {
        cfg.tm.is_power_of_two()
            && cfg.tm <= 8
            && [4, 8, 16, 32].contains(&cfg.tn)
            && cfg.tm * cfg.tn / 4 <= 16
            && cfg.threads_n == 1
            && cfg.wg == 64
    }

    fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        let width = gn.next_power_of_two().max(1);
        let mut out = Vec::new();
        for tm in [1, 2, 4, 8] {
            for tn in [4, 8, 16, 32] {
                let c = TileConfig::new(FAMILY, tm, tn, 1);
                if c.valid() && tn <= width.max(4) && tm * tn >= 8 {
                    out.push(c);
                }
            }
        }
        let d = self.default_tile(gn);
        if !out.contains(&d) {
            out.push(d);
        }
        out
    }

    /// Up to 32 channels as vec4, and as many pixels as keep 16 vec4 accumulators (at most 4:
    /// more pixels per weight load stopped paying in the probes).
    fn default_tile(&self, gn: usize) -> TileConfig {
        let tn = gn.next_power_of_two().clamp(4, 32);
        TileConfig::new(FAMILY, (64 / tn).clamp(1, 4), tn, 1)
    }

    /// A product with fewer than 256 rows (dense layers, a batch's few pixels at 9x9) would
    /// leave most of a workgroup's 64 pixel lanes idle and the device's cores without
    /// workgroups, and runs `direct` instead, unless its reduction is split over workgroups
    /// (the weight gradient, whose few rows still fill the device); and no invocation takes
    /// more rows than the product has (the weight gradient's rows are the filter's taps: 75
    /// for a 5x5 filter on 3 channels).
    ///
    /// A long reduction there (the dense head, 10368 deep) takes direct 2x2 tiles with 8
    /// threads along N, so that its 16 to 64 rows fill more than one workgroup: the default's
    /// single workgroup left one of lavapipe's two cores idle (29 against 12 ms per two
    /// scoring passes at batch 16, docs/PERFORMANCE.md step 26).
    fn default_for(&self, product: Product, g: &ConvGeom) -> TileConfig {
        let (gm, gn, gk) = product.gemm(g);
        if gm < 256 && !product.splits_k() {
            if gk >= LONG_REDUCTION {
                return TileConfig::new(direct::FAMILY, 2, 2, 8);
            }
            return direct::FAMILY.default_tile(gn);
        }
        let mut c = self.default_tile(gn);
        c.tm = c.tm.min(gm.div_ceil(64).next_power_of_two());
        c
    }

    fn launches(&self, cfg: &TileConfig) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)> {
        let mut out = Vec::new();
        for product in [Product::Forward, Product::GradInput] {
            out.push((&PACK_WEIGHTS, constants(cfg, product, Act::None)));
            out.push((&CONV, constants(cfg, product, Act::None)));
        }
        out.push((&PACK_ROWS, constants(cfg, Product::GradWeight, Act::None)));
        out.push((&CONV_DW, constants(cfg, Product::GradWeight, Act::None)));
        out
    }

    fn forward(&self, gpu: &Gpu, cfg: &TileConfig, g: &ConvGeom, op: &ForwardOperands, y: &Tensor) {
        f32_only("conv forward (uniform family)", &[op.x, op.w]);
        windowed_product(
            gpu,
            Product::Forward,
            y,
            op.x,
            op.w,
            op.bias,
            op.affine,
            g,
            op.act,
            *cfg,
        );
    }

    fn grad_input(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        dz: &Tensor,
        w: &Tensor,
        dx: &Tensor,
    ) {
        // Strided: walking every tap here would multiply stride^2 times too many.
        if g.stride > 1 && col2im::grad_input(gpu, g, dz, w, dx, col2im::CHUNK_BYTES) {
            return;
        }
        windowed_product(
            gpu,
            Product::GradInput,
            dx,
            dz,
            w,
            None,
            None,
            g,
            Act::None,
            *cfg,
        );
    }

    fn grad_weight(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        x: &Tensor,
        dz: &Tensor,
    ) -> Tensor {
        weight_gradient(gpu, x, dz, g, *cfg)
    }
}

/// The shader's override constants: pixels per invocation and vec4 columns.
fn constants(cfg: &TileConfig, product: Product, act: Act) -> Vec<(&'static str, f64)> {
    vec![
        ("MODE", product.mode() as f64),
        ("ACT", act as u32 as f64),
        ("TM", cfg.tm as f64),
        ("TN4", (cfg.tn / 4) as f64),
    ]
}

/// The shader's parameter block, field by field as shaders/conv_uniform.wgsl `Params`.
pub(super) struct Params {
    pub gm: usize,
    pub gn: usize,
    pub gk: usize,
    pub kp: usize,
    pub has_bias: bool,
    pub has_bn: bool,
    pub b0: usize,
    pub k0: usize,
    pub k1: usize,
    pub first: bool,
    pub last: bool,
    pub k_chunk: usize,
}

impl Params {
    pub(super) fn block(&self, g: &ConvGeom) -> [u32; 28] {
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
            u(self.kp),
            self.has_bias as u32,
            g.stride.trailing_zeros(),
            self.has_bn as u32,
            u(self.b0),
            u(self.k0),
            u(self.k1),
            self.first as u32,
            self.last as u32,
            u(self.k_chunk),
            0,
            0,
            0,
        ]
    }
}

/// The forward or grad-input product: the K x N weight matrix packed into blocks of the
/// workgroup's TN columns, then one dispatch per 64 KiB window: several whole blocks where
/// they fit, else one block's rows in slices over k, each adding to `out`.
#[allow(clippy::too_many_arguments)]
fn windowed_product(
    gpu: &Gpu,
    product: Product,
    out: &Tensor,
    a: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    affine: Option<&Tensor>,
    g: &ConvGeom,
    act: Act,
    cfg: TileConfig,
) {
    let (gm, gn, gk) = product.gemm(g);
    let tn4 = cfg.tn / 4;
    let blocks = gn.div_ceil(cfg.tn);
    let (packed, mut params) =
        packed_weights(gpu, product, w, g, &cfg, bias.is_some(), affine.is_some());
    let kp = params.kp;
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    let bias_buf = bias.unwrap_or(w).raw();
    let bn_buf = affine.unwrap_or(w).raw();
    let flops_per_row_block = g.flops() / (gk * blocks) as f64;
    let bytes = (a.bytes() + out.bytes()) as f64;
    let launch = |params: &Params, offset_vec4: usize, nblocks: usize| {
        let rows = (params.k1 - params.k0) * nblocks;
        let bindings = [
            whole(out.raw()),
            whole(a.raw()),
            uniform_window(packed.raw(), offset_vec4),
            whole(bias_buf),
            whole(bn_buf),
        ];
        gpu.dispatch_bindings(
            &CONV,
            DType::F32,
            &constants(&cfg, product, act),
            &params.block(g),
            &bindings,
            [nblocks as u32, gy, gz],
            (flops_per_row_block * rows as f64, bytes),
        );
    };
    if kp * tn4 <= WINDOW_VEC4 {
        let per = WINDOW_VEC4 / (kp * tn4);
        for b0 in (0..blocks).step_by(per) {
            params.b0 = b0;
            launch(&params, b0 * kp * tn4, per.min(blocks - b0));
        }
    } else {
        let window_rows = WINDOW_VEC4 / tn4;
        for b in 0..blocks {
            for k0 in (0..gk).step_by(window_rows) {
                params.b0 = b;
                params.k0 = k0;
                params.k1 = (k0 + window_rows).min(gk);
                params.first = k0 == 0;
                params.last = params.k1 == gk;
                launch(&params, (b * kp + k0) * tn4, 1);
            }
        }
    }
}

/// The K x N weight matrix of `product` packed by `pack_weights` in blocks of `cfg.tn`
/// columns (block b's row k at vec4 (b * kp + k) * TN4, kp = K rounded up to 16, so that
/// every block starts 256 bytes aligned), followed by a window of padding (the last window
/// may start anywhere in the packed rows); and the parameter block of a single-window
/// dispatch over all of k (`b0` names the block).
fn packed_weights(
    gpu: &Gpu,
    product: Product,
    w: &Tensor,
    g: &ConvGeom,
    cfg: &TileConfig,
    has_bias: bool,
    has_bn: bool,
) -> (Tensor, Params) {
    let (gm, gn, gk) = product.gemm(g);
    let tn4 = cfg.tn / 4;
    let kp = gk.div_ceil(16) * 16;
    let params = Params {
        gm,
        gn,
        gk,
        kp,
        has_bias,
        has_bn,
        b0: 0,
        k0: 0,
        k1: gk,
        first: true,
        last: true,
        k_chunk: 0,
    };
    let packed_vec4 = gn.div_ceil(cfg.tn) * kp * tn4;
    let packed = gpu.empty(&[(packed_vec4 + WINDOW_VEC4) * 4]);
    gpu.dispatch(
        &PACK_WEIGHTS,
        &constants(cfg, product, Act::None),
        &params.block(g),
        &[packed.raw(), w.raw()],
        grid_1d_of(packed_vec4, 64),
        (0.0, (w.bytes() as usize + packed_vec4 * 16) as f64),
    );
    (packed, params)
}

/// `packed_weights` of the forward product in blocks of `n4` vec4 columns, each of which fits
/// one window: what shaders/conv_taps.wgsl reads.
pub(super) fn blocked_forward_weights(
    gpu: &Gpu,
    w: &Tensor,
    g: &ConvGeom,
    n4: usize,
    has_bias: bool,
    has_bn: bool,
) -> (Tensor, Params) {
    let gk = Product::Forward.gemm(g).2;
    assert!(
        gk.div_ceil(16) * 16 * n4 <= WINDOW_VEC4,
        "a block of {n4} vec4 columns and {gk} rows"
    );
    let cfg = TileConfig::new(FAMILY, 1, n4 * 4, 1);
    packed_weights(gpu, Product::Forward, w, g, &cfg, has_bias, has_bn)
}

/// `pack_weights` for one block of `n4` vec4 columns, with its override constants.
pub(super) fn pack_weights_launch(n4: usize) -> (&'static Kernel, Vec<(&'static str, f64)>) {
    let cfg = TileConfig::new(FAMILY, 1, n4 * 4, 1);
    (&PACK_WEIGHTS, constants(&cfg, Product::Forward, Act::None))
}

/// dW: dY's rows packed into 64 KiB windows (vec4 along cout), one dispatch per window in
/// which every workgroup reads the window as uniform memory, each window's pixels split over a
/// few workgroups so that every core has work; the partial products (one slice per workgroup
/// along z) are summed afterwards.
fn weight_gradient(gpu: &Gpu, x: &Tensor, dz: &Tensor, g: &ConvGeom, cfg: TileConfig) -> Tensor {
    let (gm, gn, gk) = Product::GradWeight.gemm(g);
    let rows = WINDOW_VEC4 / g.cout.div_ceil(4);
    let windows = gk.div_ceil(rows);
    let mut params = Params {
        gm,
        gn,
        gk,
        kp: rows,
        has_bias: false,
        has_bn: false,
        b0: 0,
        k0: 0,
        k1: gk,
        first: true,
        last: true,
        k_chunk: 0,
    };
    let packed = gpu.empty(&[windows * WINDOW_VEC4 * 4]);
    gpu.dispatch(
        &PACK_ROWS,
        &constants(&cfg, Product::GradWeight, Act::None),
        &params.block(g),
        &[packed.raw(), dz.raw()],
        grid_1d_of(windows * WINDOW_VEC4, 64),
        (
            0.0,
            (dz.bytes() as usize + windows * WINDOW_VEC4 * 16) as f64,
        ),
    );
    let (tiles_n, tiles_m) = (gn.div_ceil(cfg.bn()), gm.div_ceil(cfg.bm()));
    // At least 8 workgroups per dispatch (a window is one dispatch, and dispatches run one
    // after another), none with fewer than 32 pixels.
    let splits = 8usize
        .div_ceil(tiles_n * tiles_m)
        .min(rows.min(gk).div_ceil(32))
        .max(1);
    params.k_chunk = rows.min(gk).div_ceil(splits);
    let slices = windows * splits;
    let out = if slices == 1 {
        gpu.empty(&g.weight_shape())
    } else {
        gpu.empty(&[slices, gm * gn])
    };
    let flops_per_pixel = g.flops() / gk as f64;
    for w in 0..windows {
        params.k0 = w * rows;
        params.k1 = (params.k0 + rows).min(gk);
        params.b0 = w * splits;
        let bindings = [
            whole(out.raw()),
            whole(x.raw()),
            uniform_window(packed.raw(), w * WINDOW_VEC4),
        ];
        gpu.dispatch_bindings(
            &CONV_DW,
            DType::F32,
            &constants(&cfg, Product::GradWeight, Act::None),
            &params.block(g),
            &bindings,
            [tiles_n as u32, tiles_m as u32, splits as u32],
            (
                flops_per_pixel * (params.k1 - params.k0) as f64,
                (x.bytes() / windows as u64 + (rows * g.cout * 4) as u64) as f64,
            ),
        );
    }
    sum_weight_slices(gpu, out, slices, g)
}
