//! Convolution (and, through it, conv1d and dense layers) as implicit GEMM: forward with fused
//! bias and activation (and, for scoring, a folded evaluation-mode batch norm), gradient of
//! the input, gradient of the weight, and the bias gradient.
//!
//! The products run in kernel families. A family is one unit: one file here implementing
//! `ConvFamily` (its shader, limits, search space, default rule, launches and parameter
//! block) and one line in `FAMILIES`. `policy.rs` chooses a family and tile for each shape
//! from the families' own rules; no code outside the family files names a family. Adding one
//! takes a shader in shaders/, a file here implementing `ConvFamily` (declared below with
//! `pub mod`), and its line in `FAMILIES`; the tests (tests/ops/conv.rs, tests/inference.rs,
//! tests/f16.rs, tests/tune.rs, tests/shaders.rs) loop over `FAMILIES` and pick it up
//! (docs/PERFORMANCE.md, "Adding a kernel family").
//!
//! Files: `geometry.rs` (shapes, products, tuning keys) · `config.rs` (`TileConfig`) ·
//! `policy.rs` (the choice per shape) · `gemm.rs` (launches of shaders/conv.wgsl, shared by
//! `tiled.rs` and `direct.rs`) · `uniform.rs` (shaders/conv_uniform.wgsl) · `winograd.rs`
//! (shaders/conv_winograd.wgsl) · `taps.rs` (shaders/conv_taps.wgsl) · `col2im.rs` (strided
//! input gradients without the skipped taps, shaders/conv_col2im.wgsl)
//! · Reference: `conv_ref` in tests/common/mod.rs · Tests: tests/ops/conv.rs (and every tile
//! configuration in tests/tune.rs) · Tape rule: `Op::Conv` in src/autograd/mod.rs

pub mod col2im;
mod config;
pub mod direct;
mod gemm;
mod geometry;
pub mod policy;
pub mod taps;
pub mod tiled;
pub mod uniform;
pub mod winograd;

pub use config::TileConfig;
pub use gemm::WORKGROUP_SIZES;
pub use geometry::{parse_tune_key, same_padding, tune_key, ConvGeom, Product};
pub use policy::KernelPolicy;

use super::{f32_only, reduce, same_dtype, Act};
use crate::gpu::{DType, Gpu, Kernel, Tensor};

/// Every convolution family. `ASNA_CONV`, the tuning cache, `asna tune` and the tests reach
/// a family through this list alone.
pub const FAMILIES: &[Family] = &[
    tiled::FAMILY,
    direct::FAMILY,
    uniform::FAMILY,
    winograd::FAMILY,
    taps::FAMILY,
];

/// How a family serves one type of adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs every shape without a tuned entry (one family per adapter type).
    Native,
    /// Timed by `asna tune` beside the native family.
    Candidate,
    /// Neither: the family runs there only when forced or when a tuned entry names it.
    Unused,
}

/// The operands of one forward product: y = act(conv(x, w) + bias), then, with `affine`, the
/// per-channel map y * scale + shift of a folded evaluation-mode batch norm.
pub struct ForwardOperands<'a> {
    pub x: &'a Tensor,
    pub w: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub affine: Option<&'a Tensor>,
    pub act: Act,
}

/// A convolution kernel family: everything the policy and the ops need to know about it.
pub trait ConvFamily: Sync {
    /// Its name in `ASNA_CONV`, the tuning cache and reports.
    fn name(&self) -> &'static str;

    /// Its shader: file name and WGSL source (embedded with `include_str!`).
    fn shader(&self) -> (&'static str, &'static str);

    /// Every shader its kernels come from: `shader()`, and any module of variants it keeps
    /// apart (a module using subgroups, which devices without them reject).
    fn shaders(&self) -> Vec<(&'static str, &'static str)> {
        vec![self.shader()]
    }

    /// Whether it is native, a tuning candidate, or unused on adapters of this type.
    fn role(&self, device: wgpu::DeviceType) -> Role;

