//! The Winograd family (shaders/conv_winograd.wgsl): stride-1 square 3x3 and 5x5 filters by
//! minimal filtering, F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5), for the forward product and
//! the input gradient (the forward product of dY with the filter turned by 180 degrees). The
//! transformed filter sits in a 64 KiB uniform window shared by a workgroup's invocations, as
//! in the uniform family; each invocation owns a run of output tiles. The weight gradient
//! runs the same transforms with filter and output exchanged, F(3x3, 2x2) and F(5x5, 2x2):
//! the transformed 2x2 tiles of dY fill the windows, and each invocation owns two input
//! channels (`weight_gradient`). f32 only.
//!
//! Where the adapter's subgroups are 8 invocations wide (llvmpipe's), the product and weight
//! gradient kernels of shaders/conv_winograd_subgroup.wgsl run instead: the same kernels,
//! except that each lane loads every eighth point of the transformed filter (or dY) and
//! subgroup broadcasts hand the points to the others, because llvmpipe turns a load the whole
//! workgroup shares into a gather unless its offset is a compile-time constant. Same values,
//! same order of sums, same bits (`KernelPolicy::shared_loads`, docs/PERFORMANCE.md step 23).
//!
//! In its `TileConfig`, TM is the side of the output tile (2 or 4; a 5x5 filter always takes
//! 2), TN the output channels of a workgroup (4, 8 or 16, read as vec4) and `run` the
//! horizontally adjacent output tiles an invocation owns (1 to 4 of a 2x2 tile, which share
//! the input columns they overlap in and every load of the transformed filter; a 4x4 tile
//! runs alone); threads_n is 1 and the workgroup 64 invocations. Where one block of the
//! transformed filter exceeds a window, its input channels are summed in parts, one dispatch
//! each, the later parts adding to the output. What it cannot run (other strides and
//! filters), a weight gradient with fewer than `DW_MIN_CHANNELS` input channels, and
//! a training forward it hands to another family (`resolve`, `fallback`): the taps family
//! where that has a written-out kernel for the shape (which also takes a scoring forward of
//! at most 8 output channels), else the uniform family's rule.

use super::{
    taps, uniform, ConvFamily, ConvGeom, Family, ForwardOperands, Product, Role, TileConfig,
};
use crate::gpu::{grid_1d_of, uniform_window, whole, DType, Gpu, Kernel, Tensor};
use crate::ops::{f32_only, kernel_in, Act, R, RW, U};

pub const FAMILY: Family = Family(&Winograd);

pub struct Winograd;

