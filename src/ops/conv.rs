//! Convolution (and, through it, conv1d and dense layers) as implicit GEMM: forward with fused
//! bias and activation (and, for scoring, a folded evaluation-mode batch norm), gradient of
//! the input, gradient of the weight (split over K), and the bias gradient.
//!
//! Shaders: shaders/conv.wgsl (GPU and direct families), shaders/conv_uniform.wgsl (the
//! CPU-driver family) · Kernel choice: src/gpu/kernels.rs (families, tiles, tuning)
//! · Reference: `conv_ref` in tests/common/mod.rs · Tests: tests/ops/conv.rs (and every tile
//! configuration in tests/tune.rs) · Tape rule: `Op::Conv` in src/autograd/mod.rs

use super::{f32_only, kernel, kernel_f16, reduce, same_dtype, Act, R, RW, U};
use crate::gpu::kernels::{Family, TileConfig};
use crate::gpu::{grid_1d_of, DType, Gpu, Kernel, Tensor};

// The forward product runs on f32 or f16 storage; the gradients (same entry points, other
// MODEs) only on f32.
const CONV_TILED: Kernel = kernel_f16("conv.wgsl", "conv_gemm", &[RW, R, R, R, R]);
const CONV_DIRECT: Kernel = kernel_f16("conv.wgsl", "conv_direct", &[RW, R, R, R, R]);
const CONV_TILED_GRAD: Kernel = kernel("conv.wgsl", "conv_gemm", &[RW, R, R, R, R]);
const CONV_DIRECT_GRAD: Kernel = kernel("conv.wgsl", "conv_direct", &[RW, R, R, R, R]);

// The CPU-driver family (shaders/conv_uniform.wgsl), f32 only.
const CONV_UNIFORM: Kernel = kernel("conv_uniform.wgsl", "conv_uniform", &[RW, R, U, R, R]);
const CONV_UNIFORM_DW: Kernel = kernel("conv_uniform.wgsl", "conv_uniform_dw", &[RW, R, U]);
const PACK_ROWS: Kernel = kernel("conv_uniform.wgsl", "pack_rows", &[RW, R]);
const PACK_WEIGHTS: Kernel = kernel("conv_uniform.wgsl", "pack_weights", &[RW, R]);
/// vec4 in one uniform window (64 KiB).
const WINDOW_VEC4: usize = 4096;

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

/// The three products of the convolution kernels (the shader's MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    GradInput,
    GradWeight,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Forward, Product::GradInput, Product::GradWeight];
    fn mode(self) -> u32 {
        self as u32
    }
    pub fn name(self) -> &'static str {
        match self {
            Product::Forward => "fwd",
            Product::GradInput => "dx",
            Product::GradWeight => "dw",
        }
    }
    /// (M, N, K) of the product's matrix multiplication.
    pub fn gemm(self, g: &ConvGeom) -> (usize, usize, usize) {
        match self {
            Product::Forward => (g.n * g.oh * g.ow, g.cout, g.kh * g.kw * g.cin),
            Product::GradInput => (g.n * g.h * g.w, g.cin, g.kh * g.kw * g.cout),
            Product::GradWeight => (g.kh * g.kw * g.cin, g.cout, g.n * g.oh * g.ow),
        }
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

/// The kernel entry point of a family for one product (the forward also runs in f16).
fn entry(family: Family, product: Product) -> &'static Kernel {
    match (family, product) {
        (Family::Tiled, Product::Forward) => &CONV_TILED,
        (Family::Direct, Product::Forward) => &CONV_DIRECT,
        (Family::Tiled, _) => &CONV_TILED_GRAD,
        (Family::Direct, _) => &CONV_DIRECT_GRAD,
        (Family::Uniform, Product::GradWeight) => &CONV_UNIFORM_DW,
        (Family::Uniform, _) => &CONV_UNIFORM,
    }
}

/// The uniform family's constants: pixels per invocation and vec4 columns.
fn uniform_constants(cfg: &TileConfig, product: Product, act: Act) -> Vec<(&'static str, f64)> {
    vec![
        ("MODE", product.mode() as f64),
        ("ACT", act as u32 as f64),
        ("TM", cfg.tm as f64),
        ("TN4", (cfg.tn / 4) as f64),
    ]
}

/// The uniform family's parameter block (shaders/conv_uniform.wgsl `Params`).
struct UniformParams {
    gm: usize,
    gn: usize,
    gk: usize,
    kp: usize,
    has_bias: bool,
    has_bn: bool,
    b0: usize,
    k0: usize,
    k1: usize,
    first: bool,
    last: bool,
    k_chunk: usize,
}