    /// The family whose default tile runs this one's products on f16 storage; None when it
    /// runs f16 itself.
    fn f16_stand_in(&self) -> Option<Family>;

    /// Whether its shader can run this configuration (its limits).
    fn valid(&self, cfg: &TileConfig) -> bool;

    /// The longest run of output tiles one invocation can own (`TileConfig::run`).
    fn max_run(&self) -> usize {
        1
    }

    /// Configurations worth timing for a product `gn` wide, `default_tile(gn)` included.
    fn candidates(&self, gn: usize) -> Vec<TileConfig>;

    /// Its built-in tile for a product `gn` wide (also what it runs when forced).
    fn default_tile(&self, gn: usize) -> TileConfig;

    /// What runs a product of this shape without a tuned entry when the family is native; it
    /// may hand shapes the family runs badly to another family.
    fn default_for(&self, product: Product, g: &ConvGeom) -> TileConfig {
        self.default_tile(product.gemm(g).1)
    }

    /// The configuration that actually runs `product` of this shape when `cfg` is asked for:
    /// `cfg` itself, unless the family cannot run the shape (or not with this tile) and hands
    /// it to another family or a narrower tile. The ops run, and reports name, this one.
    /// `for_gradient`: the product is a training forward whose result the backward pass reads
    /// (the kinks of leaky ReLU and max pooling are decided by its rounding), or a gradient.
    fn resolve(
        &self,
        _product: Product,
        _g: &ConvGeom,
        cfg: TileConfig,
        _for_gradient: bool,
    ) -> TileConfig {
        cfg
    }

    /// `cfg` in words, for reports.
    fn describe(&self, cfg: &TileConfig) -> String {
        format!(
            "{} {}x{} per thread, {} threads along N of {} (tile {}x{})",
            self.name(),
            cfg.tm,
            cfg.tn,
            cfg.threads_n,
            cfg.wg,
            cfg.bm(),
            cfg.bn()
        )
    }

    /// Every kernel it dispatches for `cfg`, with its override constants (shaders validated
    /// under each by tests/shaders.rs).
    fn launches(&self, cfg: &TileConfig) -> Vec<(&'static Kernel, Vec<(&'static str, f64)>)>;

    /// Writes the forward product into `y` (f32, or f16 unless `f16_stand_in` says otherwise).
    fn forward(&self, gpu: &Gpu, cfg: &TileConfig, g: &ConvGeom, op: &ForwardOperands, y: &Tensor);

    /// Writes dX into `dx` from dZ (the gradient at the convolution's output, before
    /// activation) and the weight w; f32.
    fn grad_input(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        dz: &Tensor,
        w: &Tensor,
        dx: &Tensor,
    );

    /// dW [kh, kw, cin, cout] from the input x and dZ; f32.
    fn grad_weight(
        &self,
        gpu: &Gpu,
        cfg: &TileConfig,
        g: &ConvGeom,
        x: &Tensor,
        dz: &Tensor,
    ) -> Tensor;
}