const SHADER: (&str, &str) = (
    "conv_winograd.wgsl",
    include_str!("../../../shaders/conv_winograd.wgsl"),
);
static CONV_2X2_3X3: Kernel = kernel_in(SHADER, "winograd_2x2_3x3", &[RW, R, U, R, R]);
static CONV_4X4_3X3: Kernel = kernel_in(SHADER, "winograd_4x4_3x3", &[RW, R, U, R, R]);
static CONV_2X2_5X5: Kernel = kernel_in(SHADER, "winograd_2x2_5x5", &[RW, R, U, R, R]);
/// The three products and the two weight gradients again, with the U loads shared through
/// 8-wide subgroups (`KernelPolicy::shared_loads`), in a module of their own: a device without
/// subgroups rejects any module that uses them. Written by tools/gen_conv_winograd.py.
pub const SUBGROUP_SHADER: (&str, &str) = (
    "conv_winograd_subgroup.wgsl",
    include_str!("../../../shaders/conv_winograd_subgroup.wgsl"),
);
static SHARED_2X2_3X3: Kernel = kernel_in(SUBGROUP_SHADER, "winograd_2x2_3x3", &[RW, R, U, R, R]);
static SHARED_4X4_3X3: Kernel = kernel_in(SUBGROUP_SHADER, "winograd_4x4_3x3", &[RW, R, U, R, R]);
static SHARED_2X2_5X5: Kernel = kernel_in(SUBGROUP_SHADER, "winograd_2x2_5x5", &[RW, R, U, R, R]);
static SHARED_DW_3X3: Kernel = kernel_in(SUBGROUP_SHADER, "winograd_dw_3x3", &[RW, R, U]);
static SHARED_DW_5X5: Kernel = kernel_in(SUBGROUP_SHADER, "winograd_dw_5x5", &[RW, R, U]);
static WEIGHTS: Kernel = kernel_in(SHADER, "winograd_weights", &[RW, R]);
static DW_3X3: Kernel = kernel_in(SHADER, "winograd_dw_3x3", &[RW, R, U]);
static DW_5X5: Kernel = kernel_in(SHADER, "winograd_dw_5x5", &[RW, R, U]);
static DW_PACK: Kernel = kernel_in(SHADER, "winograd_dw_pack", &[RW, R]);
static DW_FINISH: Kernel = kernel_in(SHADER, "winograd_dw_finish", &[RW, R]);
/// vec4 in one uniform window (64 KiB).
const WINDOW_VEC4: usize = 4096;
/// The widest block of vec4 output channels each tile's kernel is written out for: 16
/// channels of a 2x2 tile (3x3 or 5x5 filters), 8 of a 4x4 tile (72 vec4 sums).
fn max_tn4(m: usize) -> usize {
    if m == 2 {
        4
    } else {
        2
    }
}
/// Transform points of one input channel: ALPHA^2 for an m x m output tile of an r x r
/// filter, ALPHA = m + r - 1 (the rows of the transformed filter per channel).
fn points(m: usize, r: usize) -> usize {
    (m + r - 1) * (m + r - 1)
}
/// Invocations per workgroup.
const WG: usize = 64;
/// The longest run of 2x2 output tiles an invocation owns (the shader is written out for 4).
const MAX_RUN: usize = 4;
/// The fewest input channels a weight gradient runs here with. Its invocations own two
/// channels each and a dispatch covers one window of tiles, so fewer channels leave a
/// dispatch too little work for its cost: on lavapipe the model's layers with 48 to 128
/// input channels ran 1.15-1.4x as fast as in the uniform family, those with 16 and 32 no
/// faster or slower (docs/PERFORMANCE.md, step 21).
const DW_MIN_CHANNELS: usize = 48;
/// Windows of transformed dY packed at once (32 MiB), so that memory stays bounded.
const DW_PACKED_WINDOWS: usize = 512;

/// How one product runs: output tile side, filter side, vec4 columns per workgroup, the
/// padded rows of one block of the transformed filter, and the tiles per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    m: usize,
    r: usize,
    tn4: usize,
    kp: usize,
    run: usize,
    /// Input channels summed per dispatch: all of them where a block of the transformed
    /// filter fits one window, else parts whose rows do (the last may be shorter).
    part_channels: usize,
}

impl Plan {
    /// One entry point per tile: F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5); `shared`: the
    /// one whose U loads go through subgroups.
    fn kernel(&self, shared: bool) -> &'static Kernel {
        match (self.m, self.r, shared) {
            (2, 3, false) => &CONV_2X2_3X3,
            (4, _, false) => &CONV_4X4_3X3,
            (_, _, false) => &CONV_2X2_5X5,
            (2, 3, true) => &SHARED_2X2_3X3,
            (4, _, true) => &SHARED_4X4_3X3,
            (_, _, true) => &SHARED_2X2_5X5,
        }
    }

    /// The weight gradient's entry point: F(3x3, 2x2) or F(5x5, 2x2); `shared` as `kernel`.
    fn weight_gradient_kernel(&self, shared: bool) -> &'static Kernel {
        match (self.r, shared) {
            (3, false) => &DW_3X3,
            (_, false) => &DW_5X5,
            (3, true) => &SHARED_DW_3X3,
            (_, true) => &SHARED_DW_5X5,
        }
    }
}

