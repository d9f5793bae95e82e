//! `asna tune` and the tuning cache: every configuration the tuner may choose computes the
//! same convolution as the float64 reference, cache keys round-trip, a cached winner is what
//! the ops then use, and the command and `bench --tuning both` work end to end.

mod common;
use asna::gpu::{tuning, Tensor};
use asna::ops::conv::policy::TunedKernel;
use asna::ops::conv::{self, ConvGeom, Family, Product, TileConfig, FAMILIES, WORKGROUP_SIZES};
use asna::ops::Act;
use common::*;
use std::process::Command;

/// Forward, grad-input and grad-weight of every candidate configuration of every family on
/// an awkward shape (odd sizes, stride 2, 5 output channels) against the CPU reference and
/// its exact adjoints.
#[test]
fn every_candidate_configuration_is_correct() {
    let gpu = gpu();
    let mut r = Rand::new(3);
    let (xs, ws, stride) = ([2, 7, 9, 3], [3, 3, 3, 5], 2);
    let case = ConvCase::new(&gpu, &mut r, xs, ws, stride, 0.3);
    let (x, w, xt, wt, bt) = (&case.x, &case.w, &case.xt, &case.wt, &case.bt);
    let g = ConvGeom::new(&xs, &ws, stride);
    let (want_y, _) = case.reference(true, Act::Relu);
    let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
    let dzt = gpu.upload(&g.out_shape(), &dz);
    // The linear map's adjoints: dX = d/dx <conv(x), dz>, dW = d/dw <conv(x), dz>.
    let (xd, wd, dzd) = (f64s(&x), f64s(&w), f64s(&dz));
    let want_dx = fd_grad(
        |xx| dot(&conv_ref(xx, xs, &wd, ws, None, stride, Act::None).0, &dzd),
        &xd,
        1e-3,
    );
    let want_dw = fd_grad(
        |ww| dot(&conv_ref(&xd, xs, ww, ws, None, stride, Act::None).0, &dzd),
        &wd,
        1e-3,
    );
    let mut configs = Vec::new();
    for family in FAMILIES {
        for gn in [ws[3], ws[2]] {
            for c in family.candidates(gn) {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
        }
    }
    assert!(configs.len() > 10, "only {} candidates", configs.len());
    for wg in WORKGROUP_SIZES {
        assert!(
            configs.iter().any(|c| c.wg == wg),
            "no candidate with {wg} threads"
        );
    }
    for c in configs {
        let name = c.describe();
        let y = conv::forward_with(&gpu, &xt, &wt, Some(&bt), stride, Act::Relu, c);
        assert_close(
            &format!("{name} forward"),
            &download(&gpu, &y),
            &want_y,
            1e-5,
        );
        let dx = conv::backward_input_with(&gpu, &dzt, &wt, &g, c);
        assert_close(&format!("{name} dX"), &download(&gpu, &dx), &want_dx, 1e-4);
        let dw = conv::backward_weight_with(&gpu, &xt, &dzt, &g, c);
        assert_close(&format!("{name} dW"), &download(&gpu, &dw), &want_dw, 1e-4);
    }
}

/// The exact adjoints of the linear map x, w -> conv(x, w) against dz: (dX, dW) in float64.
fn conv_adjoints_ref(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    stride: usize,
    dz: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let [n, h, wd, ci] = xs;
    let [kh, kw, _, co] = ws;
    let (oh, pt) = same(h, kh, stride);
    let (ow, pl) = same(wd, kw, stride);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kh {
                    let iy = (oy * stride + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * stride + kx) as isize - pl as isize;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        for c in 0..ci {
                            let xi = ((img * h + iy as usize) * wd + ix as usize) * ci + c;
                            for o in 0..co {
                                let wi = ((ky * kw + kx) * ci + c) * co + o;
                                let g = dz[((img * oh + oy) * ow + ox) * co + o];
                                dx[xi] += w[wi] * g;
                                dw[wi] += x[xi] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}

/// Every configuration of the CPU-driver family on shapes chosen to break it: one channel,
/// channel counts that are not multiples of 4, odd sizes, strides 1, 2 and 4, even and 1-D
/// kernels, batch 1 and above, more than one block of output channels, and layers whose
/// weight block does not fit one 64 KiB uniform window (the k-sliced path), forward, dX and
/// dW against float64 references. Its forward and stride-1 dX also equal the direct kernel's
/// to the bit (both sum in the same 16-deep blocks), which is what lets training use either;
/// a strided dX sums tap by tap (`conv::col2im`), and no kink reads a gradient's rounding.
#[test]
fn uniform_family_is_correct_on_awkward_shapes() {
    let gpu = gpu();
    let (direct, uniform) = (
        Family::parse("direct").unwrap(),
        Family::parse("uniform").unwrap(),
    );
    let mut r = Rand::new(17);
    // (input NHWC, kernel [kh, kw], cout, stride)
    let cases: [([usize; 4], [usize; 2], usize, usize); 9] = [
        ([1, 7, 9, 1], [3, 3], 6, 1),
        ([2, 7, 9, 3], [3, 3], 5, 2),
        ([2, 9, 7, 6], [1, 4], 7, 1),
        ([1, 9, 8, 5], [2, 2], 3, 4),
        ([3, 5, 6, 24], [3, 3], 33, 1),
        ([1, 6, 5, 8], [5, 5], 16, 2),
        ([2, 1, 11, 4], [1, 3], 9, 1),
        ([1, 1, 1, 700], [1, 1], 37, 1),
        ([1, 4, 5, 72], [3, 3], 40, 1),
    ];
    let mut checked = 0;
    for (xs, k, cout, stride) in cases {
        let ws = [k[0], k[1], xs[3], cout];
        let case = ConvCase::new(&gpu, &mut r, xs, ws, stride, 0.3);
        let (x, w, xt, wt, bt) = (&case.x, &case.w, &case.xt, &case.wt, &case.bt);
        let g = ConvGeom::new(&xs, &ws, stride);
        let (want_y, _) = case.reference(true, Act::Tanh);
        let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
        let dzt = gpu.upload(&g.out_shape(), &dz);
        let (want_dx, want_dw) =
            conv_adjoints_ref(&f64s(&x), xs, &f64s(&w), ws, stride, &f64s(&dz));
        let direct_y = download(
            &gpu,
            &conv::forward_with(
                &gpu,
                &xt,
                &wt,
                Some(&bt),
                stride,
                Act::Tanh,
                direct.default_tile(cout),
            ),
        );
        let direct_dx = download(
            &gpu,
            &conv::backward_input_with(&gpu, &dzt, &wt, &g, direct.default_tile(xs[3])),
        );
        let mut configs = Vec::new();
        for gn in [ws[3], ws[2]] {
            for c in uniform.candidates(gn) {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
        }
        for c in configs {
            let name = format!("{} on {xs:?} k{k:?} co{cout} s{stride}", c.describe());
            let y = download(
                &gpu,
                &conv::forward_with(&gpu, &xt, &wt, Some(&bt), stride, Act::Tanh, c),
            );
            assert_close(&format!("{name} forward"), &y, &want_y, 1e-5);
            assert_same_bits(&format!("{name} forward against direct"), &y, &direct_y);
            let dx = download(&gpu, &conv::backward_input_with(&gpu, &dzt, &wt, &g, c));
            assert_close(&format!("{name} dX"), &dx, &want_dx, 1e-5);
            if stride == 1 {
                assert_same_bits(&format!("{name} dX against direct"), &dx, &direct_dx);
            }
            let dw = conv::backward_weight_with(&gpu, &xt, &dzt, &g, c);
            assert_close(&format!("{name} dW"), &download(&gpu, &dw), &want_dw, 1e-5);
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} configurations checked");
}

/// The written-out taps family: every forward configuration on shapes it serves (3 and 8
/// input channels, 5x5; 24 channels, 3x3 at stride 4) against float64 and, bit for bit,
/// against the direct kernel, whose rounding a training forward must keep; its weight
/// gradient against float64 (3, 8 and 12 input channels: one group and several); odd sizes,
/// rows shorter than a run and a run overhanging its row, 1 to 32 output channels (one,
/// several and partial blocks; 3 or fewer in vec3 sums where a kernel has that twin),
/// batches of 1 to 3. The Winograd family hands it a training forward, a scoring forward of
/// at most two vec4 of channels or a stride it cannot run, and these weight gradients.
#[test]
fn taps_family_is_correct_on_awkward_shapes() {
    let gpu = gpu();
    let (direct, taps, winograd) = (
        Family::parse("direct").unwrap(),
        Family::parse("taps").unwrap(),
        Family::parse("winograd").unwrap(),
    );
    let mut r = Rand::new(29);
    // (input NHWC, filter side, stride, cout)
    let cases: [([usize; 4], usize, usize, usize); 12] = [
        // 3 and 4 output channels: the first in the vec3 twin of a one-block kernel.
        ([1, 7, 9, 3], 5, 1, 3),
        ([1, 3, 10, 3], 5, 1, 4),
        ([2, 5, 6, 3], 5, 1, 5),
        ([1, 1, 3, 3], 5, 1, 8),
        ([3, 4, 11, 3], 5, 1, 1),
        ([1, 6, 5, 8], 5, 1, 16),
        ([2, 9, 17, 8], 5, 1, 20),
        ([1, 3, 2, 8], 5, 1, 6),
        ([1, 2, 7, 12], 5, 1, 9),
        // More output rows than slices (2048): bands of 3 rows, the last of 2.
        ([1, 4097, 1, 3], 5, 1, 2),
        // Stride 4 (`dec.down0`'s): outputs overhanging the input, a partial last run.
        ([2, 13, 21, 24], 3, 4, 32),
        ([1, 5, 3, 24], 3, 4, 7),
    ];
    let mut checked = 0;
    for (xs, k, stride, cout) in cases {
        let ws = [k, k, xs[3], cout];
        let case = ConvCase::new(&gpu, &mut r, xs, ws, stride, 0.3);
        let (xt, wt, bt) = (&case.xt, &case.wt, &case.bt);
        let g = ConvGeom::new(&xs, &ws, stride);
        let (want_y, _) = case.reference(true, Act::LeakyRelu);
        let direct_y = download(
            &gpu,
            &conv::forward_with(
                &gpu,
                xt,
                wt,
                Some(bt),
                stride,
                Act::LeakyRelu,
                direct.default_tile(cout),
            ),
        );
        let native =
            |product| winograd.resolve(product, &g, winograd.default_for(product, &g), true);
        let c = taps.default_for(Product::GradInput, &g);
        assert_ne!(
            taps.resolve(Product::GradInput, &g, c, true).family,
            taps,
            "dX"
        );
        // Weight gradients are written for 5x5 filters at stride 1 (their sums in another
        // order: against float64).
        if k == 5 {
            let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
            let dzt = gpu.upload(&g.out_shape(), &dz);
            let (_, want_dw) =
                conv_adjoints_ref(&f64s(&case.x), xs, &f64s(&case.w), ws, 1, &f64s(&dz));
            let c = native(Product::GradWeight);
            assert_eq!(c.family, taps, "weight gradient of {xs:?} co{cout}");
            for _ in 0..2 {
                // Twice: the second run's partial sums land in buffers the first left dirty.
                let dw = download(&gpu, &conv::backward_weight_with(&gpu, xt, &dzt, &g, c));
                assert_close(&format!("taps dW on {xs:?} co{cout}"), &dw, &want_dw, 1e-5);
            }
        }
        // Forward kernels are written for 3 and 8 input channels (5x5) and 24 (3x3, stride 4).
        if xs[3] == 12 {
            assert_ne!(native(Product::Forward).family, taps, "forward of {xs:?}");
            continue;
        }
        assert_eq!(
            native(Product::Forward).family,
            taps,
            "training forward of {xs:?} co{cout}"
        );
        let scored = winograd.resolve(
            Product::Forward,
            &g,
            winograd.default_for(Product::Forward, &g),
            false,
        );
        assert_eq!(
            scored.family == taps,
            cout <= 8 || stride > 1,
            "scoring forward of {xs:?} co{cout}"
        );
        let mut configs = Vec::new();
        for gn in [cout, 4, 8, 16, 32] {
            for c in taps.candidates(gn) {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
        }
        for c in configs {
            let ran = taps.resolve(Product::Forward, &g, c, true);
            assert_eq!(ran.family, taps, "{} on {xs:?}", c.describe());
            let name = format!("{} on {xs:?} co{cout}", ran.describe());
            // The output lands in a buffer left NaN, so that a channel no kernel stores fails.
            drop(gpu.full(&g.out_shape(), f32::NAN));
            let y = download(
                &gpu,
                &conv::forward_with(&gpu, xt, wt, Some(bt), stride, Act::LeakyRelu, c),
            );
            assert_close(&format!("{name} forward"), &y, &want_y, 1e-5);
            assert_same_bits(&format!("{name} forward against direct"), &y, &direct_y);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} configurations checked");
}

/// `dec.down0` on a CPU adapter reads its input, the decoder's concatenation [up(low),
/// |f(R) - f(D)|], from its two sources: equal to the taps kernel on the built concatenation
/// to the bit, and to float64 (odd sizes, one pixel, a partial and a second block of output
/// channels, outputs overhanging the input); shapes no such kernel is written for get none.
#[test]
fn strided_block_reads_the_concatenation_from_its_sources() {
    use asna::gpu::DType;
    use asna::ops::concat::upsample_absdiff_concat;
    let gpu = gpu();
    let mut r = Rand::new(43);
    // (pairs, low height, low width, upsampled channels, difference channels, output
    // channels, filter side, stride)
    let cases = [
        (2, 7, 11, 16, 8, 40, 3, 4),
        (1, 1, 1, 16, 8, 7, 3, 4),
        (3, 4, 3, 16, 8, 32, 3, 4),
    ];
    for (n, lh, lw, c1, c2, cout, k, stride) in cases {
        let (h, w) = (2 * lh, 2 * lw);
        let cin = c1 + c2;
        let (ls, fs, ws) = ([n, lh, lw, c1], [2 * n, h, w, c2], [k, k, cin, cout]);
        let low = r.vec(ls.iter().product(), -1.0, 1.0);
        let feats = r.vec(fs.iter().product(), -1.0, 1.0);
        let wv = r.vec(ws.iter().product(), -0.5, 0.5);
        let b = r.vec(cout, -0.3, 0.3);
        let affine = r.vec(2 * cout, -1.0, 1.0);
        let (lowt, featst) = (gpu.upload(&ls, &low), gpu.upload(&fs, &feats));
        let (wt, bt, at) = (
            gpu.upload(&ws, &wv),
            gpu.upload(&[cout], &b),
            gpu.upload(&[2 * cout], &affine),
        );
        let plan = conv::UpAbsdiffConv::plan(&gpu, &lowt, &featst, &wt, stride)
            .unwrap_or_else(|| panic!("no kernel for {ls:?} {fs:?} stride {stride}"));
        let y = plan.forward(
            &gpu,
            &lowt,
            &featst,
            &wt,
            Some(&bt),
            Act::LeakyRelu,
            Some(&at),
        );
        let got = download(&gpu, &y);
        let cat = upsample_absdiff_concat(&gpu, &lowt, &featst);
        let plain = conv::forward_affine(
            &gpu,
            &cat,
            &wt,
            Some(&bt),
            stride,
            Act::LeakyRelu,
            Some(&at),
        );
        let name = format!("{ls:?} {fs:?} co{cout} stride {stride}");
        assert_eq!(y.shape, plain.shape, "{name}");
        assert_same_bits(&name, &got, &download(&gpu, &plain));
        // float64: the concatenation built here, then the convolution and the affine map.
        let mut x = Vec::with_capacity(n * h * w * cin);
        for img in 0..n {
            for y in 0..h {
                for xx in 0..w {
                    let l = ((img * lh + y / 2) * lw + xx / 2) * c1;
                    x.extend(low[l..l + c1].iter().map(|&v| v as f64));
                    let f = ((img * h + y) * w + xx) * c2;
                    let d = f + n * h * w * c2;
                    x.extend((0..c2).map(|c| (feats[f + c] as f64 - feats[d + c] as f64).abs()));
                }
            }
        }
        let (z, _) = conv_ref(
            &x,
            [n, h, w, cin],
            &f64s(&wv),
            ws,
            Some(&f64s(&b)),
            stride,
            Act::LeakyRelu,
        );
        let want: Vec<f64> = z
            .iter()
            .enumerate()
            .map(|(i, &v)| v * affine[i % cout] as f64 + affine[cout + i % cout] as f64)
            .collect();
        assert_close(&name, &got, &want, 1e-5);
    }
    // None for a stride, a split of the channels or sizes with no such kernel, or f16.
    let none = |ls: [usize; 4], fs: [usize; 4], ws: [usize; 4], stride: usize, dtype| {
        let low = gpu.convert(&gpu.full(&ls, 0.5), dtype).unwrap();
        let feats = gpu.convert(&gpu.full(&fs, 0.5), dtype).unwrap();
        let w = gpu.convert(&gpu.full(&ws, 0.5), dtype).unwrap();
        conv::UpAbsdiffConv::plan(&gpu, &low, &feats, &w, stride).is_none()
    };
    let f32 = DType::F32;
    assert!(!none([1, 4, 4, 16], [2, 8, 8, 8], [3, 3, 24, 32], 4, f32));
    let without: [([usize; 4], [usize; 4], usize, &str); 5] = [
        ([1, 4, 4, 16], [2, 8, 8, 8], 2, "stride 2"),
        ([1, 4, 4, 16], [2, 8, 8, 8], 1, "stride 1"),
        ([1, 4, 4, 12], [2, 8, 8, 12], 4, "12 + 12"),
        ([1, 4, 4, 16], [2, 8, 9, 8], 4, "odd width"),
        ([1, 4, 4, 16], [4, 8, 8, 8], 4, "batches"),
    ];
    for (ls, fs, stride, what) in without {
        assert!(none(ls, fs, [3, 3, 24, 32], stride, f32), "{what}");
    }
    if gpu.features.contains(wgpu::Features::SHADER_F16) {
        assert!(
            none([1, 4, 4, 16], [2, 8, 8, 8], [3, 3, 24, 32], 4, DType::F16),
            "f16"
        );
    }
}

/// A Winograd weight gradient whose transformed dY takes more than one batch of packed
/// windows (523 windows of 7 tiles), against float64; run twice, so that the second run's
/// sums start in buffers the first left dirty.
#[test]
fn winograd_weight_gradient_in_batches() {
    let gpu = gpu();
    let winograd = Family::parse("winograd").unwrap();
    let mut r = Rand::new(37);
    let (xs, ws) = ([1, 122, 120, 48], [5, 5, 48, 64]);
    let g = ConvGeom::new(&xs, &ws, 1);
    let x = r.vec(xs.iter().product(), -1.0, 1.0);
    let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
    let w = vec![0.0; ws.iter().product()];
    let (_, want_dw) = conv_adjoints_ref(&f64s(&x), xs, &f64s(&w), ws, 1, &f64s(&dz));
    let (xt, dzt) = (gpu.upload(&xs, &x), gpu.upload(&g.out_shape(), &dz));
    let c = winograd.resolve(Product::GradWeight, &g, winograd.default_tile(64), true);
    assert_eq!(
        c.family, winograd,
        "the weight gradient ran in {:?}",
        c.family
    );
    for run in 0..2 {
        let dw = download(&gpu, &conv::backward_weight_with(&gpu, &xt, &dzt, &g, c));
        assert_close(&format!("dW, run {run}"), &dw, &want_dw, 1e-5);
    }
}

/// Strided input gradients as one product with every filter tap and a gather
/// (`conv::col2im`), against float64: taps that overlap (a filter wider than the stride),
/// pixels no tap reaches (narrower, and a 1x1 filter), padding on both sides, 1 channel; in
/// one chunk and one image per chunk, into a buffer left dirty by an earlier tensor.
#[test]
fn strided_input_gradient_in_chunks() {
    let gpu = gpu();
    let mut r = Rand::new(31);
    // (input NHWC, filter side, cout, stride)
    let cases = [
        ([3, 9, 7, 1], 3, 2, 2),
        ([2, 13, 11, 3], 3, 4, 4),
        ([3, 10, 9, 2], 5, 3, 2),
        ([2, 8, 7, 3], 1, 5, 2),
    ];
    for (xs, k, cout, stride) in cases {
        let ws = [k, k, xs[3], cout];
        let g = ConvGeom::new(&xs, &ws, stride);
        let w = r.vec(ws.iter().product(), -0.5, 0.5);
        let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
        let x = vec![0.0; xs.iter().product()];
        let (want_dx, _) = conv_adjoints_ref(&f64s(&x), xs, &f64s(&w), ws, stride, &f64s(&dz));
        let (wt, dzt) = (gpu.upload(&ws, &w), gpu.upload(&g.out_shape(), &dz));
        for chunk_bytes in [1, 1 << 30] {
            drop(gpu.full(&xs, 7.0));
            let dx = gpu.empty(&xs);
            assert!(conv::col2im::grad_input(
                &gpu,
                &g,
                &dzt,
                &wt,
                &dx,
                chunk_bytes
            ));
            let name = format!("dX of {xs:?} k{k} co{cout} s{stride}, chunks of {chunk_bytes} B");
            assert_close(&name, &download(&gpu, &dx), &want_dx, 1e-5);
        }
    }
}

/// Every configuration of the winograd family on shapes chosen to break it: one channel,
/// odd sizes (tiles that overhang the image on both sides), a 1-pixel row, batches of 1 to
/// 3, channel counts that are not multiples of 4, several blocks of output channels and
/// several blocks per window, filter blocks wider than one window (a 4x4 tile on 128
/// channels, a 5x5 filter on 300, 16 channels on 72: their input channels summed in parts,
/// one dispatch each), forward, dX and dW of 3x3 and 5x5 filters against float64
/// references, dW with more than one group of input channels and more than one window of
/// tiles; and what it cannot run (stride 2, a 1x3 filter, a weight gradient with fewer than
/// 48 input channels) resolved to another family, still correct.
#[test]
fn winograd_family_is_correct_on_awkward_shapes() {
    let gpu = gpu();
    let winograd = Family::parse("winograd").unwrap();
    // Where the adapter's subgroups are 8 wide (lavapipe's), the products share their U loads
    // through them; each configuration is then also run without, to the same bits.
    let shared = gpu.kernels.borrow().shared_loads();
    let eight_wide = gpu.features.contains(wgpu::Features::SUBGROUP)
        && gpu.info.subgroup_min_size == 8
        && gpu.info.subgroup_max_size == 8;
    assert_eq!(
        shared,
        eight_wide,
        "subgroup variants on {}",
        gpu.describe()
    );
    let mut r = Rand::new(23);
    // (input NHWC, kernel [kh, kw], cout, stride, whether winograd runs [forward, dX, dW])
    let cases = [
        ([1, 7, 9, 1], [3, 3], 6, 1, [true, true, false]),
        ([2, 5, 6, 3], [5, 5], 9, 1, [true, true, false]),
        ([3, 5, 6, 24], [3, 3], 33, 1, [true, true, false]),
        ([1, 4, 5, 72], [3, 3], 40, 1, [true; 3]),
        ([1, 3, 5, 128], [3, 3], 20, 1, [true; 3]),
        ([2, 9, 10, 48], [3, 3], 64, 1, [true; 3]),
        ([2, 13, 11, 49], [5, 5], 12, 1, [true; 3]),
        ([2, 1, 11, 4], [3, 3], 9, 1, [true, true, false]),
        ([1, 6, 5, 8], [5, 5], 16, 1, [true, true, false]),
        ([1, 9, 7, 2], [5, 5], 1, 1, [true, true, false]),
        ([1, 9, 8, 5], [3, 3], 3, 2, [false; 3]),
        ([2, 1, 11, 4], [1, 3], 9, 1, [false; 3]),
        ([1, 2, 3, 300], [5, 5], 4, 1, [true; 3]),
    ];
    let mut checked = 0;
    for (xs, k, cout, stride, runs) in cases {
        let ws = [k[0], k[1], xs[3], cout];
        let case = ConvCase::new(&gpu, &mut r, xs, ws, stride, 0.3);
        let (x, w, xt, wt, bt) = (&case.x, &case.w, &case.xt, &case.wt, &case.bt);
        let g = ConvGeom::new(&xs, &ws, stride);
        let (want_y, _) = case.reference(true, Act::LeakyRelu);
        let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
        let dzt = gpu.upload(&g.out_shape(), &dz);
        let (want_dx, want_dw) = conv_adjoints_ref(&f64s(x), xs, &f64s(w), ws, stride, &f64s(&dz));
        let mut configs = Vec::new();
        for gn in [ws[3], ws[2]] {
            for c in winograd.candidates(gn) {
                if !configs.contains(&c) {
                    configs.push(c);
                }
            }
        }
        for c in configs {
            let name = format!("{} on {xs:?} k{k:?} co{cout} s{stride}", c.describe());
            let products = [Product::Forward, Product::GradInput, Product::GradWeight];
            for (product, runs) in products.into_iter().zip(runs) {
                let ran = winograd.resolve(product, &g, c, true).family;
                let runs = runs && product != Product::Forward;
                assert_eq!(ran == winograd, runs, "{name}: {product:?} ran in {ran:?}");
            }
            let ran = winograd.resolve(Product::Forward, &g, c, false).family;
            assert_eq!(
                ran == winograd,
                runs[0],
                "{name}: the forward ran in {ran:?}"
            );
            let y = download(
                &gpu,
                &conv::forward_with(&gpu, xt, wt, Some(bt), stride, Act::LeakyRelu, c),
            );
            assert_close(&format!("{name} forward"), &y, &want_y, 1e-5);
            let dx = download(&gpu, &conv::backward_input_with(&gpu, &dzt, wt, &g, c));
            assert_close(&format!("{name} dX"), &dx, &want_dx, 1e-5);
            if shared {
                // The plain kernels, whose U loads are not shared, give the same bits.
                let was = gpu.kernels.borrow_mut().set_shared_loads(false);
                let plain_y = download(
                    &gpu,
                    &conv::forward_with(&gpu, xt, wt, Some(bt), stride, Act::LeakyRelu, c),
                );
                let plain_dx = download(&gpu, &conv::backward_input_with(&gpu, &dzt, wt, &g, c));
                gpu.kernels.borrow_mut().set_shared_loads(was);
                assert_same_bits(&format!("{name} forward, shared U loads"), &y, &plain_y);
                assert_same_bits(&format!("{name} dX, shared U loads"), &dx, &plain_dx);
            }
            let dw = download(&gpu, &conv::backward_weight_with(&gpu, xt, &dzt, &g, c));
            assert_close(&format!("{name} dW"), &dw, &want_dw, 1e-5);
            if shared {
                let was = gpu.kernels.borrow_mut().set_shared_loads(false);
                let plain_dw = download(&gpu, &conv::backward_weight_with(&gpu, xt, &dzt, &g, c));
                gpu.kernels.borrow_mut().set_shared_loads(was);
                assert_same_bits(&format!("{name} dW, shared U loads"), &dw, &plain_dw);
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} configurations checked");
}

/// A scoring job transforms each filter once: the transformed filter is kept
/// (`Gpu::derived`) until its weights are written, here in place by Adam (a read-write
/// binding) and by an upload into a buffer back from the pool, and the product then follows
/// the new weights. The forward's and dX's transforms are kept apart.
#[test]
fn winograd_filters_are_transformed_once_until_their_weights_change() {
    use asna::ops::adam::{self, AdamConfig};
    let gpu = gpu();
    let winograd = Family::parse("winograd").unwrap();
    let mut r = Rand::new(29);
    // As many input as output channels: only the product tells dX's transform from the
    // forward's.
    let (xs, ws) = ([2, 7, 9, 6], [3, 3, 6, 6]);
    let ConvCase {
        x,
        w,
        b,
        xt,
        wt,
        bt,
        ..
    } = ConvCase::new(&gpu, &mut r, xs, ws, 1, 0.3);
    let g = ConvGeom::new(&xs, &ws, 1);
    let c = winograd.candidates(ws[3])[0];
    assert_eq!(
        winograd.resolve(Product::Forward, &g, c, false).family,
        winograd
    );
    let forward = |w: &Tensor| {
        let y = conv::forward_with(&gpu, &xt, w, Some(&bt), 1, Act::LeakyRelu, c);
        download(&gpu, &y)
    };
    let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
    let dzt = gpu.upload(&g.out_shape(), &dz);
    let input_gradient =
        |w: &Tensor| download(&gpu, &conv::backward_input_with(&gpu, &dzt, w, &g, c));
    let want = |w: &[f32]| {
        let (x, w, b) = (f64s(&x), f64s(w), f64s(&b));
        let y = conv_ref(&x, xs, &w, ws, Some(&b), 1, Act::LeakyRelu).0;
        let dx = conv_adjoints_ref(&x, xs, &w, ws, 1, &f64s(&dz)).0;
        (y, dx)
    };
    let counts = || {
        let d = gpu.derived.borrow();
        (d.hits, d.misses)
    };

    let (hits, misses) = counts();
    let (want_y, want_dx) = want(&w);
    let y = forward(&wt);
    assert_close("first forward", &y, &want_y, 1e-5);
    assert_eq!(counts(), (hits, misses + 1), "the first forward transforms");
    assert_same_bits("second forward", &forward(&wt), &y);
    assert_eq!(counts(), (hits + 1, misses + 1), "the second reuses it");
    let dx = input_gradient(&wt);
    assert_close("first dX", &dx, &want_dx, 1e-5);
    assert_same_bits("second dX", &input_gradient(&wt), &dx);
    assert_eq!(
        counts(),
        (hits + 2, misses + 2),
        "dX has a transform of its own"
    );

    // Adam moves every weight by about the learning rate, in place.
    let (m, v) = (gpu.full(&ws, 0.0), gpu.full(&ws, 0.0));
    let grad = gpu.upload(&ws, &r.vec(ws.iter().product(), -1.0, 1.0));
    adam::step(&gpu, &AdamConfig::default(), 0.05, 1, &wt, &m, &v, &grad);
    let (want_y, want_dx) = want(&download(&gpu, &wt));
    assert_close("forward after Adam", &forward(&wt), &want_y, 1e-5);
    assert_close("dX after Adam", &input_gradient(&wt), &want_dx, 1e-5);
    assert_eq!(counts(), (hits + 2, misses + 4), "both transformed again");

    // Weights dropped: their buffer goes back to the pool, and the next upload of that size
    // gets it, with other values.
    let raw = wt.raw().clone();
    drop(wt);
    let w2 = r.vec(ws.iter().product(), -0.5, 0.5);
    let w2t = gpu.upload(&ws, &w2);
    assert!(*w2t.raw() == raw, "the pool handed out another buffer");
    let (want_y, _) = want(&w2);
    assert_close(
        "new weights in the old buffer",
        &forward(&w2t),
        &want_y,
        1e-5,
    );
}

/// The rounding of each Winograd tile against float64 on the model's stride-1 layers (one
/// image, x in [-1, 1], weights in [-0.5, 0.5]), beside the uniform family's (the direct
/// kernel's, bit for bit): relative L2 error and largest absolute error of the forward
/// product and of dX, printed for docs/PERFORMANCE.md. Each stays within the ops' 1e-5.
#[test]
fn winograd_error_against_float64_on_model_shapes() {
    let gpu = gpu();
    let winograd = Family::parse("winograd").unwrap();
    let uniform = Family::parse("uniform").unwrap();
    let mut r = Rand::new(29);
    // (name, input NHWC, filter side, cout)
    let layers: [(&str, [usize; 4], usize, usize); 5] = [
        ("enc.conv1", [1, 288, 288, 3], 5, 8),
        ("enc.conv2", [1, 144, 144, 8], 5, 16),
        ("dec.conv3", [1, 144, 144, 48], 3, 16),
        ("enc.conv3", [1, 72, 72, 16], 3, 32),
        ("dec.conv1", [1, 36, 36, 128], 3, 64),
    ];
    let max_abs = |got: &[f32], want: &[f64]| {
        got.iter()
            .zip(want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max)
    };
    for (layer, xs, k, cout) in layers {
        let ws = [k, k, xs[3], cout];
        let case = ConvCase::new(&gpu, &mut r, xs, ws, 1, 0.3);
        let g = ConvGeom::new(&xs, &ws, 1);
        let (want_y, _) = case.reference(false, Act::None);
        let dz = r.vec(g.out_shape().iter().product(), -1.0, 1.0);
        let dzt = gpu.upload(&g.out_shape(), &dz);
        let (want_dx, want_dw) =
            conv_adjoints_ref(&f64s(&case.x), xs, &f64s(&case.w), ws, 1, &f64s(&dz));
        let mut configs = vec![uniform.default_tile(cout)];
        for tile in [2, 4] {
            let c = winograd.resolve(
                Product::Forward,
                &g,
                TileConfig::new(winograd, tile, 8, 1),
                false,
            );
            if c.family == winograd && c.tm == tile {
                configs.push(c);
            }
        }
        for c in configs {
            let y = download(
                &gpu,
                &conv::forward_with(&gpu, &case.xt, &case.wt, None, 1, Act::None, c),
            );
            let dx = download(
                &gpu,
                &conv::backward_input_with(&gpu, &dzt, &case.wt, &g, c),
            );
            let (ey, edx) = (rel_err(&y, &want_y), rel_err(&dx, &want_dx));
            let what = match c.family == winograd {
                true => format!("F({0}x{0}, {k}x{k})", c.tm),
                false => "direct summation".to_string(),
            };
            println!(
                "{layer} {xs:?} k{k} co{cout} {what}: forward {ey:.2e} (max abs {:.2e}), dX {edx:.2e} (max abs {:.2e})",
                max_abs(&y, &want_y),
                max_abs(&dx, &want_dx)
            );
            assert!(
                ey <= 1e-5 && edx <= 1e-5,
                "{layer} {what}: {ey:.2e}, {edx:.2e}"
            );
            // The weight gradient once per family: F(k x k, 2 x 2) where it runs.
            if c.family == winograd && c.tm == 4 {
                continue;
            }
            let ran = c.family.resolve(Product::GradWeight, &g, c, true).family;
            let dw = download(
                &gpu,
                &conv::backward_weight_with(&gpu, &case.xt, &dzt, &g, c),
            );
            let edw = rel_err(&dw, &want_dw);
            let what = match ran == winograd {
                true => format!("F({k}x{k}, 2x2)"),
                false => "direct summation".to_string(),
            };
            println!(
                "{layer} {xs:?} k{k} co{cout} {what}: dW {edw:.2e} (max abs {:.2e})",
                max_abs(&dw, &want_dw)
            );
            assert!(edw <= 1e-5, "{layer} {what}: dW {edw:.2e}");
        }
    }
}

/// The tuner times, reports and caches each candidate as it runs: on a weight gradient the
/// Winograd family hands to the uniform family (8 input channels), every Winograd tile is
/// the uniform family's rule, so the default and best name what ran and no kernel is timed
/// twice.
#[test]
fn tuner_times_each_kernel_as_it_runs_and_once() {
    let gpu = gpu();
    let winograd = Family::parse("winograd").unwrap();
    let key = "conv dw 18x18x8->8 k3x3 s1";
    let seen = asna::ops::conv::policy::Seen {
        images: 2,
        calls: 1,
    };
    let r = asna::tune::tune_shape(&gpu, key, seen, 1, 1)
        .unwrap()
        .expect("a convolution shape");
    let (_, g) = conv::parse_tune_key(key, 2).unwrap();
    for c in [r.default, r.best] {
        assert_eq!(
            c,
            c.family.resolve(Product::GradWeight, &g, c, true),
            "{key}: {} is not what runs",
            c.describe()
        );
    }
    let raw = gpu.kernels.borrow().candidates(8);
    let distinct = raw.iter().fold(Vec::new(), |mut v, &c| {
        let c = c.family.resolve(Product::GradWeight, &g, c, true);
        if !v.contains(&c) {
            v.push(c);
        }
        v
    });
    assert!(raw.iter().any(|c| c.family == winograd));
    assert_eq!(r.candidates, distinct.len(), "{key}: configurations timed");
    assert!(r.candidates < raw.len(), "{key}: duplicates timed");
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}: element {i} is {:e}, not {:e}", got[i], want[i]);
    }
}

#[test]
fn keys_round_trip_and_bad_keys_are_rejected() {
    let g = ConvGeom::new(&[3, 288, 144, 24], &[3, 1, 24, 32], 4);
    for p in Product::ALL {
        let key = conv::tune_key(p, &g);
        let (p2, g2) = conv::parse_tune_key(&key, 3).unwrap();
        assert_eq!((p2, g2), (p, g), "{key}");
    }
    for bad in [
        "",
        "conv",
        "conv fwd 1x2->3 k1x1 s1",
        "conv up 4x4x3->8 k3x3 s1",
        "conv fwd 4x4x3->8 k3x3 s3",
        "dense fwd 4x4x3->8 k3x3 s1",
    ] {
        assert!(conv::parse_tune_key(bad, 1).is_none(), "{bad:?}");
    }
}

#[test]
fn cached_winner_is_used_unless_disabled_or_forced() {
    let gpu = gpu();
    let g = ConvGeom::new(&[1, 9, 9, 4], &[3, 3, 4, 8], 1);
    let default = conv::choose(&gpu, Product::Forward, &g);
    let dw_default = conv::choose(&gpu, Product::GradWeight, &g);
    let other = gpu
        .kernels
        .borrow()
        .candidates(8)
        .into_iter()
        .find(|c| *c != default && *c != dw_default)
        .unwrap();
    gpu.kernels.borrow_mut().set_tuned_entry(
        conv::tune_key(Product::Forward, &g),
        other.to_tuned(1, 1.0, 2.0),
    );
    assert_eq!(conv::choose(&gpu, Product::Forward, &g), other);
    // Other products of the same layer keep their defaults.
    assert_ne!(
        conv::choose(&gpu, Product::GradWeight, &g),
        other,
        "dW has no entry"
    );
    gpu.kernels.borrow_mut().set_use_tuned(false);
    assert_eq!(conv::choose(&gpu, Product::Forward, &g), default);
    gpu.kernels.borrow_mut().set_use_tuned(true);
    // A forced family runs its default tile, which is what `default_config` reports.
    let family = gpu.kernels.borrow().family();
    gpu.kernels.borrow_mut().force_family(Some(family));
    let forced = conv::choose(&gpu, Product::Forward, &g);
    assert_eq!(forced, family.default_tile(8));
    assert_eq!(
        forced,
        gpu.kernels.borrow().default_config(Product::Forward, &g)
    );
    gpu.kernels.borrow_mut().force_family(None);
    assert_eq!(
        default,
        gpu.kernels.borrow().default_config(Product::Forward, &g)
    );
    // An entry this shader cannot run (another version's cache) falls back to the default.
    gpu.kernels.borrow_mut().set_tuned_entry(
        conv::tune_key(Product::Forward, &g),
        TunedKernel {
            config: TileConfig {
                family: Family::parse("tiled").unwrap(),
                tm: 3,
                tn: 4,
                threads_n: 4,
                wg: 64,
                run: 1,
            },
            images: 1,
            tuned_us: 1.0,
            default_us: 1.0,
        },
    );
    assert_eq!(conv::choose(&gpu, Product::Forward, &g), default);
    // Runs of tiles are the Winograd family's alone, up to 4 tiles.
    let uniform = Family::parse("uniform").unwrap().default_tile(8);
    assert!(uniform.valid() && !uniform.with_run(2).valid());
    let winograd = Family::parse("winograd").unwrap().default_tile(8);
    assert!(winograd.with_run(4).valid() && !winograd.with_run(5).valid());
    assert!(!winograd.with_run(0).valid());
    let four = TileConfig::new(Family::parse("winograd").unwrap(), 4, 8, 1);
    assert!(four.valid() && !four.with_run(2).valid());
    // By default every filter runs 2x2 tiles: 16 channels in runs of 2 where the product has
    // 16 output channels or more and its rows hold 32 tiles or its filter block fits one
    // window, else 8 channels in runs as long as the rows allow.
    let family = Family::parse("winograd").unwrap();
    let tile_of = |product: Product, xs: [usize; 4], k: usize, cout: usize| {
        let ws = [k, k, xs[3], cout];
        let g = ConvGeom::new(&xs, &ws, 1);
        let c = family.default_for(product, &g);
        assert_eq!((c.family, c.tm), (family, 2));
        (c.tn, c.run)
    };
    let fwd = |xs, k, cout| tile_of(Product::Forward, xs, k, cout);
    // 5x5 filters on rows of 144, 15, 3 and 1 output tiles.
    assert_eq!(fwd([1, 288, 288, 3], 5, 16), (16, 2));
    assert_eq!(fwd([1, 30, 30, 8], 5, 16), (16, 2));
    assert_eq!(fwd([1, 30, 30, 8], 5, 12), (8, 3));
    assert_eq!(fwd([1, 6, 6, 8], 5, 12), (8, 2));
    assert_eq!(fwd([1, 2, 2, 8], 5, 16), (16, 1));
    // 3x3 filters: rows of 72 and 36 tiles (the second's block exceeds a window), rows of 18
    // with a block that fits and one that does not, and rows of 2.
    assert_eq!(fwd([1, 144, 144, 48], 3, 16), (16, 2));
    assert_eq!(fwd([1, 72, 72, 96], 3, 32), (16, 2));
    assert_eq!(fwd([1, 36, 36, 32], 3, 64), (16, 2));
    assert_eq!(fwd([1, 36, 36, 128], 3, 64), (8, 3));
    assert_eq!(fwd([1, 4, 3, 8], 3, 8), (8, 2));
    // The input gradient by the same rule, its output channels the layer's input channels:
    // 128 of them on 64-channel rows of dY fit a window.
    let dx = |xs, k, cout| tile_of(Product::GradInput, xs, k, cout);
    assert_eq!(dx([1, 36, 36, 128], 3, 64), (16, 2));
    assert_eq!(dx([1, 36, 36, 8], 3, 64), (8, 3));
    // A product of few rows runs in the direct family; with a long reduction (the dense
    // head's 10368) in tiles narrow enough to fill more than one workgroup.
    let (uniform_family, direct) = (
        Family::parse("uniform").unwrap(),
        Family::parse("direct").unwrap(),
    );
    let dense = |k: usize| ConvGeom::new(&[16, 1, 1, k], &[1, 1, k, 32], 1);
    assert_eq!(
        uniform_family.default_for(Product::Forward, &dense(10368)),
        TileConfig::new(direct, 2, 2, 8)
    );
    assert_eq!(
        uniform_family.default_for(Product::Forward, &dense(32)),
        direct.default_tile(32)
    );
}

#[test]
fn cache_file_keeps_other_adapters_and_rejects_garbage() {
    let dir = std::env::temp_dir().join(format!("asna-tune-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("sub").join("tune.json");
    let load = |adapter: &str| tuning::load::<TunedKernel>(&path, adapter);
    assert!(load("a").unwrap().is_empty(), "missing file is empty");
    let entry = Family::parse("direct")
        .unwrap()
        .default_tile(8)
        .to_tuned(2, 10.0, 12.0);
    let mut t = std::collections::BTreeMap::new();
    t.insert("conv fwd 9x9x4->8 k3x3 s1".to_string(), entry.clone());
    tuning::save(&path, "adapter a", &t).unwrap();
    tuning::save::<TunedKernel>(&path, "adapter b", &Default::default()).unwrap();
    assert_eq!(load("adapter a").unwrap(), t);
    assert!(load("adapter b").unwrap().is_empty());
    std::fs::write(&path, "{ not json").unwrap();
    let err = format!("{:#}", load("adapter a").unwrap_err());
    assert!(
        err.contains("tune.json") && err.contains("not a tuning cache"),
        "{err}"
    );
    std::fs::write(&path, r#"{"version": 99, "adapters": {}}"#).unwrap();
    let err = format!("{:#}", load("adapter a").unwrap_err());
    assert!(err.contains("version 99"), "{err}");
    // A cache that is a device or a FIFO is refused at once, not read forever.
    let zero = tuning::load::<TunedKernel>(std::path::Path::new("/dev/zero"), "a");
    assert!(format!("{:#}", zero.unwrap_err()).contains("a character device"));
    let fifo = dir.join("fifo.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = format!("{:#}", tuning::load::<TunedKernel>(&fifo, "a").unwrap_err());
    assert!(err.contains("a FIFO"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn asna(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asna"))
        .args(args)
        .env("ASNA_TUNE_CACHE", cache)
        .env_remove("ASNA_TUNE")
        .env_remove("ASNA_CONV")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// The command end to end on the two most expensive scoring shapes: the cache gets this
/// adapter's entries, `--show` prints them, `bench --tuning both` measures both settings, and
/// a corrupt cache is reported and ignored rather than failing a scoring run.
#[test]
fn tune_command_writes_the_cache_and_bench_compares() {
    let dir = std::env::temp_dir().join(format!("asna-tune-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("tune.json");
    let out = asna(
        &cache,
        &[
            "tune",
            "--workload",
            "score",
            "--limit",
            "2",
            "--reps",
            "1",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tune failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shapes = report["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 2, "{report}");
    for s in shapes {
        assert!(s["shape"].as_str().unwrap().starts_with("conv fwd "), "{s}");
        // Either a candidate won by the margin, or the default stayed with its own time.
        let (tuned, default) = (
            s["tuned_ms"].as_f64().unwrap(),
            s["default_ms"].as_f64().unwrap(),
        );
        if s["best"] == s["default"] {
            assert_eq!(tuned, default, "{s}");
        } else {
            assert!(tuned < (1.0 - conv::policy::MIN_WIN) * default, "{s}");
        }
        assert!(s["candidates"].as_u64().unwrap() >= 2);
    }
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let adapters = file["adapters"].as_object().unwrap();
    assert_eq!(adapters.len(), 1);
    assert_eq!(
        adapters.values().next().unwrap().as_object().unwrap().len(),
        2
    );

    let show = asna(&cache, &["tune", "--show"]);
    assert!(show.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["shapes"].as_object().unwrap().len(), 2, "{shown}");

    let bench = asna(
        &cache,
        &[
            "bench",
            "--score-only",
            "--batch",
            "1",
            "--iters",
            "1",
            "--tuning",
            "both",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&bench.stderr);
    assert!(bench.status.success(), "bench failed: {stderr}");
    let b: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    for setting in ["default", "tuned"] {
        assert!(
            b["score_b1"][setting]["pairs_per_s"].as_f64().unwrap() > 0.0,
            "{b}"
        );
    }
    assert!(b["score_b1"]["tuned_speedup"].as_f64().unwrap() > 0.0);
    // The warm-up fills the pool; the timed runs reuse it, as a long scoring job does.
    for setting in ["default", "tuned"] {
        let m = &b["score_b1"][setting];
        assert_eq!(m["timed_allocations"].as_u64(), Some(0), "{b}");
        assert!(m["pool_mib"].as_f64().unwrap() > 0.0, "{b}");
    }
    // Every convolution shape of a scoring pass names the configuration that ran it: without
    // tuned entries, the policy's default resolved by its family.
    let gpu = gpu();
    let used = b["score_b1"]["default"]["conv_kernels"]
        .as_object()
        .unwrap();
    assert!(used.len() >= 15, "{used:?}");
    for (key, configs) in used {
        let (product, g) = conv::parse_tune_key(key, 1).unwrap();
        let c = gpu.kernels.borrow().default_config(product, &g);
        let want = c.family.resolve(product, &g, c, false).describe();
        assert_eq!(
            configs.as_array().unwrap(),
            &[serde_json::json!(want)],
            "{key}"
        );
    }
    let native = gpu.kernels.borrow().family();
    if native == Family::parse("winograd").unwrap() {
        let names = |key: &str| used[key].to_string();
        assert!(names("conv fwd 144x144x8->16 k5x5 s1").contains("winograd 2x2"));
        assert!(names("conv fwd 288x288x3->8 k5x5 s1").contains("taps written out"));
        assert!(names("conv fwd 72x72x16->32 k3x3 s1")
            .contains("winograd 2x2 output tiles in runs of 2, 16 channels"));
        assert!(names("conv fwd 36x36x128->64 k3x3 s1")
            .contains("winograd 2x2 output tiles in runs of 3, 8 channels"));
        assert!(!names("conv fwd 288x288x24->32 k3x3 s4").contains("winograd"));
    }

    std::fs::write(&cache, "garbage").unwrap();
    let score = asna(
        &cache,
        &["score", "data/demo/ref.png", "data/demo/dist.png"],
    );
    let stderr = String::from_utf8_lossy(&score.stderr);
    assert!(score.status.success(), "{stderr}");
    assert!(
        stderr.contains("tuning cache ignored") && stderr.contains("tune.json"),
        "{stderr}"
    );
    let both = asna(&cache, &["bench", "--tuning", "both", "--score-only"]);
    assert_eq!(both.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.contains("run `asna tune` first"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ASNA_TUNE=off` runs the defaults though the cache holds a winner for the shape, and
/// `ASNA_SUBGROUPS=off` switches the subgroup variants off where the adapter runs them.
#[test]
fn asna_tune_off_and_asna_subgroups_off_are_obeyed() {
    let gpu = gpu();
    let dir = std::env::temp_dir().join(format!("asna-tune-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("tune.json");
    // A cached "winner" for one shape of a scoring pass that is not its default.
    let key = "conv fwd 72x72x16->32 k3x3 s1";
    let (product, g) = conv::parse_tune_key(key, 1).unwrap();
    let (_, gn, _) = product.gemm(&g);
    let resolve = |c: TileConfig| c.family.resolve(product, &g, c, false);
    let default = resolve(gpu.kernels.borrow().default_config(product, &g));
    let other = gpu
        .kernels
        .borrow()
        .candidates(gn)
        .into_iter()
        .map(resolve)
        .find(|c| c.describe() != default.describe())
        .expect("a candidate other than the default");
    let entry = TunedKernel {
        config: other,
        images: 1,
        tuned_us: 1.0,
        default_us: 2.0,
    };
    let table = [(key.to_string(), entry)].into_iter().collect();
    tuning::save(&cache, &tuning::adapter_key(&gpu.info), &table).unwrap();

    let bench = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_asna"));
        cmd.args(["bench", "--score-only", "--batch", "1", "--iters", "1"])
            .args(["--tuning", "on", "--json"])
            .env("ASNA_TUNE_CACHE", &cache)
            .env_remove("ASNA_TUNE")
            .env_remove("ASNA_SUBGROUPS")
            .env_remove("ASNA_CONV")
            .envs(env.iter().copied());
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ran = report["score_b1"]["tuned"]["conv_kernels"][key].clone();
        (
            ran,
            report["score_b1"]["tuned"]["shared_loads"]
                .as_bool()
                .unwrap(),
        )
    };
    let (ran, shared) = bench(&[]);
    assert_eq!(ran, serde_json::json!([other.describe()]));
    assert_eq!(shared, gpu.kernels.borrow().shared_loads());
    let (ran, shared) = bench(&[("ASNA_TUNE", "off"), ("ASNA_SUBGROUPS", "off")]);
    assert_eq!(ran, serde_json::json!([default.describe()]));
    assert!(!shared);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tuned_speedup` is the tuned rate over the default one, below 1 where tuning lost: each
/// setting is measured with the policy switched to it, and restored after.
#[test]
fn bench_reports_tuned_over_default_either_way() {
    let gpu = gpu();
    let was = gpu.kernels.borrow().uses_tuned();
    for (default_rate, tuned_rate) in [(2.0, 3.0), (4.0, 1.0)] {
        let report = asna::bench::per_tuning(&gpu, &[false, true], "pairs_per_s", || {
            let rate = if gpu.kernels.borrow().uses_tuned() {
                tuned_rate
            } else {
                default_rate
            };
            Ok(serde_json::json!({ "pairs_per_s": rate }))
        })
        .unwrap();
        assert_eq!(report["default"]["pairs_per_s"], default_rate);
        assert_eq!(report["tuned"]["pairs_per_s"], tuned_rate);
        assert_eq!(report["tuned_speedup"], tuned_rate / default_rate);
        assert_eq!(gpu.kernels.borrow().uses_tuned(), was);
    }
    // One setting alone has no ratio.
    let one = asna::bench::per_tuning(&gpu, &[true], "pairs_per_s", || {
        Ok(serde_json::json!({ "pairs_per_s": 1.0 }))
    })
    .unwrap();
    assert!(one.get("tuned_speedup").is_none(), "{one}");
}

/// The winner rule alone: the fastest candidate replaces the default only when it is more
/// than `MIN_WIN` faster; otherwise the default stays with its own time.
#[test]
fn a_candidate_replaces_the_default_only_when_clearly_faster() {
    use asna::ops::conv::policy::{pick_winner, MIN_WIN};
    assert_eq!(MIN_WIN, 0.02);
    let default = ("default", 1.0);
    assert_eq!(pick_winner(default, &[]), default);
    assert_eq!(pick_winner(default, &[("slower", 1.5)]), default);
    assert_eq!(pick_winner(default, &[("within noise", 0.99)]), default);
    assert_eq!(pick_winner(default, &[("clear", 0.97)]), ("clear", 0.97));
    assert_eq!(
        pick_winner(default, &[("a", 0.9), ("b", 0.5), ("c", 0.7)]),
        ("b", 0.5),
        "the fastest wins, wherever it is listed"
    );
}

/// `tune --limit N` tunes the N most expensive shapes: the order is by FLOPs per step, a
/// shape's cost counting every call and image, not by the order the shapes were met in.
#[test]
fn shapes_are_tuned_most_expensive_first() {
    use asna::ops::conv::policy::Seen;
    let seen = |images, calls| Seen { images, calls };
    let shapes: std::collections::BTreeMap<String, Seen> = [
        // 2 * 16*16 * 9*8*8 = 294912 FLOPs per image: x 4 images x 1 call.
        ("conv fwd 16x16x8->8 k3x3 s1", seen(4, 1)),
        // 2 * 32*32 * 9*3*8: 442368 per image, x 1 x 1: the largest single call...
        ("conv dx 32x32x3->8 k3x3 s1", seen(1, 1)),
        // ...but this one runs 10 times: 2 * 16*16 * 8*8 = 32768 x 2 x 10.
        ("conv dw 16x16x8->8 k1x1 s1", seen(2, 10)),
        // A key that names no shape costs nothing and comes last.
        ("conv up 4x4x3->8 k3x3 s1", seen(9, 9)),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_string(), s))
    .collect();
    let order: Vec<String> = asna::tune::order_shapes(&shapes)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        order,
        [
            "conv fwd 16x16x8->8 k3x3 s1",
            "conv dw 16x16x8->8 k1x1 s1",
            "conv dx 32x32x3->8 k3x3 s1",
            "conv up 4x4x3->8 k3x3 s1",
        ]
    );
}
