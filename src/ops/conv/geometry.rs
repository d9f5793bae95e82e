//! The shapes of a convolution: TensorFlow 'same' padding, the geometry of one layer, the three
//! matrix products a layer runs (forward, input gradient, weight gradient), and the tuning
//! cache's key for each product's shape.

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
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.kh, self.kw, self.cin, self.cout]
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.oh * self.ow) as f64
            * (self.kh * self.kw * self.cin * self.cout) as f64
    }
}

/// The three products of the convolution kernels (the shaders' MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    GradInput,
    GradWeight,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Forward, Product::GradInput, Product::GradWeight];
    pub fn mode(self) -> u32 {
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
    /// Whether the reduction is split over workgroups (the weight gradient's, which runs over
    /// every output position of the batch), so that few rows still fill the device.
    pub fn splits_k(self) -> bool {
        self == Product::GradWeight
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

/// M tiles folded into (y, z) so that each stays within 65535 workgroups.
pub(super) fn m_groups(tiles_m: usize) -> (u32, u32) {
    if tiles_m <= 65535 {
        (tiles_m as u32, 1)
    } else {
        let z = tiles_m.div_ceil(65535);
        (tiles_m.div_ceil(z) as u32, z as u32)
    }
}