/// The plan for `product` of `g` under `cfg`, or None when the family cannot run it. Wider
/// blocks than the product has shrink; a block wider than one window sums its input
/// channels in parts (16 channels in two parts beat 8 in one: each part loads and
/// transforms its inputs once for twice the outputs).
fn plan(product: Product, g: &ConvGeom, cfg: &TileConfig) -> Option<Plan> {
    if g.stride != 1 || g.kh != g.kw {
        return None;
    }
    let r = g.kh;
    if r != 3 && r != 5 {
        return None;
    }
    if product == Product::GradWeight {
        return weight_gradient_plan(g, cfg);
    }
    let (_, gn, gk) = product.gemm(g);
    let channels = gk / (r * r);
    let m = if r == 5 { 2 } else { cfg.tm };
    let a2 = points(m, r);
    let tn4 = (cfg.tn / 4)
        .min(gn.div_ceil(4).next_power_of_two())
        .min(max_tn4(m))
        .max(1);
    // Whole input channels per window, a multiple of 4 so that every part's window starts
    // on a 256-byte boundary (a2 * 4 * tn4 vec4).
    let fit = WINDOW_VEC4 / (a2 * tn4) / 4 * 4;
    let parts = channels.div_ceil(fit);
    let part_channels = if parts == 1 {
        channels
    } else {
        channels.div_ceil(parts).div_ceil(4) * 4
    };
    Some(Plan {
        m,
        r,
        tn4,
        kp: (channels * a2).div_ceil(16) * 16,
        run: cfg.run,
        part_channels,
    })
}

/// The weight gradient's plan: 2x2 tiles of dY, TN4 vec4 columns of output channels per
/// workgroup (as many as `cfg` asks for, at most 16 channels for ALPHA 4 and 8 for ALPHA 6,
/// and dividing the output channels' vec4 so that no workgroup reads past its window), or
/// None for too few input channels.
fn weight_gradient_plan(g: &ConvGeom, cfg: &TileConfig) -> Option<Plan> {
    let r = g.kh;
    let a2 = (r + 1) * (r + 1);
    let cout4 = g.cout.div_ceil(4);
    if g.cin < DW_MIN_CHANNELS || a2 * cout4 > WINDOW_VEC4 {
        return None;
    }
    let mut tn4 = (cfg.tn / 4).min(dw_max_tn4(r)).max(1);
    while cout4 % tn4 != 0 {
        tn4 /= 2;
    }
    Some(Plan {
        m: 2,
        r,
        tn4,
        kp: 0,
        run: 1,
        part_channels: 0,
    })
}

/// The widest TN4 its weight gradient kernel is written out for: 2 channels x ALPHA^2 x TN4
/// vec4 sums per invocation, 128 for ALPHA 4 and 144 for ALPHA 6.
fn dw_max_tn4(r: usize) -> usize {
    if r == 3 {
        4
    } else {
        2
    }
}

/// The run length for rows of `tiles` output tiles, from the runs' measured speeds on the
/// model's layers (docs/PERFORMANCE.md): 4 on wide rows, 3 down to 9 tiles, else 2 (a run
/// that overhangs the row's end still pays for its dead tiles' loads and sums).
fn run_for_row(tiles: usize) -> usize {
    match tiles {
        32.. => 4,
        9.. => 3,
        2.. => 2,
        _ => 1,
    }
}