/// A handle on one registered family, compared, hashed and serialised by name.
#[derive(Clone, Copy)]
pub struct Family(&'static dyn ConvFamily);

impl Family {
    pub fn parse(name: &str) -> Option<Family> {
        FAMILIES.iter().copied().find(|f| f.name() == name)
    }

    /// The family native to this type of adapter (`Role::Native`).
    pub fn native(device: wgpu::DeviceType) -> Family {
        FAMILIES
            .iter()
            .copied()
            .find(|f| f.role(device) == Role::Native)
            .unwrap_or(FAMILIES[0])
    }
}

impl std::ops::Deref for Family {
    type Target = dyn ConvFamily;
    fn deref(&self) -> &(dyn ConvFamily + 'static) {
        self.0
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Family) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Family {}

impl std::hash::Hash for Family {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state)
    }
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Family {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Family, D::Error> {
        let name = String::deserialize(d)?;
        Family::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown kernel family {name:?}")))
    }
}

/// The configuration for one product on this adapter (see `KernelPolicy::choose`).
pub fn choose(gpu: &Gpu, product: Product, g: &ConvGeom) -> TileConfig {
    gpu.kernels.borrow_mut().choose(product, g)
}

/// What runs `product` of `g` for `cfg` (`ConvFamily::resolve`), noted in the policy's
/// record of the configurations used.
fn resolved(
    gpu: &Gpu,
    product: Product,
    g: &ConvGeom,
    cfg: TileConfig,
    for_gradient: bool,
) -> TileConfig {
    let cfg = cfg.family.resolve(product, g, cfg, for_gradient);
    gpu.kernels.borrow_mut().note_use(product, g, &cfg);
    cfg
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
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let cfg = choose(gpu, Product::Forward, &g);
    forward_configured(gpu, x, w, b, stride, act, affine, cfg, false)
}

/// A convolution of the decoder's concatenation [up(low), |f(R) - f(D)|] (low [N, H/2,
/// W/2, C1], feats the stacked features [2N, H, W, C2]) that reads it from its two sources
/// instead of a built tensor: where the configuration the policy picks for it has such a
/// kernel (the taps family's, for `dec.down0` on CPU adapters). Elsewhere the caller builds
/// the concatenation (`concat::upsample_absdiff_concat`).
///
/// Only there: `dec.down0` reads 9 of every 16 pixels of its 288x288x24 input, the largest
/// concatenation, which then is never written. A Winograd product reading the 3x3 blocks'
/// concatenations from their sources ran slower than building them (it loads both images'
/// features for each difference channel of every tile; docs/PERFORMANCE.md, step 25).
pub struct UpAbsdiffConv {
    g: ConvGeom,
    cfg: TileConfig,
    kernel: &'static taps::TapsUpDiffKernel,
}

impl UpAbsdiffConv {
    /// The convolution by w at `stride` of the concatenation of `low` and `feats`, or None
    /// where no kernel reads that concatenation from its sources.
    pub fn plan(
        gpu: &Gpu,
        low: &Tensor,
        feats: &Tensor,
        w: &Tensor,
        stride: usize,
    ) -> Option<UpAbsdiffConv> {
        let (n, lh, lw, c1) = low.nhwc();
        let (n2, h, fw, c2) = feats.nhwc();
        if n2 != 2 * n || h != 2 * lh || fw != 2 * lw {
            return None;
        }
        if [low.dtype, feats.dtype, w.dtype] != [DType::F32; 3] {
            return None;
        }
        let g = ConvGeom::new(&[n, h, fw, c1 + c2], &w.shape, stride);
        let cfg = choose(gpu, Product::Forward, &g);
        let cfg = cfg.family.resolve(Product::Forward, &g, cfg, false);
        let kernel = taps::up_diff_kernel(&g, &cfg, c1, c2)?;
        Some(UpAbsdiffConv { g, cfg, kernel })
    }

    /// act(conv + b) * scale + shift, as `forward_affine` on the built concatenation.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        gpu: &Gpu,
        low: &Tensor,
        feats: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        act: Act,
        affine: Option<&Tensor>,
    ) -> Tensor {
        assert_eq!(w.shape, self.g.weight_shape(), "conv weight shape");
        if let Some(b) = b {
            assert_eq!(b.numel(), self.g.cout, "conv bias size");
        }
        if let Some(a) = affine {
            assert_eq!(
                a.numel(),
                2 * self.g.cout,
                "conv affine map: [scale; shift]"
            );
        }
        gpu.kernels
            .borrow_mut()
            .note_use(Product::Forward, &self.g, &self.cfg);
        let y = gpu.empty(&self.g.out_shape());
        let op = ForwardOperands {
            x: low,
            w,
            bias: b,
            affine,
            act,
        };
        self.kernel.forward(gpu, &self.g, low, feats, &op, &y);
        y
    }
}

/// `forward` in a training pass, whose result the backward pass reads: a family may run it
/// differently (`ConvFamily::resolve`).
pub fn forward_for_gradient(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    act: Act,
) -> Tensor {
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let cfg = choose(gpu, Product::Forward, &g);
    forward_configured(gpu, x, w, b, stride, act, None, cfg, true)
}

