//! Convolution (and, through it, conv1d and dense layers) as implicit GEMM: forward with fused
//! bias and activation (and, for scoring, a folded evaluation-mode batch norm), gradient of
//! the input, gradient of the weight (split over K), and the bias gradient.

use super::{f32_only, kernel, kernel_f16, reduce, same_dtype, Act, R, RW};
use crate::gpu::tuning::TunedKernel;
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

/// One configuration of the convolution kernels: the family, the register tile per thread
/// (TM rows x TN columns of C), the threads along N (wg / threads_n along M) and the threads
/// per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    pub variant: Variant,
    pub tm: usize,
    pub tn: usize,
    pub threads_n: usize,
    pub wg: usize,
}

/// Workgroup sizes the tiled kernel may use: 64 fits every adapter's defaults, 128 and 256
/// give a GPU the 64x64 and 128x32 tiles that keep its arithmetic units fed.
pub const WORKGROUP_SIZES: [usize; 3] = [64, 128, 256];

impl TileConfig {
    const fn new(variant: Variant, tm: usize, tn: usize, threads_n: usize) -> TileConfig {
        TileConfig {
            variant,
            tm,
            tn,
            threads_n,
            wg: 64,
        }
    }
    const fn with_wg(self, wg: usize) -> TileConfig {
        TileConfig { wg, ..self }
    }

    /// The built-in choice by the width of the product, so that narrow layers (3 or 8 output
    /// channels) do not waste a 64-wide tile.
    pub fn default_for(variant: Variant, gn: usize) -> TileConfig {
        let t = |tm, tn, threads_n| TileConfig::new(variant, tm, tn, threads_n);
        if variant == Variant::Direct {
            // Neighbouring threads take neighbouring output channels (contiguous weight loads);
            // each thread holds the full 32 accumulators, up to 8 columns wide. This is the
            // rule `asna tune` found on lavapipe for most of the model's shapes (narrow layers
            // with one or two threads along N were 2-4x faster than spreading them over 8).
            let width = gn.next_power_of_two().clamp(1, 64);
            let tn = width.min(8);
            return t(32 / tn.max(4), tn, (width / 8).max(1));
        }
        match gn {
            0..=4 => t(2, 4, 1),
            5..=8 => t(4, 4, 2),
            9..=16 => t(4, 4, 4),
            17..=32 => t(8, 4, 8),
            _ => t(4, 8, 8),
        }
    }

    /// Whether the shader can run this configuration: register arrays hold 8 rows, 8 columns
    /// and 32 accumulators; the tiled kernel's workgroup tiles hold BM <= 128 and BN <= 64
    /// (12 KiB, within every adapter's 16 KiB) and its staging needs BN <= threads; every size
    /// is a power of two so that the threads divide the tiles evenly.
    pub fn valid(&self) -> bool {
        let pow2 = |v: usize| v.is_power_of_two();
        let sizes_ok = pow2(self.tm)
            && pow2(self.tn)
            && pow2(self.threads_n)
            && self.tm <= 8
            && self.tn <= 8
            && self.tm * self.tn <= 32
            && WORKGROUP_SIZES.contains(&self.wg)
            && self.threads_n <= self.wg;
        let tiles_ok = self.bm() <= 128 && self.bn() <= 64 && self.bn() <= self.wg;
        sizes_ok && (self.variant == Variant::Direct || tiles_ok)
    }