/// Whether 16-channel blocks in runs of 2 beat 8-channel blocks in the longer runs of
/// `run_for_row` on a product whose rows hold `tiles` 2x2 tiles: each input column is loaded
/// and transformed once for twice the output channels, for as many sums per invocation. On
/// lavapipe (docs/PERFORMANCE.md, step 26) they took 0.79-0.93x the time on every layer of
/// the model with rows of 32 tiles or more and on 36x36x32->64, the same on 18x18x64->64,
/// and 1.05x on 36x36x128->64, whose block exceeds a window and so sums its channels in two
/// dispatches: wide rows, or a block that fits one window.
fn wide_blocks(product: Product, g: &ConvGeom, tiles: usize) -> bool {
    let wide = TileConfig::new(FAMILY, 2, 16, 1);
    let channels = product.gemm(g).2 / (g.kh * g.kw);
    tiles >= 32 || plan(product, g, &wide).is_some_and(|p| p.part_channels >= channels)
}

/// What runs a product this family cannot or should not: the taps family's kernel for the
/// shape where it has one (a forward; a 5x5 weight gradient on few channels), else the
/// uniform family's rule.
fn fallback(product: Product, g: &ConvGeom) -> TileConfig {
    match product {
        Product::Forward => taps::default_forward(g),
        Product::GradWeight if taps::serves_grad_weight(g) => {
            Some(taps::FAMILY.default_for(product, g))
        }
        _ => None,
    }
    .unwrap_or_else(|| uniform::FAMILY.default_for(product, g))
}