/// `forward` with an explicit kernel configuration (tuning, tests).
pub fn forward_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    act: Act,
    cfg: TileConfig,
) -> Tensor {
    forward_configured(gpu, x, w, b, stride, act, None, cfg, false)
}

#[allow(clippy::too_many_arguments)]
fn forward_configured(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    act: Act,
    affine: Option<&Tensor>,
    cfg: TileConfig,
    for_gradient: bool,
) -> Tensor {
    let dtype = same_dtype("conv", &[x, w]);
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let y = gpu.empty_as(&g.out_shape(), dtype);
    let cfg = match cfg.family.f16_stand_in() {
        Some(stand_in) if dtype != DType::F32 => stand_in.default_tile(g.cout),
        _ => cfg,
    };
    let cfg = resolved(gpu, Product::Forward, &g, cfg, for_gradient);
    if let Some(b) = b {
        assert_eq!(b.numel(), g.cout, "conv bias size");
        assert_eq!(b.dtype, DType::F32, "conv bias is f32");
    }
    if let Some(a) = affine {
        assert_eq!(a.numel(), 2 * g.cout, "conv affine map: [scale; shift]");
        assert_eq!(a.dtype, DType::F32, "conv affine map is f32");
    }
    let op = ForwardOperands {
        x,
        w,
        bias: b,
        affine,
        act,
    };
    cfg.family.forward(gpu, &cfg, &g, &op, &y);
    y
}

/// dX from dZ (the gradient at the convolution's output, before activation).
pub fn backward_input(gpu: &Gpu, dz: &Tensor, w: &Tensor, g: &ConvGeom) -> Tensor {
    backward_input_with(gpu, dz, w, g, choose(gpu, Product::GradInput, g))
}

/// `backward_input` with an explicit kernel configuration.
pub fn backward_input_with(
    gpu: &Gpu,
    dz: &Tensor,
    w: &Tensor,
    g: &ConvGeom,
    cfg: TileConfig,
) -> Tensor {
    f32_only("conv backward_input", &[dz, w]);
    let dx = gpu.empty(&[g.n, g.h, g.w, g.cin]);
    let cfg = resolved(gpu, Product::GradInput, g, cfg, true);
    cfg.family.grad_input(gpu, &cfg, g, dz, w, &dx);
    dx
}

/// dW [kh, kw, cin, cout] from the input x and dZ. The reduction runs over every output
/// position of the batch, so the families split it into slices summed afterwards.
pub fn backward_weight(gpu: &Gpu, x: &Tensor, dz: &Tensor, g: &ConvGeom) -> Tensor {
    backward_weight_with(gpu, x, dz, g, choose(gpu, Product::GradWeight, g))
}

/// `backward_weight` with an explicit kernel configuration.
pub fn backward_weight_with(
    gpu: &Gpu,
    x: &Tensor,
    dz: &Tensor,
    g: &ConvGeom,
    cfg: TileConfig,
) -> Tensor {
    f32_only("conv backward_weight", &[x, dz]);
    let cfg = resolved(gpu, Product::GradWeight, g, cfg, true);
    cfg.family.grad_weight(gpu, &cfg, g, x, dz)
}

/// The `slices` partial products of a split weight gradient ([slices, gm * gn], or dW itself
/// when there is one) summed into dW.
fn sum_weight_slices(gpu: &Gpu, partial: Tensor, slices: usize, g: &ConvGeom) -> Tensor {
    if slices == 1 {
        partial
    } else {
        reduce::sum_splits(gpu, &partial).reshape(&g.weight_shape())
    }
}

/// db = sum of dZ over every position.
pub fn backward_bias(gpu: &Gpu, dz: &Tensor) -> Tensor {
    f32_only("conv backward_bias", &[dz]);
    let c = dz.channels();
    let rows = dz.numel() / c;
    reduce::gradient_columns(
        gpu,
        &dz.reshape(&[1, rows, c]),
        reduce::Summand::Value,
        None,
        None,
        1.0,
    )
    .reshape(&[c])
}