    /// Configurations worth measuring for a product `gn` wide on this kind of adapter: the
    /// register-blocked shapes whose tile is not much wider than the product.
    pub fn candidates(variants: &[Variant], gn: usize) -> Vec<TileConfig> {
        let width = gn.next_power_of_two().max(1);
        let mut out = Vec::new();
        for &variant in variants {
            // The direct kernel serves CPU drivers, where a workgroup is a loop: 64 threads.
            let sizes: &[usize] = match variant {
                Variant::Tiled => &WORKGROUP_SIZES,
                Variant::Direct => &[64],
            };
            for &wg in sizes {
                for tm in [1, 2, 4, 8] {
                    for tn in [1, 2, 4, 8] {
                        for threads_n in [1, 2, 4, 8, 16, 32] {
                            let c = TileConfig::new(variant, tm, tn, threads_n).with_wg(wg);
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
            let d = TileConfig::default_for(variant, gn);
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    pub fn bm(&self) -> usize {
        self.wg / self.threads_n * self.tm
    }
    pub fn bn(&self) -> usize {
        self.threads_n * self.tn
    }
    fn constants(&self, product: Product, act: Act) -> Vec<(&'static str, f64)> {
        vec![
            ("MODE", product.mode() as f64),
            ("ACT", act as u32 as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("THREADS_N", self.threads_n as f64),
            ("WG", self.wg as f64),
        ]
    }
    fn kernel(&self, product: Product) -> &'static Kernel {
        match (self.variant, product) {
            (Variant::Tiled, Product::Forward) => &CONV_TILED,
            (Variant::Direct, Product::Forward) => &CONV_DIRECT,
            (Variant::Tiled, _) => &CONV_TILED_GRAD,
            (Variant::Direct, _) => &CONV_DIRECT_GRAD,
        }
    }
    pub fn describe(&self) -> String {
        let family = match self.variant {
            Variant::Tiled => "tiled",
            Variant::Direct => "direct",
        };
        format!(
            "{family} {}x{} per thread, {} threads along N of {} (tile {}x{})",
            self.tm,
            self.tn,
            self.threads_n,
            self.wg,
            self.bm(),
            self.bn()
        )
    }
    pub fn to_tuned(&self, images: usize, tuned_us: f64, default_us: f64) -> TunedKernel {
        TunedKernel {
            kernel: match self.variant {
                Variant::Tiled => "tiled".into(),
                Variant::Direct => "direct".into(),
            },
            tm: self.tm as u32,
            tn: self.tn as u32,
            threads_n: self.threads_n as u32,
            wg: self.wg as u32,
            images: images as u32,
            tuned_us,
            default_us,
        }
    }
    /// A cache entry as a configuration; None if it names something this shader cannot run
    /// (a cache written by another version).
    pub fn from_tuned(t: &TunedKernel) -> Option<TileConfig> {
        let variant = match t.kernel.as_str() {
            "tiled" => Variant::Tiled,
            "direct" => Variant::Direct,
            _ => return None,
        };
        let c = TileConfig::new(variant, t.tm as usize, t.tn as usize, t.threads_n as usize)
            .with_wg(t.wg as usize);
        c.valid().then_some(c)
    }
}

/// The kernel families worth timing on this adapter: a CPU driver runs only the direct
/// kernel well (workgroup memory is ordinary memory there and barriers are costly).
pub fn tune_families(gpu: &Gpu) -> Vec<Variant> {
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        vec![Variant::Direct]
    } else {
        vec![Variant::Tiled, Variant::Direct]
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

/// The configuration for one product on this adapter: a forced family (tests, `ASNA_CONV`)
/// takes its default; otherwise the tuned entry if `asna tune` measured this shape, else the
/// default of the adapter's family.
pub fn choose(gpu: &Gpu, product: Product, g: &ConvGeom) -> TileConfig {
    let (_, gn, _) = product.gemm(g);
    let forced = gpu.prefer_tiled.get().is_some() || std::env::var_os("ASNA_CONV").is_some();
    let key = tune_key(product, g);
    let mut tuning = gpu.tuning.borrow_mut();
    tuning.record(&key, g.n);
    if !forced {
        if let Some(c) = tuning.lookup(&key).and_then(TileConfig::from_tuned) {
            return c;
        }
    }
    TileConfig::default_for(variant(gpu), gn)
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
    // Absent vectors are bound to a tensor already at hand; the kernel never reads them.
    let bias = b.unwrap_or(w).raw();
    let bn = affine.unwrap_or(w).raw();
    let bytes = (x.bytes() + w.bytes() + y.bytes()) as f64;
    gpu.dispatch_as(
        cfg.kernel(Product::Forward),
        dtype,
        &cfg.constants(Product::Forward, act),
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
    let (gm, gn, gk) = Product::GradInput.gemm(g);
    let (gy, gz) = m_groups(gm.div_ceil(cfg.bm()));
    gpu.dispatch(
        cfg.kernel(Product::GradInput),
        &cfg.constants(Product::GradInput, Act::None),
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
        cfg.kernel(Product::GradWeight),
        &cfg.constants(Product::GradWeight, Act::None),
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