impl ConvFamily for Winograd {
    fn name(&self) -> &'static str {
        "winograd"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        SHADER
    }

    fn shaders(&self) -> Vec<(&'static str, &'static str)> {
        vec![SHADER, SUBGROUP_SHADER]
    }

    fn role(&self, device: wgpu::DeviceType) -> Role {
        if device == wgpu::DeviceType::Cpu {
            Role::Native
        } else {
            Role::Unused
        }
    }

    fn f16_stand_in(&self) -> Option<Family> {
        uniform::FAMILY.f16_stand_in()
    }

    /// A 2x2 tile with up to 16 channels, or a 4x4 tile with up to 8 (the accumulators of a
    /// 6x6 transform, 36 per vec4 column) and no run (its kernel is written for one tile).
    fn valid(&self, cfg: &TileConfig) -> bool {
        (cfg.tm == 2 || (cfg.tm == 4 && cfg.run == 1))
            && [4, 8, 16].contains(&cfg.tn)
            && cfg.tn / 4 <= max_tn4(cfg.tm)
            && cfg.threads_n == 1
            && cfg.wg == WG
    }

    fn max_run(&self) -> usize {
        MAX_RUN
    }

    /// Every tile and width alone; the default tile also in runs of 2, 3 and 4, and for
    /// more than 8 channels a 2x2 tile 16 channels wide in runs of 2 (longer runs of it hold
    /// 192 and more vec4 sums, which llvmpipe compiles for longer, and ran no faster).
    fn candidates(&self, gn: usize) -> Vec<TileConfig> {
        let width = gn.next_power_of_two().max(4);
        let mut out = Vec::new();
        for tm in [2, 4] {
            for tn in [4, 8, 16] {
                let c = TileConfig::new(FAMILY, tm, tn, 1);
                if c.valid() && tn <= width {
                    out.push(c);
                }
            }
        }
        let d = self.default_tile(gn);
        for run in 1..=MAX_RUN {
            let c = d.with_run(run);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if width >= 16 {
            out.push(TileConfig::new(FAMILY, 2, 16, 1).with_run(2));
        }
        out
    }

    /// 2x2 output tiles, 8 channels, one tile per invocation. In runs (`default_for`) a 2x2
    /// tile beats a single 4x4 tile on every 3x3 layer of the model: neighbours share half
    /// their input columns and every filter load, 128 accumulators compile as fast as a 4x4
    /// tile's 72, and F(2x2, 3x3) rounds about a sixth as much as F(4x4, 3x3)
    /// (docs/PERFORMANCE.md, the Winograd steps).
    fn default_tile(&self, gn: usize) -> TileConfig {
        TileConfig::new(FAMILY, 2, gn.next_power_of_two().clamp(4, 8), 1)
    }

    /// Winograd where it runs, the uniform family's rule elsewhere. Products of 16 output
    /// channels or more take 16-channel blocks in runs of 2 (`wide_blocks`), the rest the
    /// default tile in runs as long as the rows allow (`run_for_row`). Wider blocks or longer
    /// runs cost llvmpipe superlinear compile time: 8 channels of a 6x6 transform in runs of
    /// 4 took a minute (docs/PERFORMANCE.md, steps 18 and 19).
    fn default_for(&self, product: Product, g: &ConvGeom) -> TileConfig {
        let gn = product.gemm(g).1;
        let c = self.resolve(product, g, self.default_tile(gn), false);
        if c.family != FAMILY || product == Product::GradWeight {
            return c;
        }
        let row = match product {
            Product::Forward => g.ow,
            _ => g.w,
        };
        let tiles = row.div_ceil(c.tm);
        if gn >= 16 && wide_blocks(product, g, tiles) {
            return TileConfig::new(FAMILY, 2, 16, 1).with_run(run_for_row(tiles).min(2));
        }
        c.with_run(run_for_row(tiles))
    }

    /// A training forward runs in the uniform family, whose sums round exactly as the direct
    /// kernel's: the extra rounding of the transforms moves leaky ReLU and max-pooling kinks
    /// that the gradient reads (docs/PERFORMANCE.md, the Winograd step).
    fn resolve(
        &self,
        product: Product,
        g: &ConvGeom,
        cfg: TileConfig,
        for_gradient: bool,
    ) -> TileConfig {
        // One or two vec4 of output channels leave Winograd's per-channel input transforms
        // little to share them with: the written-out taps ran such layers 1.7x (`enc.conv0`,
        // 3 -> 3 channels, 5x5) and 1.1x (`enc.conv1`, 3 -> 8) as fast, and 16 channels
        // (`enc.conv2`) 0.95x.
        let narrow = g.cout <= 8 && taps::default_forward(g).is_some();
        if product == Product::Forward && (for_gradient || narrow) {
            return fallback(product, g);
        }
        match plan(product, g, &cfg) {
            Some(p) => TileConfig::new(FAMILY, p.m, p.tn4 * 4, 1).with_run(p.run),
            None => fallback(product, g),
        }
    }

    fn describe(&self, cfg: &TileConfig) -> String {
        format!(
            "winograd {m}x{m} output tiles in runs of {}, {} channels per workgroup",
            cfg.run,
            cfg.tn,
            m = cfg.tm
        )
    }

    fn launches(&self, cfg: &TileConfig) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)> {
        let mut out = Vec::new();
        for r in [3, 5] {
            let m = if r == 5 { 2 } else { cfg.tm };
            let plan = Plan {
                m,
                r,
                tn4: (cfg.tn / 4).min(max_tn4(m)),
                kp: 0,
                run: cfg.run,
                part_channels: 0,
            };
            for product in [Product::Forward, Product::GradInput] {
                out.push((&WEIGHTS, constants(&plan, product, Act::None)));
            }
            for shared in [false, true] {
                out.push((
                    plan.kernel(shared),
                    constants(&plan, Product::Forward, Act::None),
                ));
            }
            let dw = Plan {
                m: 2,
                tn4: (cfg.tn / 4).min(dw_max_tn4(r)).max(1),
                run: 1,
                ..plan
            };
            for k in [
                &DW_PACK,
                dw.weight_gradient_kernel(false),
                dw.weight_gradient_kernel(true),
                &DW_FINISH,
            ] {
                out.push((k, constants(&dw, Product::GradWeight, Act::None)));
            }
        }
        out
    }

    fn forward(&self, gpu: &Gpu, cfg: &TileConfig, g: &ConvGeom, op: &ForwardOperands, y: &Tensor) {
        match plan(Product::Forward, g, cfg) {
            Some(p) => {
                f32_only("conv forward (winograd family)", &[op.x, op.w]);
                product(
                    gpu,
                    Product::Forward,
                    &p,
                    g,
                    y,
                    op.x,
                    op.w,
                    op.bias,
                    op.affine,
                    op.act,
                );
            }
            None => {
                let c = fallback(Product::Forward, g);
                c.family.forward(gpu, &c, g, op, y)
            }
        }
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
        match plan(Product::GradInput, g, cfg) {
            Some(p) => product(
                gpu,
                Product::GradInput,
                &p,
                g,
                dx,
                dz,
                w,
                None,
                None,
                Act::None,
            ),
            None => {
                let c = fallback(Product::GradInput, g);
                c.family.grad_input(gpu, &c, g, dz, w, dx)
            }
        }
    }

    fn grad_weight(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        x: &Tensor,
        dz: &Tensor,
    ) -> Tensor {
        match plan(Product::GradWeight, g, cfg) {
            Some(p) => {
                f32_only("conv weight gradient (winograd family)", &[x, dz]);
                weight_gradient(gpu, &p, g, x, dz)
            }
            None => {
                let c = fallback(Product::GradWeight, g);
                c.family.grad_weight(gpu, &c, g, x, dz)
            }
        }
    }
}