impl UniformParams {
    fn block(&self, g: &ConvGeom) -> [u32; 28] {
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

/// The forward or grad-input product with the uniform family: the K x N weight matrix packed
/// into blocks of the workgroup's TN columns, then one dispatch per 64 KiB window: several
/// whole blocks where they fit, else one block's rows in slices over k, each adding to `out`.
#[allow(clippy::too_many_arguments)]
fn uniform_product(
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
    // Rows padded to 16 keep every window's offset a multiple of 256 bytes.
    let kp = gk.div_ceil(16) * 16;
    let mut params = UniformParams {
        gm,
        gn,
        gk,
        kp,
        has_bias: bias.is_some(),
        has_bn: affine.is_some(),
        b0: 0,
        k0: 0,
        k1: gk,
        first: true,
        last: true,
        k_chunk: 0,
    };
    // The last window may start anywhere in the packed rows: 64 KiB of padding behind them.
    let packed_vec4 = blocks * kp * tn4;
    let packed = gpu.empty(&[(packed_vec4 + WINDOW_VEC4) * 4]);
    gpu.dispatch(
        &PACK_WEIGHTS,
        &uniform_constants(&cfg, product, Act::None),
        &params.block(g),
        &[packed.raw(), w.raw()],
        grid_1d_of(packed_vec4, 64),
        (0.0, (w.bytes() as usize + packed_vec4 * 16) as f64),
    );
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    let bias_buf = bias.unwrap_or(w).raw();
    let bn_buf = affine.unwrap_or(w).raw();
    let flops_per_row_block = g.flops() / (gk * blocks) as f64;
    let bytes = (a.bytes() + out.bytes()) as f64;
    let launch = |params: &UniformParams, offset_vec4: usize, nblocks: usize| {
        let rows = (params.k1 - params.k0) * nblocks;
        let bindings = [
            wgpu::BufferBinding {
                buffer: out.raw(),
                offset: 0,
                size: None,
            },
            wgpu::BufferBinding {
                buffer: a.raw(),
                offset: 0,
                size: None,
            },
            wgpu::BufferBinding {
                buffer: packed.raw(),
                offset: (offset_vec4 * 16) as u64,
                size: wgpu::BufferSize::new(crate::gpu::UNIFORM_WINDOW),
            },
            wgpu::BufferBinding {
                buffer: bias_buf,
                offset: 0,
                size: None,
            },
            wgpu::BufferBinding {
                buffer: bn_buf,
                offset: 0,
                size: None,
            },
        ];
        gpu.dispatch_bindings(
            &CONV_UNIFORM,
            DType::F32,
            &uniform_constants(&cfg, product, act),
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

/// The tuning-cache key of one product's shape. The batch is left out: the best tile depends
/// on the layer's shape far more than on the number of images.
pub fn tune_key(product: Product, g: &ConvGeom) -> String {
    format!(
        "conv {} {}x{}x{}->{} k{}x{} s{}",
        product.name(),
        g.h,
        g.w,
        g.cin,
        g.cout,
        g.kh,
        g.kw,
        g.stride
    )
}

/// Parses a key made by `tune_key` back into its product and geometry (for `n` images).
pub fn parse_tune_key(key: &str, n: usize) -> Option<(Product, ConvGeom)> {
    let mut it = key.split(' ');
    if it.next()? != "conv" {
        return None;
    }
    let product = match it.next()? {
        "fwd" => Product::Forward,
        "dx" => Product::GradInput,
        "dw" => Product::GradWeight,
        _ => return None,
    };
    let (input, cout) = it.next()?.split_once("->")?;
    let dims: Vec<usize> = input
        .split('x')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let kernel: Vec<usize> = it
        .next()?
        .strip_prefix('k')?
        .split('x')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let stride: usize = it.next()?.strip_prefix('s')?.parse().ok()?;
    if dims.len() != 3 || kernel.len() != 2 || !stride.is_power_of_two() {
        return None;
    }
    let cout: usize = cout.parse().ok()?;
    let g = ConvGeom::new(
        &[n, dims[0], dims[1], dims[2]],
        &[kernel[0], kernel[1], dims[2], cout],
        stride,
    );
    Some((product, g))
}

/// The configuration for one product on this adapter (see `KernelPolicy::choose`).
pub fn choose(gpu: &Gpu, product: Product, g: &ConvGeom) -> TileConfig {
    let (gm, gn, _) = product.gemm(g);
    gpu.kernels.borrow_mut().choose(
        &tune_key(product, g),
        g.n,
        gm,
        gn,
        product == Product::GradWeight,
    )
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
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let cfg = choose(gpu, Product::Forward, &g);
    forward_configured(gpu, x, w, b, stride, act, affine, cfg)
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
    forward_configured(gpu, x, w, b, stride, act, None, cfg)
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
) -> Tensor {
    let dtype = same_dtype("conv", &[x, w]);
    let g = ConvGeom::new(&x.shape, &w.shape, stride);
    let y = gpu.empty_as(&g.out_shape(), dtype);
    let (_, gn, _) = Product::Forward.gemm(&g);
    // The uniform family is f32 only: f16 runs the direct kernel's default.
    let cfg = if cfg.family == Family::Uniform && dtype != DType::F32 {
        TileConfig::default_for(Family::Direct, gn)
    } else {
        cfg
    };
    let (gm, gn, gk) = Product::Forward.gemm(&g);
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    if let Some(b) = b {
        assert_eq!(b.numel(), g.cout, "conv bias size");
        assert_eq!(b.dtype, DType::F32, "conv bias is f32");
    }
    if let Some(a) = affine {
        assert_eq!(a.numel(), 2 * g.cout, "conv affine map: [scale; shift]");
        assert_eq!(a.dtype, DType::F32, "conv affine map is f32");
    }
    if cfg.family == Family::Uniform {
        uniform_product(gpu, Product::Forward, &y, x, w, b, affine, &g, act, cfg);
        return y;
    }
    // Absent vectors are bound to a tensor already at hand; the kernel never reads them.
    let bias = b.unwrap_or(w).raw();
    let bn = affine.unwrap_or(w).raw();
    let bytes = (x.bytes() + w.bytes() + y.bytes()) as f64;
    gpu.dispatch_as(
        entry(cfg.family, Product::Forward),
        dtype,
        &constants(&cfg, Product::Forward, act),
        &g.params(gm, gn, gk, gk, b.is_some(), affine.is_some()),
        &[y.raw(), x.raw(), w.raw(), bias, bn],
        [gn.div_ceil(cfg.bn()) as u32, gy, gz],
        (g.flops(), bytes),
    );
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
    if cfg.family == Family::Uniform {
        uniform_product(
            gpu,
            Product::GradInput,
            &dx,
            dz,
            w,
            None,
            None,
            g,
            Act::None,
            cfg,
        );
        return dx;
    }
    let (gm, gn, gk) = Product::GradInput.gemm(g);
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    gpu.dispatch(
        entry(cfg.family, Product::GradInput),
        &constants(&cfg, Product::GradInput, Act::None),
        &g.params(gm, gn, gk, gk, false, false),
        &[dx.raw(), dz.raw(), w.raw(), w.raw(), w.raw()],
        [gn.div_ceil(cfg.bn()) as u32, gy, gz],
        (g.flops(), (dz.bytes() + w.bytes() + dx.bytes()) as f64),
    );
    dx
}

/// dW [kh, kw, cin, cout] from the input x and dZ. The reduction runs over every output
/// position of the batch, so it is split into slices summed afterwards.
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
    if cfg.family == Family::Uniform {
        return uniform_weight_gradient(gpu, x, dz, g, cfg);
    }
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
    let wshape = [g.kh, g.kw, g.cin, g.cout];
    // One slice writes dW itself; several write partial products, summed afterwards.
    let out = if splits == 1 {
        gpu.empty(&wshape)
    } else {
        gpu.empty(&[splits, gm * gn])
    };
    gpu.dispatch(
        entry(cfg.family, Product::GradWeight),
        &constants(&cfg, Product::GradWeight, Act::None),
        &g.params(gm, gn, gk, k_chunk, false, false),
        &[out.raw(), x.raw(), dz.raw(), dz.raw(), dz.raw()],
        groups,
        (g.flops(), (x.bytes() + dz.bytes()) as f64),
    );
    if splits == 1 {
        out
    } else {
        reduce::sum_splits(gpu, &out).reshape(&wshape)
    }
}

/// dW with the uniform family: dY's rows packed into 64 KiB windows (vec4 along cout), one
/// dispatch per window in which every workgroup reads the window as uniform memory, each
/// window's pixels split over a few workgroups so that every core has work; the partial
/// products (one slice per workgroup along z) are summed afterwards.
fn uniform_weight_gradient(
    gpu: &Gpu,
    x: &Tensor,
    dz: &Tensor,
    g: &ConvGeom,
    cfg: TileConfig,
) -> Tensor {
    let (gm, gn, gk) = Product::GradWeight.gemm(g);
    let rows = WINDOW_VEC4 / g.cout.div_ceil(4);
    let windows = gk.div_ceil(rows);
    let mut params = UniformParams {
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
        &uniform_constants(&cfg, Product::GradWeight, Act::None),
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
    let wshape = [g.kh, g.kw, g.cin, g.cout];
    let out = if slices == 1 {
        gpu.empty(&wshape)
    } else {
        gpu.empty(&[slices, gm * gn])
    };
    let flops_per_pixel = g.flops() / gk as f64;
    for w in 0..windows {
        params.k0 = w * rows;
        params.k1 = (params.k0 + rows).min(gk);
        params.b0 = w * splits;
        let bindings = [
            wgpu::BufferBinding {
                buffer: out.raw(),
                offset: 0,
                size: None,
            },
            wgpu::BufferBinding {
                buffer: x.raw(),
                offset: 0,
                size: None,
            },
            wgpu::BufferBinding {
                buffer: packed.raw(),
                offset: (w * WINDOW_VEC4 * 16) as u64,
                size: wgpu::BufferSize::new(crate::gpu::UNIFORM_WINDOW),
            },
        ];
        gpu.dispatch_bindings(
            &CONV_UNIFORM_DW,
            DType::F32,
            &uniform_constants(&cfg, Product::GradWeight, Act::None),
            &params.block(g),
            &bindings,
            [tiles_n as u32, tiles_m as u32, splits as u32],
            (
                flops_per_pixel * (params.k1 - params.k0) as f64,
                (x.bytes() / windows as u64 + (rows * g.cout * 4) as u64) as f64,
            ),
        );
    }
    if slices == 1 {
        out
    } else {
        reduce::sum_splits(gpu, &out).reshape(&wshape)
    }
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
