//! A CPU-driver family for stride-1 forward products with few input channels (the encoder's
//! first 5x5 layers): shaders/conv_taps.wgsl, written by tools/gen_conv_taps.py, spells out
//! every tap and channel, so that each weight is read at a constant offset of its uniform
//! window, which llvmpipe loads once and broadcasts (an offset that moves with a loop counter
//! is a gather per lane), and each input an invocation gathers serves every tap of a run of
//! adjacent pixels that reaches it. The sums are associated as the direct kernel's, so the
//! results are the same to the bit and a training forward may run here. In its
//! `TileConfig`, TM is the run of pixels per invocation and TN the output channels of one
//! dispatch (a block of TN / 4 vec4 columns; wider layers take one dispatch per block).
//! Every other product, and every shape without a written-out kernel, runs in the uniform
//! family.

use super::geometry::m_groups;
use super::{
    direct, uniform, ConvFamily, ConvGeom, Family, ForwardOperands, Product, Role, TileConfig,
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

/// One written-out kernel: input channels, filter size (square), vec4 output columns per
/// dispatch, pixels per invocation.
pub struct TapsKernel {
    pub cin: usize,
    pub k: usize,
    pub n4: usize,
    pub run: usize,
    kernel: Kernel,
}

macro_rules! taps {
    ($cin:literal, $k:literal, $n4:literal, $r:literal) => {
        TapsKernel {
            cin: $cin,
            k: $k,
            n4: $n4,
            run: $r,
            kernel: kernel_in(
                SHADER,
                concat!("conv_taps_c", $cin, "_k", $k, "_n", $n4, "_r", $r),
                BINDINGS,
            ),
        }
    };
}

/// Every entry point of the shader (tools/gen_conv_taps.py `CONFIGS`, in its order).
pub static KERNELS: &[TapsKernel] = &[
    taps!(3, 5, 1, 4),
    taps!(3, 5, 2, 4),
    taps!(3, 5, 2, 8),
    taps!(8, 5, 2, 4),
    taps!(8, 5, 4, 4),
];

/// Whether `g` is a shape the family has kernels for (stride 1, square filter, and a kernel
/// for its input channels and filter size).
fn serves(g: &ConvGeom) -> bool {
    g.stride == 1 && g.kh == g.kw && KERNELS.iter().any(|t| t.cin == g.cin && t.k == g.kh)
}

/// The kernel that runs `cfg` on `g`, if there is one.
fn kernel_for(g: &ConvGeom, cfg: &TileConfig) -> Option<&'static TapsKernel> {
    if !serves(g) {
        return None;
    }
    KERNELS
        .iter()
        .find(|t| t.cin == g.cin && t.k == g.kh && t.n4 * 4 == cfg.tn && t.run == cfg.tm)
}

/// Where the family has no kernel, the uniform family runs the product.
fn fallback(product: Product, g: &ConvGeom) -> TileConfig {
    uniform::FAMILY.default_for(product, g)
}

/// The family's own default for the forward of `g`: the widest block up to the layer's
/// channels, at its longest run (the runs measured fastest on llvmpipe).
pub fn default_forward(g: &ConvGeom) -> Option<TileConfig> {
    if !serves(g) {
        return None;
    }
    let want = g.cout.div_ceil(4);
    KERNELS
        .iter()
        .filter(|t| t.cin == g.cin && t.k == g.kh && t.n4 <= want.max(1))
        .max_by_key(|t| (t.n4, t.run))
        .map(|t| TileConfig::new(FAMILY, t.run, t.n4 * 4, 1))
}

impl ConvFamily for Taps {
    fn name(&self) -> &'static str {
        "taps"
    }

    fn shader(&self) -> (&'static str, &'static str) {
        SHADER
    }

    /// Its own, and the uniform family's, whose `pack_weights` lays the weights out.
    fn shaders(&self) -> Vec<(&'static str, &'static str)> {
        vec![SHADER, uniform::SHADER]
    }

    /// On CPU adapters the winograd family hands it the forward products it has kernels for
    /// where Winograd runs them slower or may not run them (a training forward); `asna tune`
    /// times it.
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
        if product != Product::Forward {
            return fallback(product, g);
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
        for b in 0..blocks {
            params.b0 = b;
            let bindings = [
                whole(y.raw()),
                whole(op.x.raw()),
                uniform_window(packed.raw(), b * params.kp * t.n4),
                whole(bias),
                whole(bn),
            ];
            gpu.dispatch_bindings(
                &t.kernel,
                DType::F32,
                &[("ACT", op.act as u32 as f64)],
                &params.block(g),
                &bindings,
                [1, gy, gz],
                (
                    g.flops() / blocks as f64,
                    (op.x.bytes() + y.bytes() / blocks as u64) as f64,
                ),
            );
        }
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
        let c = fallback(Product::GradWeight, g);
        c.family.grad_weight(gpu, &c, g, x, dz)
    }
}