/// The shader's override constants.
fn constants(plan: &Plan, product: Product, act: Act) -> Vec<(&'static str, f64)> {
    vec![
        ("MODE", product.mode() as f64),
        ("ACT", act as u32 as f64),
        ("M", plan.m as f64),
        ("R", plan.r as f64),
        ("TN4", plan.tn4 as f64),
        ("TT", plan.run as f64),
    ]
}

/// The shader's parameter block, field by field as shaders/conv_winograd.wgsl `Params`: the
/// source image, the output, the padding before, the tile grid, the filter block, and the
/// input channels this dispatch sums with how it stores them.
struct Params {
    src: [usize; 3],
    out: [usize; 3],
    pad: [usize; 2],
    tiles: [usize; 2],
    runs_x: usize,
    kp: usize,
    b0: usize,
    has_bias: bool,
    has_bn: bool,
    channels: [usize; 2],
    adds: bool,
    partial: bool,
}

impl Params {
    fn block(&self, g: &ConvGeom) -> [u32; 24] {
        let u = |v: usize| v as u32;
        [
            u(g.n),
            u(self.src[0]),
            u(self.src[1]),
            u(self.src[2]),
            u(self.out[0]),
            u(self.out[1]),
            u(self.out[2]),
            u(self.pad[0]),
            u(self.pad[1]),
            u(self.tiles[0]),
            u(self.tiles[1]),
            u(g.n * self.tiles[0] * self.runs_x),
            u(self.kp),
            u(self.b0),
            self.has_bias as u32,
            self.has_bn as u32,
            u(g.cin),
            u(g.cout),
            u(self.runs_x),
            u(self.channels[0]),
            u(self.channels[1]),
            self.adds as u32,
            self.partial as u32,
            0,
        ]
    }
}

/// The forward product (source x, output y) or the input gradient (source dY, output dX):
/// the filter transformed into blocks of TN4 vec4 columns, then one dispatch per window of
/// as many whole blocks as fit 64 KiB, or, where one block does not fit, one dispatch per
/// block and part of its input channels (`Plan::part_channels`).
#[allow(clippy::too_many_arguments)]
fn product(
    gpu: &Gpu,
    product: Product,
    plan: &Plan,
    g: &ConvGeom,
    out: &Tensor,
    src: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    affine: Option<&Tensor>,
    act: Act,
) {
    let (src_dims, out_dims, pad) = match product {
        Product::Forward => ([g.h, g.w, g.cin], [g.oh, g.ow, g.cout], [g.pad_t, g.pad_l]),
        _ => (
            [g.oh, g.ow, g.cout],
            [g.h, g.w, g.cin],
            [g.kh - 1 - g.pad_t, g.kw - 1 - g.pad_l],
        ),
    };
    let gn = out_dims[2];
    let channels = src_dims[2];
    let tiles = [out_dims[0].div_ceil(plan.m), out_dims[1].div_ceil(plan.m)];
    let mut params = Params {
        src: src_dims,
        out: out_dims,
        pad,
        tiles,
        runs_x: tiles[1].div_ceil(plan.run),
        kp: plan.kp,
        b0: 0,
        has_bias: bias.is_some(),
        has_bn: affine.is_some(),
        channels: [0, channels],
        adds: false,
        partial: false,
    };
    let blocks = gn.div_ceil(plan.tn4 * 4);
    let block_vec4 = plan.kp * plan.tn4;
    // The last window may start anywhere in the packed blocks: 64 KiB of padding behind them.
    let packed_vec4 = blocks * block_vec4;
    // The transformed filter depends on the weights, the kernel's constants and the parameters
    // `winograd_weights` reads (gn, kp, sc, cin, cout); kept until the weights are written.
    let transform = constants(plan, product, Act::None);
    let tag = format!(
        "winograd_weights {transform:?} gn {gn} kp {} sc {channels} cin {} cout {}",
        plan.kp, g.cin, g.cout
    );
    let packed = gpu.derived(w, tag, || {
        let packed = gpu.empty(&[(packed_vec4 + WINDOW_VEC4) * 4]);
        gpu.dispatch(
            &WEIGHTS,
            &transform,
            &params.block(g),
            &[packed.raw(), w.raw()],
            grid_1d_of(packed_vec4, WG),
            (0.0, (w.bytes() as usize + packed_vec4 * 16) as f64),
        );
        packed
    });
    let count = g.n * tiles[0] * params.runs_x;
    let (gy, gz) = super::geometry::m_groups(count.div_ceil(WG));
    let bias_buf = bias.unwrap_or(w).raw();
    let bn_buf = affine.unwrap_or(w).raw();
    let kernel = plan.kernel(gpu.kernels.borrow().shared_loads());
    let a2 = points(plan.m, plan.r);
    // Windows: (first block, blocks, offset in vec4, channel part).
    let mut windows = Vec::new();
    if plan.part_channels >= channels {
        let per = WINDOW_VEC4 / block_vec4;
        for b0 in (0..blocks).step_by(per) {
            windows.push((b0, per.min(blocks - b0), b0 * block_vec4, [0, channels]));
        }
    } else {
        for b in 0..blocks {
            for c0 in (0..channels).step_by(plan.part_channels) {
                let c1 = (c0 + plan.part_channels).min(channels);
                windows.push((b, 1, b * block_vec4 + c0 * a2 * plan.tn4, [c0, c1]));
            }
        }
    }
    // The multiplications of direct summation, so that GFLOP/s compare across families.
    let flops_per_channel_block = g.flops() / (blocks * channels) as f64;
    let bytes = (src.bytes() + out.bytes()) as f64;
    for (b0, nblocks, offset, part) in windows {
        params.b0 = b0;
        params.channels = part;
        params.adds = part[0] > 0;
        params.partial = part[1] < channels;
        let bindings = [
            whole(out.raw()),
            whole(src.raw()),
            uniform_window(packed.raw(), offset),
            whole(bias_buf),
            whole(bn_buf),
        ];
        gpu.dispatch_bindings(
            kernel,
            DType::F32,
            &constants(plan, Product::Forward, act),
            &params.block(g),
            &bindings,
            [nblocks as u32, gy, gz],
            (
                flops_per_channel_block * (nblocks * (part[1] - part[0])) as f64,
                bytes,
            ),
        );
    }
}

/// The weight gradient's parameter block, field by field as shaders/conv_winograd.wgsl
/// `DwParams`: the tile grid, the tiles of this dispatch, the tiles per window and per
/// workgroup slice, the slices, and whether this window starts the sums.
struct DwParams {
    tiles: [usize; 2],
    first_tile: usize,
    count: usize,
    per_window: usize,
    chunk: usize,
    slices: usize,
    first: bool,
}

impl DwParams {
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
            u(g.cout.div_ceil(4)),
            u(g.pad_t),
            u(g.pad_l),
            u(self.tiles[0]),
            u(self.tiles[1]),
            u(self.first_tile),
            u(self.count),
            u(self.per_window),
            u(self.chunk),
            u(self.slices),
            self.first as u32,
            0,
            0,
        ]
    }
}

/// dW by F(R x R, 2 x 2) (shaders/conv_winograd.wgsl): dY transformed into windows of whole
/// 2x2 tiles, DW_PACKED_WINDOWS at a time; one dispatch per window, whose workgroups add
/// their slice of its tiles into `sums`; then the slices added and transformed back.
fn weight_gradient(gpu: &Gpu, plan: &Plan, g: &ConvGeom, x: &Tensor, dz: &Tensor) -> Tensor {
    let a2 = (plan.r + 1) * (plan.r + 1);
    let cout4 = g.cout.div_ceil(4);
    let tiles = [g.oh.div_ceil(2), g.ow.div_ceil(2)];
    let total = g.n * tiles[0] * tiles[1];
    let per_window = WINDOW_VEC4 / (a2 * cout4);
    let windows = total.div_ceil(per_window);
    let groups = [g.cin.div_ceil(2 * WG), cout4 / plan.tn4];
    // At least 4 workgroups per dispatch (dispatches run one after another), none with
    // fewer than 8 tiles.
    let slices = 4usize
        .div_ceil(groups[0] * groups[1])
        .min(per_window.min(total).div_ceil(8))
        .max(1);
    let chunk = per_window.min(total).div_ceil(slices);
    let mut params = DwParams {
        tiles,
        first_tile: 0,
        count: 0,
        per_window,
        chunk,
        slices,
        first: false,
    };
    let consts = constants(plan, Product::GradWeight, Act::None);
    let sums = gpu.empty(&[slices * a2 * g.cin * cout4 * 4]);
    let batch = DW_PACKED_WINDOWS.min(windows);
    let packed = gpu.empty(&[batch * WINDOW_VEC4 * 4]);
    let flops_per_window = g.flops() / windows as f64;
    let bytes_per_window = (x.bytes() / windows as u64) as f64 + crate::gpu::UNIFORM_WINDOW as f64;
    for first_window in (0..windows).step_by(batch) {
        let first_tile = first_window * per_window;
        let count = (batch * per_window).min(total - first_tile);
        params.first_tile = first_tile;
        params.count = count;
        gpu.dispatch(
            &DW_PACK,
            &consts,
            &params.block(g),
            &[packed.raw(), dz.raw()],
            grid_1d_of(count * cout4, WG),
            (0.0, (count * cout4 * (16 + a2 * 16)) as f64),
        );
        for w in 0..count.div_ceil(per_window) {
            params.first_tile = first_tile + w * per_window;
            params.count = per_window.min(total - params.first_tile);
            params.first = first_window + w == 0;
            let bindings = [
                whole(sums.raw()),
                whole(x.raw()),
                uniform_window(packed.raw(), w * WINDOW_VEC4),
            ];
            gpu.dispatch_bindings(
                plan.weight_gradient_kernel(gpu.kernels.borrow().shared_loads()),
                DType::F32,
                &consts,
                &params.block(g),
                &bindings,
                [groups[0] as u32, groups[1] as u32, slices as u32],
                (flops_per_window, bytes_per_window),
            );
        }
    }
    let dw = gpu.empty(&g.weight_shape());
    gpu.dispatch(
        &DW_FINISH,
        &consts,
        &params.block(g),
        &[dw.raw(), sums.raw()],
        grid_1d_of(g.cin * cout4, WG),
        (0.0, (sums.bytes() + dw.bytes()) as f64),
    );
    dw
}
