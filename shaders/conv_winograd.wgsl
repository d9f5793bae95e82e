// Winograd minimal-filtering convolutions for stride-1 square 3x3 and 5x5 filters:
// F(2x2, 3x3) (4x4 input tiles, 16 products where direct summation takes 36), F(4x4, 3x3)
// and F(2x2, 5x5) (6x6 input tiles, 36 products where direct summation takes 144 and 100).
// With d an ALPHA x ALPHA input tile, g the R x R filter of one channel pair and
// ALPHA = M + R - 1, an M x M output tile is
//   Y = A^T [ sum over input channels of (G g G^T) (.) (B^T d B) ] A
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), with the
// interpolation points 0, 1, -1, inf (ALPHA 4) and 0, 1, -1, 2, -2, inf (ALPHA 6).
//
// Products (layouts as conv.wgsl: NHWC activations, HWIO weights):
//   MODE 0 (forward): source X [n, sh, sw, sc = cin], output Y [n, oh, ow, gn = cout] with
//     bias, activation and the folded batch norm in the epilogue
//   MODE 1 (grad input): the forward product of dY [n, oh, ow, sc = cout] with the filter
//     turned by 180 degrees and its channels swapped, padded kh - 1 - pad, giving
//     dX [n, h, w, gn = cin]
// winograd_weights transforms the filter once per call, U = G g G^T, into blocks of TN4 vec4
// output channels, rows (input channel, transform point): packed[(block * kp + c * ALPHA^2
// + xi) * TN4 + j]. A block's rows fit one 64 KiB uniform window (the Rust side chooses
// ALPHA and TN4 so that they do), so every invocation of a workgroup reads the same U vec4:
// one load and a broadcast on CPU drivers, as in conv_uniform.wgsl. Each invocation owns one
// output tile: it gathers the tile's ALPHA x ALPHA inputs of one channel (bounds tested once
// per tile, outside the channel loop), transforms them, and multiplies every transform point
// by the shared U vec4 of that point; after the channel loop it transforms its ALPHA^2 x TN4
// vec4 sums back to M x M pixels of 4 TN4 channels. Entry points: winograd_2x2_3x3
// (F(2x2, 3x3)), winograd_6x6 (F(4x4, 3x3) and F(2x2, 5x5)), winograd_weights (both modes).

override MODE: u32 = 0u;
override ACT: u32 = 0u;        // 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh
override M: u32 = 2u;          // output tile side
override R: u32 = 3u;          // filter side
override TN4: u32 = 2u;        // vec4 output channels per workgroup

const WG: u32 = 64u;
// vec4 in one 64 KiB uniform window.
const WINDOW: u32 = 4096u;

struct Params {
    n: u32, sh: u32, sw: u32, sc: u32,
    oh: u32, ow: u32, gn: u32, pad_t: u32,
    pad_l: u32, tiles_y: u32, tiles_x: u32, tiles: u32,
    kp: u32, b0: u32, has_bias: u32, has_bn: u32,
    cin: u32, cout: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<uniform> wts: array<vec4<f32>, WINDOW>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> bn: array<f32>;

fn alpha() -> u32 {
    return M + R - 1u;
}

fn activate(x: f32) -> f32 {
    if (ACT == 1u) { return select(0.5 * x, x, x > 0.0); }
    if (ACT == 2u) { return max(x, 0.0); }
    if (ACT == 3u) { return 1.0 / (1.0 + exp(-x)); }
    if (ACT == 4u) { return tanh(x); }
    return x;
}

// Row `row` of G (ALPHA x R) at column `col`: the filter transform's interpolation weights.
fn g_entry(row: u32, col: u32) -> f32 {
    let a = alpha();
    if (row == a - 1u) { return select(0.0, 1.0, col == R - 1u); }
    var point = array<f32, 5>(0.0, 1.0, -1.0, 2.0, -2.0);
    var scale = array<f32, 5>(0.25, -1.0 / 6.0, -1.0 / 6.0, 1.0 / 24.0, 1.0 / 24.0);
    if (a == 4u) { scale = array<f32, 5>(1.0, 0.5, 0.5, 0.0, 0.0); }
    if (col == 0u) { return scale[row]; }
    var v = scale[row];
    for (var i = 0u; i < col; i++) { v *= point[row]; }
    return v;
}

// U = G g G^T of each filter channel pair, as blocks of TN4 vec4 columns (see above); zero
// beyond the channels. MODE 1 reads the filter turned by 180 degrees with in and out swapped.
// One invocation per vec4.
@group(0) @binding(1) var<storage, read_write> packed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;

@compute @workgroup_size(WG)
fn winograd_weights(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let a = alpha();
    let a2 = a * a;
    let idx = gid.x + gid.y * nwg.x * WG;
    let blocks = (p.gn + TN4 * 4u - 1u) / (TN4 * 4u);
    if (idx >= blocks * p.kp * TN4) { return; }
    let j = idx % TN4;
    let row = idx / TN4;
    let k = row % p.kp;
    let block = row / p.kp;
    let ch = k / a2;
    let xi = k - ch * a2;
    let u = xi / a;
    let w = xi - u * a;
    var v = vec4<f32>(0.0);
    if (ch < p.sc) {
        for (var e = 0u; e < 4u; e++) {
            let n = block * TN4 * 4u + j * 4u + e;
            if (n >= p.gn) { continue; }
            var s = 0.0;
            for (var ky = 0u; ky < R; ky++) {
                let gu = g_entry(u, ky);
                if (gu == 0.0) { continue; }
                var line = 0.0;
                for (var kx = 0u; kx < R; kx++) {
                    var wi: u32;
                    if (MODE == 0u) {
                        wi = ((ky * R + kx) * p.cin + ch) * p.cout + n;
                    } else {
                        wi = (((R - 1u - ky) * R + (R - 1u - kx)) * p.cin + n) * p.cout + ch;
                    }
                    line = fma(g_entry(w, kx), weight[wi], line);
                }
                s = fma(gu, line, s);
            }
            v[e] = s;
        }
    }
    packed[idx] = v;
}

// Writes the 4 channels of vec4 column j of one output pixel, with bias, activation and
// batch norm (forward; zero flags for the input gradient).
fn store_tile(img: u32, oy: u32, ox: u32, live: bool, block: u32, j: u32, v: vec4<f32>) {
    if (!live || oy >= p.oh || ox >= p.ow) { return; }
    let o = ((img * p.oh + oy) * p.ow + ox) * p.gn;
    for (var e = 0u; e < 4u; e++) {
        let n = block * (TN4 * 4u) + j * 4u + e;
        if (n >= p.gn) { return; }
        var val = v[e];
        if (p.has_bias != 0u) { val += bias[n]; }
        val = activate(val);
        if (p.has_bn != 0u) { val = val * bn[n] + bn[p.gn + n]; }
        out[o + n] = val;
    }
}

// F(2x2, 3x3) written out: every value a named local, no array indexed by a loop counter,
// so that a CPU driver keeps the 16 x TN4 accumulators in registers or fixed stack slots
// (a local array indexed in a loop there costs a stack access per use, and the loop form of
// this kernel ran slower than the uniform family's).
@compute @workgroup_size(WG)
fn winograd_2x2_3x3(@builtin(local_invocation_index) lid: u32,
                    @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let t_raw = (wid.y + wid.z * nwg.y) * WG + lid;
    let live = t_raw < p.tiles;
    let t = select(0u, t_raw, live);
    let plane = p.tiles_y * p.tiles_x;
    let img = t / plane;
    let rem = t - img * plane;
    let ty = rem / p.tiles_x;
    let tx = rem - ty * p.tiles_x;
    let y0 = i32(ty * 2u) - i32(p.pad_t);
    let x0 = i32(tx * 2u) - i32(p.pad_l);
    // Element offsets of the tile's 4 rows at column 0 and channel 0, and which rows and
    // columns lie in the image (outside it reads element 0 and discards it).
    let ry0 = live && y0 + 0 >= 0 && y0 + 0 < i32(p.sh);
    let ry1 = live && y0 + 1 >= 0 && y0 + 1 < i32(p.sh);
    let ry2 = live && y0 + 2 >= 0 && y0 + 2 < i32(p.sh);
    let ry3 = live && y0 + 3 >= 0 && y0 + 3 < i32(p.sh);
    let cx0 = x0 + 0 >= 0 && x0 + 0 < i32(p.sw);
    let cx1 = x0 + 1 >= 0 && x0 + 1 < i32(p.sw);
    let cx2 = x0 + 2 >= 0 && x0 + 2 < i32(p.sw);
    let cx3 = x0 + 3 >= 0 && x0 + 3 < i32(p.sw);
    let k00 = ry0 && cx0;
    let o00 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 0)) * p.sc, k00);
    let k01 = ry0 && cx1;
    let o01 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 1)) * p.sc, k01);
    let k02 = ry0 && cx2;
    let o02 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 2)) * p.sc, k02);
    let k03 = ry0 && cx3;
    let o03 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 3)) * p.sc, k03);
    let k10 = ry1 && cx0;
    let o10 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 0)) * p.sc, k10);
    let k11 = ry1 && cx1;
    let o11 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 1)) * p.sc, k11);
    let k12 = ry1 && cx2;
    let o12 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 2)) * p.sc, k12);
    let k13 = ry1 && cx3;
    let o13 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 3)) * p.sc, k13);
    let k20 = ry2 && cx0;
    let o20 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 0)) * p.sc, k20);
    let k21 = ry2 && cx1;
    let o21 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 1)) * p.sc, k21);
    let k22 = ry2 && cx2;
    let o22 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 2)) * p.sc, k22);
    let k23 = ry2 && cx3;
    let o23 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 3)) * p.sc, k23);
    let k30 = ry3 && cx0;
    let o30 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 0)) * p.sc, k30);
    let k31 = ry3 && cx1;
    let o31 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 1)) * p.sc, k31);
    let k32 = ry3 && cx2;
    let o32 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 2)) * p.sc, k32);
    let k33 = ry3 && cx3;
    let o33 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 3)) * p.sc, k33);
    var a0_0 = vec4<f32>(0.0);
    var a0_1 = vec4<f32>(0.0);
    var a0_2 = vec4<f32>(0.0);
    var a0_3 = vec4<f32>(0.0);
    var a0_4 = vec4<f32>(0.0);
    var a0_5 = vec4<f32>(0.0);
    var a0_6 = vec4<f32>(0.0);
    var a0_7 = vec4<f32>(0.0);
    var a0_8 = vec4<f32>(0.0);
    var a0_9 = vec4<f32>(0.0);
    var a0_10 = vec4<f32>(0.0);
    var a0_11 = vec4<f32>(0.0);
    var a0_12 = vec4<f32>(0.0);
    var a0_13 = vec4<f32>(0.0);
    var a0_14 = vec4<f32>(0.0);
    var a0_15 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0);
    var a1_1 = vec4<f32>(0.0);
    var a1_2 = vec4<f32>(0.0);
    var a1_3 = vec4<f32>(0.0);
    var a1_4 = vec4<f32>(0.0);
    var a1_5 = vec4<f32>(0.0);
    var a1_6 = vec4<f32>(0.0);
    var a1_7 = vec4<f32>(0.0);
    var a1_8 = vec4<f32>(0.0);
    var a1_9 = vec4<f32>(0.0);
    var a1_10 = vec4<f32>(0.0);
    var a1_11 = vec4<f32>(0.0);
    var a1_12 = vec4<f32>(0.0);
    var a1_13 = vec4<f32>(0.0);
    var a1_14 = vec4<f32>(0.0);
    var a1_15 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0);
    var a2_1 = vec4<f32>(0.0);
    var a2_2 = vec4<f32>(0.0);
    var a2_3 = vec4<f32>(0.0);
    var a2_4 = vec4<f32>(0.0);
    var a2_5 = vec4<f32>(0.0);
    var a2_6 = vec4<f32>(0.0);
    var a2_7 = vec4<f32>(0.0);
    var a2_8 = vec4<f32>(0.0);
    var a2_9 = vec4<f32>(0.0);
    var a2_10 = vec4<f32>(0.0);
    var a2_11 = vec4<f32>(0.0);
    var a2_12 = vec4<f32>(0.0);
    var a2_13 = vec4<f32>(0.0);
    var a2_14 = vec4<f32>(0.0);
    var a2_15 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0);
    var a3_1 = vec4<f32>(0.0);
    var a3_2 = vec4<f32>(0.0);
    var a3_3 = vec4<f32>(0.0);
    var a3_4 = vec4<f32>(0.0);
    var a3_5 = vec4<f32>(0.0);
    var a3_6 = vec4<f32>(0.0);
    var a3_7 = vec4<f32>(0.0);
    var a3_8 = vec4<f32>(0.0);
    var a3_9 = vec4<f32>(0.0);
    var a3_10 = vec4<f32>(0.0);
    var a3_11 = vec4<f32>(0.0);
    var a3_12 = vec4<f32>(0.0);
    var a3_13 = vec4<f32>(0.0);
    var a3_14 = vec4<f32>(0.0);
    var a3_15 = vec4<f32>(0.0);
    var wrow = wid.x * p.kp * TN4;
    for (var ch = 0u; ch < p.sc; ch++) {
        let d0 = vec4<f32>(select(0.0, src[o00 + ch], k00), select(0.0, src[o01 + ch], k01), select(0.0, src[o02 + ch], k02), select(0.0, src[o03 + ch], k03));
        let d1 = vec4<f32>(select(0.0, src[o10 + ch], k10), select(0.0, src[o11 + ch], k11), select(0.0, src[o12 + ch], k12), select(0.0, src[o13 + ch], k13));
        let d2 = vec4<f32>(select(0.0, src[o20 + ch], k20), select(0.0, src[o21 + ch], k21), select(0.0, src[o22 + ch], k22), select(0.0, src[o23 + ch], k23));
        let d3 = vec4<f32>(select(0.0, src[o30 + ch], k30), select(0.0, src[o31 + ch], k31), select(0.0, src[o32 + ch], k32), select(0.0, src[o33 + ch], k33));
        // B^T d: rows combined; then d B: columns combined.
        let t0 = d0 - d2;
        let t1 = d1 + d2;
        let t2 = d2 - d1;
        let t3 = d1 - d3;
        let v0 = vec4<f32>(t0.x - t0.z, t0.y + t0.z, t0.z - t0.y, t0.y - t0.w);
        let v1 = vec4<f32>(t1.x - t1.z, t1.y + t1.z, t1.z - t1.y, t1.y - t1.w);
        let v2 = vec4<f32>(t2.x - t2.z, t2.y + t2.z, t2.z - t2.y, t2.y - t2.w);
        let v3 = vec4<f32>(t3.x - t3.z, t3.y + t3.z, t3.z - t3.y, t3.y - t3.w);
        a0_0 = fma(vec4<f32>(v0.x), wts[wrow + 0u * TN4 + 0u], a0_0);
        a0_1 = fma(vec4<f32>(v0.y), wts[wrow + 1u * TN4 + 0u], a0_1);
        a0_2 = fma(vec4<f32>(v0.z), wts[wrow + 2u * TN4 + 0u], a0_2);
        a0_3 = fma(vec4<f32>(v0.w), wts[wrow + 3u * TN4 + 0u], a0_3);
        a0_4 = fma(vec4<f32>(v1.x), wts[wrow + 4u * TN4 + 0u], a0_4);
        a0_5 = fma(vec4<f32>(v1.y), wts[wrow + 5u * TN4 + 0u], a0_5);
        a0_6 = fma(vec4<f32>(v1.z), wts[wrow + 6u * TN4 + 0u], a0_6);
        a0_7 = fma(vec4<f32>(v1.w), wts[wrow + 7u * TN4 + 0u], a0_7);
        a0_8 = fma(vec4<f32>(v2.x), wts[wrow + 8u * TN4 + 0u], a0_8);
        a0_9 = fma(vec4<f32>(v2.y), wts[wrow + 9u * TN4 + 0u], a0_9);
        a0_10 = fma(vec4<f32>(v2.z), wts[wrow + 10u * TN4 + 0u], a0_10);
        a0_11 = fma(vec4<f32>(v2.w), wts[wrow + 11u * TN4 + 0u], a0_11);
        a0_12 = fma(vec4<f32>(v3.x), wts[wrow + 12u * TN4 + 0u], a0_12);
        a0_13 = fma(vec4<f32>(v3.y), wts[wrow + 13u * TN4 + 0u], a0_13);
        a0_14 = fma(vec4<f32>(v3.z), wts[wrow + 14u * TN4 + 0u], a0_14);
        a0_15 = fma(vec4<f32>(v3.w), wts[wrow + 15u * TN4 + 0u], a0_15);
        if (TN4 >= 2u) {
            a1_0 = fma(vec4<f32>(v0.x), wts[wrow + 0u * TN4 + 1u], a1_0);
            a1_1 = fma(vec4<f32>(v0.y), wts[wrow + 1u * TN4 + 1u], a1_1);
            a1_2 = fma(vec4<f32>(v0.z), wts[wrow + 2u * TN4 + 1u], a1_2);
            a1_3 = fma(vec4<f32>(v0.w), wts[wrow + 3u * TN4 + 1u], a1_3);
            a1_4 = fma(vec4<f32>(v1.x), wts[wrow + 4u * TN4 + 1u], a1_4);
            a1_5 = fma(vec4<f32>(v1.y), wts[wrow + 5u * TN4 + 1u], a1_5);
            a1_6 = fma(vec4<f32>(v1.z), wts[wrow + 6u * TN4 + 1u], a1_6);
            a1_7 = fma(vec4<f32>(v1.w), wts[wrow + 7u * TN4 + 1u], a1_7);
            a1_8 = fma(vec4<f32>(v2.x), wts[wrow + 8u * TN4 + 1u], a1_8);
            a1_9 = fma(vec4<f32>(v2.y), wts[wrow + 9u * TN4 + 1u], a1_9);
            a1_10 = fma(vec4<f32>(v2.z), wts[wrow + 10u * TN4 + 1u], a1_10);
            a1_11 = fma(vec4<f32>(v2.w), wts[wrow + 11u * TN4 + 1u], a1_11);
            a1_12 = fma(vec4<f32>(v3.x), wts[wrow + 12u * TN4 + 1u], a1_12);
            a1_13 = fma(vec4<f32>(v3.y), wts[wrow + 13u * TN4 + 1u], a1_13);
            a1_14 = fma(vec4<f32>(v3.z), wts[wrow + 14u * TN4 + 1u], a1_14);
            a1_15 = fma(vec4<f32>(v3.w), wts[wrow + 15u * TN4 + 1u], a1_15);
        }
        if (TN4 >= 4u) {
            a2_0 = fma(vec4<f32>(v0.x), wts[wrow + 0u * TN4 + 2u], a2_0);
            a2_1 = fma(vec4<f32>(v0.y), wts[wrow + 1u * TN4 + 2u], a2_1);
            a2_2 = fma(vec4<f32>(v0.z), wts[wrow + 2u * TN4 + 2u], a2_2);
            a2_3 = fma(vec4<f32>(v0.w), wts[wrow + 3u * TN4 + 2u], a2_3);
            a2_4 = fma(vec4<f32>(v1.x), wts[wrow + 4u * TN4 + 2u], a2_4);
            a2_5 = fma(vec4<f32>(v1.y), wts[wrow + 5u * TN4 + 2u], a2_5);
            a2_6 = fma(vec4<f32>(v1.z), wts[wrow + 6u * TN4 + 2u], a2_6);
            a2_7 = fma(vec4<f32>(v1.w), wts[wrow + 7u * TN4 + 2u], a2_7);
            a2_8 = fma(vec4<f32>(v2.x), wts[wrow + 8u * TN4 + 2u], a2_8);
            a2_9 = fma(vec4<f32>(v2.y), wts[wrow + 9u * TN4 + 2u], a2_9);
            a2_10 = fma(vec4<f32>(v2.z), wts[wrow + 10u * TN4 + 2u], a2_10);
            a2_11 = fma(vec4<f32>(v2.w), wts[wrow + 11u * TN4 + 2u], a2_11);
            a2_12 = fma(vec4<f32>(v3.x), wts[wrow + 12u * TN4 + 2u], a2_12);
            a2_13 = fma(vec4<f32>(v3.y), wts[wrow + 13u * TN4 + 2u], a2_13);
            a2_14 = fma(vec4<f32>(v3.z), wts[wrow + 14u * TN4 + 2u], a2_14);
            a2_15 = fma(vec4<f32>(v3.w), wts[wrow + 15u * TN4 + 2u], a2_15);
            a3_0 = fma(vec4<f32>(v0.x), wts[wrow + 0u * TN4 + 3u], a3_0);
            a3_1 = fma(vec4<f32>(v0.y), wts[wrow + 1u * TN4 + 3u], a3_1);
            a3_2 = fma(vec4<f32>(v0.z), wts[wrow + 2u * TN4 + 3u], a3_2);
            a3_3 = fma(vec4<f32>(v0.w), wts[wrow + 3u * TN4 + 3u], a3_3);
            a3_4 = fma(vec4<f32>(v1.x), wts[wrow + 4u * TN4 + 3u], a3_4);
            a3_5 = fma(vec4<f32>(v1.y), wts[wrow + 5u * TN4 + 3u], a3_5);
            a3_6 = fma(vec4<f32>(v1.z), wts[wrow + 6u * TN4 + 3u], a3_6);
            a3_7 = fma(vec4<f32>(v1.w), wts[wrow + 7u * TN4 + 3u], a3_7);
            a3_8 = fma(vec4<f32>(v2.x), wts[wrow + 8u * TN4 + 3u], a3_8);
            a3_9 = fma(vec4<f32>(v2.y), wts[wrow + 9u * TN4 + 3u], a3_9);
            a3_10 = fma(vec4<f32>(v2.z), wts[wrow + 10u * TN4 + 3u], a3_10);
            a3_11 = fma(vec4<f32>(v2.w), wts[wrow + 11u * TN4 + 3u], a3_11);
            a3_12 = fma(vec4<f32>(v3.x), wts[wrow + 12u * TN4 + 3u], a3_12);
            a3_13 = fma(vec4<f32>(v3.y), wts[wrow + 13u * TN4 + 3u], a3_13);
            a3_14 = fma(vec4<f32>(v3.z), wts[wrow + 14u * TN4 + 3u], a3_14);
            a3_15 = fma(vec4<f32>(v3.w), wts[wrow + 15u * TN4 + 3u], a3_15);
        }
        wrow += 16u * TN4;
    }
    let block = p.b0 + wid.x;
    {
        let h0_0 = a0_0 + a0_4 + a0_8;
        let h1_0 = a0_4 - a0_8 - a0_12;
        let h0_1 = a0_1 + a0_5 + a0_9;
        let h1_1 = a0_5 - a0_9 - a0_13;
        let h0_2 = a0_2 + a0_6 + a0_10;
        let h1_2 = a0_6 - a0_10 - a0_14;
        let h0_3 = a0_3 + a0_7 + a0_11;
        let h1_3 = a0_7 - a0_11 - a0_15;
        store_tile(img, ty * 2u + 0u, tx * 2u, live, block, 0u, h0_0 + h0_1 + h0_2);
        store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 0u, h0_1 - h0_2 - h0_3);
        store_tile(img, ty * 2u + 1u, tx * 2u, live, block, 0u, h1_0 + h1_1 + h1_2);
        store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 0u, h1_1 - h1_2 - h1_3);
    }
    if (TN4 >= 2u) {
        {
            let h0_0 = a1_0 + a1_4 + a1_8;
            let h1_0 = a1_4 - a1_8 - a1_12;
            let h0_1 = a1_1 + a1_5 + a1_9;
            let h1_1 = a1_5 - a1_9 - a1_13;
            let h0_2 = a1_2 + a1_6 + a1_10;
            let h1_2 = a1_6 - a1_10 - a1_14;
            let h0_3 = a1_3 + a1_7 + a1_11;
            let h1_3 = a1_7 - a1_11 - a1_15;
            store_tile(img, ty * 2u + 0u, tx * 2u, live, block, 1u, h0_0 + h0_1 + h0_2);
            store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 1u, h0_1 - h0_2 - h0_3);
            store_tile(img, ty * 2u + 1u, tx * 2u, live, block, 1u, h1_0 + h1_1 + h1_2);
            store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 1u, h1_1 - h1_2 - h1_3);
        }
    }
    if (TN4 >= 4u) {
        {
            let h0_0 = a2_0 + a2_4 + a2_8;
            let h1_0 = a2_4 - a2_8 - a2_12;
            let h0_1 = a2_1 + a2_5 + a2_9;
            let h1_1 = a2_5 - a2_9 - a2_13;
            let h0_2 = a2_2 + a2_6 + a2_10;
            let h1_2 = a2_6 - a2_10 - a2_14;
            let h0_3 = a2_3 + a2_7 + a2_11;
            let h1_3 = a2_7 - a2_11 - a2_15;
            store_tile(img, ty * 2u + 0u, tx * 2u, live, block, 2u, h0_0 + h0_1 + h0_2);
            store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 2u, h0_1 - h0_2 - h0_3);
            store_tile(img, ty * 2u + 1u, tx * 2u, live, block, 2u, h1_0 + h1_1 + h1_2);
            store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 2u, h1_1 - h1_2 - h1_3);
        }
        {
            let h0_0 = a3_0 + a3_4 + a3_8;
            let h1_0 = a3_4 - a3_8 - a3_12;
            let h0_1 = a3_1 + a3_5 + a3_9;
            let h1_1 = a3_5 - a3_9 - a3_13;
            let h0_2 = a3_2 + a3_6 + a3_10;
            let h1_2 = a3_6 - a3_10 - a3_14;
            let h0_3 = a3_3 + a3_7 + a3_11;
            let h1_3 = a3_7 - a3_11 - a3_15;
            store_tile(img, ty * 2u + 0u, tx * 2u, live, block, 3u, h0_0 + h0_1 + h0_2);
            store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 3u, h0_1 - h0_2 - h0_3);
            store_tile(img, ty * 2u + 1u, tx * 2u, live, block, 3u, h1_0 + h1_1 + h1_2);
            store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 3u, h1_1 - h1_2 - h1_3);
        }
    }
}

// The 6x6 input transform written out, shared by F(4x4, 3x3) (M 4) and F(2x2, 5x5) (M 2),
// which differ only in the output transform (and the filter transform, winograd_weights).
@compute @workgroup_size(WG)
fn winograd_6x6(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let t_raw = (wid.y + wid.z * nwg.y) * WG + lid;
    let live = t_raw < p.tiles;
    let t = select(0u, t_raw, live);
    let plane = p.tiles_y * p.tiles_x;
    let img = t / plane;
    let rem = t - img * plane;
    let ty = rem / p.tiles_x;
    let tx = rem - ty * p.tiles_x;
    let y0 = i32(ty * M) - i32(p.pad_t);
    let x0 = i32(tx * M) - i32(p.pad_l);
    let ry0 = live && y0 + 0 >= 0 && y0 + 0 < i32(p.sh);
    let ry1 = live && y0 + 1 >= 0 && y0 + 1 < i32(p.sh);
    let ry2 = live && y0 + 2 >= 0 && y0 + 2 < i32(p.sh);
    let ry3 = live && y0 + 3 >= 0 && y0 + 3 < i32(p.sh);
    let ry4 = live && y0 + 4 >= 0 && y0 + 4 < i32(p.sh);
    let ry5 = live && y0 + 5 >= 0 && y0 + 5 < i32(p.sh);
    let cx0 = x0 + 0 >= 0 && x0 + 0 < i32(p.sw);
    let cx1 = x0 + 1 >= 0 && x0 + 1 < i32(p.sw);
    let cx2 = x0 + 2 >= 0 && x0 + 2 < i32(p.sw);
    let cx3 = x0 + 3 >= 0 && x0 + 3 < i32(p.sw);
    let cx4 = x0 + 4 >= 0 && x0 + 4 < i32(p.sw);
    let cx5 = x0 + 5 >= 0 && x0 + 5 < i32(p.sw);
    let k00 = ry0 && cx0;
    let o00 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 0)) * p.sc, k00);
    let k01 = ry0 && cx1;
    let o01 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 1)) * p.sc, k01);
    let k02 = ry0 && cx2;
    let o02 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 2)) * p.sc, k02);
    let k03 = ry0 && cx3;
    let o03 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 3)) * p.sc, k03);
    let k04 = ry0 && cx4;
    let o04 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 4)) * p.sc, k04);
    let k05 = ry0 && cx5;
    let o05 = select(0u, ((img * p.sh + u32(y0 + 0)) * p.sw + u32(x0 + 5)) * p.sc, k05);
    let k10 = ry1 && cx0;
    let o10 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 0)) * p.sc, k10);
    let k11 = ry1 && cx1;
    let o11 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 1)) * p.sc, k11);
    let k12 = ry1 && cx2;
    let o12 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 2)) * p.sc, k12);
    let k13 = ry1 && cx3;
    let o13 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 3)) * p.sc, k13);
    let k14 = ry1 && cx4;
    let o14 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 4)) * p.sc, k14);
    let k15 = ry1 && cx5;
    let o15 = select(0u, ((img * p.sh + u32(y0 + 1)) * p.sw + u32(x0 + 5)) * p.sc, k15);
    let k20 = ry2 && cx0;
    let o20 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 0)) * p.sc, k20);
    let k21 = ry2 && cx1;
    let o21 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 1)) * p.sc, k21);
    let k22 = ry2 && cx2;
    let o22 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 2)) * p.sc, k22);
    let k23 = ry2 && cx3;
    let o23 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 3)) * p.sc, k23);
    let k24 = ry2 && cx4;
    let o24 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 4)) * p.sc, k24);
    let k25 = ry2 && cx5;
    let o25 = select(0u, ((img * p.sh + u32(y0 + 2)) * p.sw + u32(x0 + 5)) * p.sc, k25);
    let k30 = ry3 && cx0;
    let o30 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 0)) * p.sc, k30);
    let k31 = ry3 && cx1;
    let o31 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 1)) * p.sc, k31);
    let k32 = ry3 && cx2;
    let o32 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 2)) * p.sc, k32);
    let k33 = ry3 && cx3;
    let o33 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 3)) * p.sc, k33);
    let k34 = ry3 && cx4;
    let o34 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 4)) * p.sc, k34);
    let k35 = ry3 && cx5;
    let o35 = select(0u, ((img * p.sh + u32(y0 + 3)) * p.sw + u32(x0 + 5)) * p.sc, k35);
    let k40 = ry4 && cx0;
    let o40 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 0)) * p.sc, k40);
    let k41 = ry4 && cx1;
    let o41 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 1)) * p.sc, k41);
    let k42 = ry4 && cx2;
    let o42 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 2)) * p.sc, k42);
    let k43 = ry4 && cx3;
    let o43 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 3)) * p.sc, k43);
    let k44 = ry4 && cx4;
    let o44 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 4)) * p.sc, k44);
    let k45 = ry4 && cx5;
    let o45 = select(0u, ((img * p.sh + u32(y0 + 4)) * p.sw + u32(x0 + 5)) * p.sc, k45);
    let k50 = ry5 && cx0;
    let o50 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 0)) * p.sc, k50);
    let k51 = ry5 && cx1;
    let o51 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 1)) * p.sc, k51);
    let k52 = ry5 && cx2;
    let o52 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 2)) * p.sc, k52);
    let k53 = ry5 && cx3;
    let o53 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 3)) * p.sc, k53);
    let k54 = ry5 && cx4;
    let o54 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 4)) * p.sc, k54);
    let k55 = ry5 && cx5;
    let o55 = select(0u, ((img * p.sh + u32(y0 + 5)) * p.sw + u32(x0 + 5)) * p.sc, k55);
    var a0_0 = vec4<f32>(0.0);
    var a0_1 = vec4<f32>(0.0);
    var a0_2 = vec4<f32>(0.0);
    var a0_3 = vec4<f32>(0.0);
    var a0_4 = vec4<f32>(0.0);
    var a0_5 = vec4<f32>(0.0);
    var a0_6 = vec4<f32>(0.0);
    var a0_7 = vec4<f32>(0.0);
    var a0_8 = vec4<f32>(0.0);
    var a0_9 = vec4<f32>(0.0);
    var a0_10 = vec4<f32>(0.0);
    var a0_11 = vec4<f32>(0.0);
    var a0_12 = vec4<f32>(0.0);
    var a0_13 = vec4<f32>(0.0);
    var a0_14 = vec4<f32>(0.0);
    var a0_15 = vec4<f32>(0.0);
    var a0_16 = vec4<f32>(0.0);
    var a0_17 = vec4<f32>(0.0);
    var a0_18 = vec4<f32>(0.0);
    var a0_19 = vec4<f32>(0.0);
    var a0_20 = vec4<f32>(0.0);
    var a0_21 = vec4<f32>(0.0);
    var a0_22 = vec4<f32>(0.0);
    var a0_23 = vec4<f32>(0.0);
    var a0_24 = vec4<f32>(0.0);
    var a0_25 = vec4<f32>(0.0);
    var a0_26 = vec4<f32>(0.0);
    var a0_27 = vec4<f32>(0.0);
    var a0_28 = vec4<f32>(0.0);
    var a0_29 = vec4<f32>(0.0);
    var a0_30 = vec4<f32>(0.0);
    var a0_31 = vec4<f32>(0.0);
    var a0_32 = vec4<f32>(0.0);
    var a0_33 = vec4<f32>(0.0);
    var a0_34 = vec4<f32>(0.0);
    var a0_35 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0);
    var a1_1 = vec4<f32>(0.0);
    var a1_2 = vec4<f32>(0.0);
    var a1_3 = vec4<f32>(0.0);
    var a1_4 = vec4<f32>(0.0);
    var a1_5 = vec4<f32>(0.0);
    var a1_6 = vec4<f32>(0.0);
    var a1_7 = vec4<f32>(0.0);
    var a1_8 = vec4<f32>(0.0);
    var a1_9 = vec4<f32>(0.0);
    var a1_10 = vec4<f32>(0.0);
    var a1_11 = vec4<f32>(0.0);
    var a1_12 = vec4<f32>(0.0);
    var a1_13 = vec4<f32>(0.0);
    var a1_14 = vec4<f32>(0.0);
    var a1_15 = vec4<f32>(0.0);
    var a1_16 = vec4<f32>(0.0);
    var a1_17 = vec4<f32>(0.0);
    var a1_18 = vec4<f32>(0.0);
    var a1_19 = vec4<f32>(0.0);
    var a1_20 = vec4<f32>(0.0);
    var a1_21 = vec4<f32>(0.0);
    var a1_22 = vec4<f32>(0.0);
    var a1_23 = vec4<f32>(0.0);
    var a1_24 = vec4<f32>(0.0);
    var a1_25 = vec4<f32>(0.0);
    var a1_26 = vec4<f32>(0.0);
    var a1_27 = vec4<f32>(0.0);
    var a1_28 = vec4<f32>(0.0);
    var a1_29 = vec4<f32>(0.0);
    var a1_30 = vec4<f32>(0.0);
    var a1_31 = vec4<f32>(0.0);
    var a1_32 = vec4<f32>(0.0);
    var a1_33 = vec4<f32>(0.0);
    var a1_34 = vec4<f32>(0.0);
    var a1_35 = vec4<f32>(0.0);
    var wrow = wid.x * p.kp * TN4;
    for (var ch = 0u; ch < p.sc; ch++) {
        let d00 = select(0.0, src[o00 + ch], k00);
        let d01 = select(0.0, src[o01 + ch], k01);
        let d02 = select(0.0, src[o02 + ch], k02);
        let d03 = select(0.0, src[o03 + ch], k03);
        let d04 = select(0.0, src[o04 + ch], k04);
        let d05 = select(0.0, src[o05 + ch], k05);
        let d10 = select(0.0, src[o10 + ch], k10);
        let d11 = select(0.0, src[o11 + ch], k11);
        let d12 = select(0.0, src[o12 + ch], k12);
        let d13 = select(0.0, src[o13 + ch], k13);
        let d14 = select(0.0, src[o14 + ch], k14);
        let d15 = select(0.0, src[o15 + ch], k15);
        let d20 = select(0.0, src[o20 + ch], k20);
        let d21 = select(0.0, src[o21 + ch], k21);
        let d22 = select(0.0, src[o22 + ch], k22);
        let d23 = select(0.0, src[o23 + ch], k23);
        let d24 = select(0.0, src[o24 + ch], k24);
        let d25 = select(0.0, src[o25 + ch], k25);
        let d30 = select(0.0, src[o30 + ch], k30);
        let d31 = select(0.0, src[o31 + ch], k31);
        let d32 = select(0.0, src[o32 + ch], k32);
        let d33 = select(0.0, src[o33 + ch], k33);
        let d34 = select(0.0, src[o34 + ch], k34);
        let d35 = select(0.0, src[o35 + ch], k35);
        let d40 = select(0.0, src[o40 + ch], k40);
        let d41 = select(0.0, src[o41 + ch], k41);
        let d42 = select(0.0, src[o42 + ch], k42);
        let d43 = select(0.0, src[o43 + ch], k43);
        let d44 = select(0.0, src[o44 + ch], k44);
        let d45 = select(0.0, src[o45 + ch], k45);
        let d50 = select(0.0, src[o50 + ch], k50);
        let d51 = select(0.0, src[o51 + ch], k51);
        let d52 = select(0.0, src[o52 + ch], k52);
        let d53 = select(0.0, src[o53 + ch], k53);
        let d54 = select(0.0, src[o54 + ch], k54);
        let d55 = select(0.0, src[o55 + ch], k55);
        // B^T d: rows combined (t), then (B^T d) B: columns combined (v).
        let t00 = fma(4.0, d00, fma(-5.0, d20, d40));
        let t10 = fma(-4.0, d10 + d20, d30 + d40);
        let t20 = fma(4.0, d10 - d20, d40 - d30);
        let t30 = fma(2.0, d30 - d10, d40 - d20);
        let t40 = fma(2.0, d10 - d30, d40 - d20);
        let t50 = fma(4.0, d10, fma(-5.0, d30, d50));
        let t01 = fma(4.0, d01, fma(-5.0, d21, d41));
        let t11 = fma(-4.0, d11 + d21, d31 + d41);
        let t21 = fma(4.0, d11 - d21, d41 - d31);
        let t31 = fma(2.0, d31 - d11, d41 - d21);
        let t41 = fma(2.0, d11 - d31, d41 - d21);
        let t51 = fma(4.0, d11, fma(-5.0, d31, d51));
        let t02 = fma(4.0, d02, fma(-5.0, d22, d42));
        let t12 = fma(-4.0, d12 + d22, d32 + d42);
        let t22 = fma(4.0, d12 - d22, d42 - d32);
        let t32 = fma(2.0, d32 - d12, d42 - d22);
        let t42 = fma(2.0, d12 - d32, d42 - d22);
        let t52 = fma(4.0, d12, fma(-5.0, d32, d52));
        let t03 = fma(4.0, d03, fma(-5.0, d23, d43));
        let t13 = fma(-4.0, d13 + d23, d33 + d43);
        let t23 = fma(4.0, d13 - d23, d43 - d33);
        let t33 = fma(2.0, d33 - d13, d43 - d23);
        let t43 = fma(2.0, d13 - d33, d43 - d23);
        let t53 = fma(4.0, d13, fma(-5.0, d33, d53));
        let t04 = fma(4.0, d04, fma(-5.0, d24, d44));
        let t14 = fma(-4.0, d14 + d24, d34 + d44);
        let t24 = fma(4.0, d14 - d24, d44 - d34);
        let t34 = fma(2.0, d34 - d14, d44 - d24);
        let t44 = fma(2.0, d14 - d34, d44 - d24);
        let t54 = fma(4.0, d14, fma(-5.0, d34, d54));
        let t05 = fma(4.0, d05, fma(-5.0, d25, d45));
        let t15 = fma(-4.0, d15 + d25, d35 + d45);
        let t25 = fma(4.0, d15 - d25, d45 - d35);
        let t35 = fma(2.0, d35 - d15, d45 - d25);
        let t45 = fma(2.0, d15 - d35, d45 - d25);
        let t55 = fma(4.0, d15, fma(-5.0, d35, d55));
        let v00 = fma(4.0, t00, fma(-5.0, t02, t04));
        let v01 = fma(-4.0, t01 + t02, t03 + t04);
        let v02 = fma(4.0, t01 - t02, t04 - t03);
        let v03 = fma(2.0, t03 - t01, t04 - t02);
        let v04 = fma(2.0, t01 - t03, t04 - t02);
        let v05 = fma(4.0, t01, fma(-5.0, t03, t05));
        let v10 = fma(4.0, t10, fma(-5.0, t12, t14));
        let v11 = fma(-4.0, t11 + t12, t13 + t14);
        let v12 = fma(4.0, t11 - t12, t14 - t13);
        let v13 = fma(2.0, t13 - t11, t14 - t12);
        let v14 = fma(2.0, t11 - t13, t14 - t12);
        let v15 = fma(4.0, t11, fma(-5.0, t13, t15));
        let v20 = fma(4.0, t20, fma(-5.0, t22, t24));
        let v21 = fma(-4.0, t21 + t22, t23 + t24);
        let v22 = fma(4.0, t21 - t22, t24 - t23);
        let v23 = fma(2.0, t23 - t21, t24 - t22);
        let v24 = fma(2.0, t21 - t23, t24 - t22);
        let v25 = fma(4.0, t21, fma(-5.0, t23, t25));
        let v30 = fma(4.0, t30, fma(-5.0, t32, t34));
        let v31 = fma(-4.0, t31 + t32, t33 + t34);
        let v32 = fma(4.0, t31 - t32, t34 - t33);
        let v33 = fma(2.0, t33 - t31, t34 - t32);
        let v34 = fma(2.0, t31 - t33, t34 - t32);
        let v35 = fma(4.0, t31, fma(-5.0, t33, t35));
        let v40 = fma(4.0, t40, fma(-5.0, t42, t44));
        let v41 = fma(-4.0, t41 + t42, t43 + t44);
        let v42 = fma(4.0, t41 - t42, t44 - t43);
        let v43 = fma(2.0, t43 - t41, t44 - t42);
        let v44 = fma(2.0, t41 - t43, t44 - t42);
        let v45 = fma(4.0, t41, fma(-5.0, t43, t45));
        let v50 = fma(4.0, t50, fma(-5.0, t52, t54));
        let v51 = fma(-4.0, t51 + t52, t53 + t54);
        let v52 = fma(4.0, t51 - t52, t54 - t53);
        let v53 = fma(2.0, t53 - t51, t54 - t52);
        let v54 = fma(2.0, t51 - t53, t54 - t52);
        let v55 = fma(4.0, t51, fma(-5.0, t53, t55));
        a0_0 = fma(vec4<f32>(v00), wts[wrow + 0u * TN4 + 0u], a0_0);
        a0_1 = fma(vec4<f32>(v01), wts[wrow + 1u * TN4 + 0u], a0_1);
        a0_2 = fma(vec4<f32>(v02), wts[wrow + 2u * TN4 + 0u], a0_2);
        a0_3 = fma(vec4<f32>(v03), wts[wrow + 3u * TN4 + 0u], a0_3);
        a0_4 = fma(vec4<f32>(v04), wts[wrow + 4u * TN4 + 0u], a0_4);
        a0_5 = fma(vec4<f32>(v05), wts[wrow + 5u * TN4 + 0u], a0_5);
        a0_6 = fma(vec4<f32>(v10), wts[wrow + 6u * TN4 + 0u], a0_6);
        a0_7 = fma(vec4<f32>(v11), wts[wrow + 7u * TN4 + 0u], a0_7);
        a0_8 = fma(vec4<f32>(v12), wts[wrow + 8u * TN4 + 0u], a0_8);
        a0_9 = fma(vec4<f32>(v13), wts[wrow + 9u * TN4 + 0u], a0_9);
        a0_10 = fma(vec4<f32>(v14), wts[wrow + 10u * TN4 + 0u], a0_10);
        a0_11 = fma(vec4<f32>(v15), wts[wrow + 11u * TN4 + 0u], a0_11);
        a0_12 = fma(vec4<f32>(v20), wts[wrow + 12u * TN4 + 0u], a0_12);
        a0_13 = fma(vec4<f32>(v21), wts[wrow + 13u * TN4 + 0u], a0_13);
        a0_14 = fma(vec4<f32>(v22), wts[wrow + 14u * TN4 + 0u], a0_14);
        a0_15 = fma(vec4<f32>(v23), wts[wrow + 15u * TN4 + 0u], a0_15);
        a0_16 = fma(vec4<f32>(v24), wts[wrow + 16u * TN4 + 0u], a0_16);
        a0_17 = fma(vec4<f32>(v25), wts[wrow + 17u * TN4 + 0u], a0_17);
        a0_18 = fma(vec4<f32>(v30), wts[wrow + 18u * TN4 + 0u], a0_18);
        a0_19 = fma(vec4<f32>(v31), wts[wrow + 19u * TN4 + 0u], a0_19);
        a0_20 = fma(vec4<f32>(v32), wts[wrow + 20u * TN4 + 0u], a0_20);
        a0_21 = fma(vec4<f32>(v33), wts[wrow + 21u * TN4 + 0u], a0_21);
        a0_22 = fma(vec4<f32>(v34), wts[wrow + 22u * TN4 + 0u], a0_22);
        a0_23 = fma(vec4<f32>(v35), wts[wrow + 23u * TN4 + 0u], a0_23);
        a0_24 = fma(vec4<f32>(v40), wts[wrow + 24u * TN4 + 0u], a0_24);
        a0_25 = fma(vec4<f32>(v41), wts[wrow + 25u * TN4 + 0u], a0_25);
        a0_26 = fma(vec4<f32>(v42), wts[wrow + 26u * TN4 + 0u], a0_26);
        a0_27 = fma(vec4<f32>(v43), wts[wrow + 27u * TN4 + 0u], a0_27);
        a0_28 = fma(vec4<f32>(v44), wts[wrow + 28u * TN4 + 0u], a0_28);
        a0_29 = fma(vec4<f32>(v45), wts[wrow + 29u * TN4 + 0u], a0_29);
        a0_30 = fma(vec4<f32>(v50), wts[wrow + 30u * TN4 + 0u], a0_30);
        a0_31 = fma(vec4<f32>(v51), wts[wrow + 31u * TN4 + 0u], a0_31);
        a0_32 = fma(vec4<f32>(v52), wts[wrow + 32u * TN4 + 0u], a0_32);
        a0_33 = fma(vec4<f32>(v53), wts[wrow + 33u * TN4 + 0u], a0_33);
        a0_34 = fma(vec4<f32>(v54), wts[wrow + 34u * TN4 + 0u], a0_34);
        a0_35 = fma(vec4<f32>(v55), wts[wrow + 35u * TN4 + 0u], a0_35);
        if (TN4 >= 2u) {
            a1_0 = fma(vec4<f32>(v00), wts[wrow + 0u * TN4 + 1u], a1_0);
            a1_1 = fma(vec4<f32>(v01), wts[wrow + 1u * TN4 + 1u], a1_1);
            a1_2 = fma(vec4<f32>(v02), wts[wrow + 2u * TN4 + 1u], a1_2);
            a1_3 = fma(vec4<f32>(v03), wts[wrow + 3u * TN4 + 1u], a1_3);
            a1_4 = fma(vec4<f32>(v04), wts[wrow + 4u * TN4 + 1u], a1_4);
            a1_5 = fma(vec4<f32>(v05), wts[wrow + 5u * TN4 + 1u], a1_5);
            a1_6 = fma(vec4<f32>(v10), wts[wrow + 6u * TN4 + 1u], a1_6);
            a1_7 = fma(vec4<f32>(v11), wts[wrow + 7u * TN4 + 1u], a1_7);
            a1_8 = fma(vec4<f32>(v12), wts[wrow + 8u * TN4 + 1u], a1_8);
            a1_9 = fma(vec4<f32>(v13), wts[wrow + 9u * TN4 + 1u], a1_9);
            a1_10 = fma(vec4<f32>(v14), wts[wrow + 10u * TN4 + 1u], a1_10);
            a1_11 = fma(vec4<f32>(v15), wts[wrow + 11u * TN4 + 1u], a1_11);
            a1_12 = fma(vec4<f32>(v20), wts[wrow + 12u * TN4 + 1u], a1_12);
            a1_13 = fma(vec4<f32>(v21), wts[wrow + 13u * TN4 + 1u], a1_13);
            a1_14 = fma(vec4<f32>(v22), wts[wrow + 14u * TN4 + 1u], a1_14);
            a1_15 = fma(vec4<f32>(v23), wts[wrow + 15u * TN4 + 1u], a1_15);
            a1_16 = fma(vec4<f32>(v24), wts[wrow + 16u * TN4 + 1u], a1_16);
            a1_17 = fma(vec4<f32>(v25), wts[wrow + 17u * TN4 + 1u], a1_17);
            a1_18 = fma(vec4<f32>(v30), wts[wrow + 18u * TN4 + 1u], a1_18);
            a1_19 = fma(vec4<f32>(v31), wts[wrow + 19u * TN4 + 1u], a1_19);
            a1_20 = fma(vec4<f32>(v32), wts[wrow + 20u * TN4 + 1u], a1_20);
            a1_21 = fma(vec4<f32>(v33), wts[wrow + 21u * TN4 + 1u], a1_21);
            a1_22 = fma(vec4<f32>(v34), wts[wrow + 22u * TN4 + 1u], a1_22);
            a1_23 = fma(vec4<f32>(v35), wts[wrow + 23u * TN4 + 1u], a1_23);
            a1_24 = fma(vec4<f32>(v40), wts[wrow + 24u * TN4 + 1u], a1_24);
            a1_25 = fma(vec4<f32>(v41), wts[wrow + 25u * TN4 + 1u], a1_25);
            a1_26 = fma(vec4<f32>(v42), wts[wrow + 26u * TN4 + 1u], a1_26);
            a1_27 = fma(vec4<f32>(v43), wts[wrow + 27u * TN4 + 1u], a1_27);
            a1_28 = fma(vec4<f32>(v44), wts[wrow + 28u * TN4 + 1u], a1_28);
            a1_29 = fma(vec4<f32>(v45), wts[wrow + 29u * TN4 + 1u], a1_29);
            a1_30 = fma(vec4<f32>(v50), wts[wrow + 30u * TN4 + 1u], a1_30);
            a1_31 = fma(vec4<f32>(v51), wts[wrow + 31u * TN4 + 1u], a1_31);
            a1_32 = fma(vec4<f32>(v52), wts[wrow + 32u * TN4 + 1u], a1_32);
            a1_33 = fma(vec4<f32>(v53), wts[wrow + 33u * TN4 + 1u], a1_33);
            a1_34 = fma(vec4<f32>(v54), wts[wrow + 34u * TN4 + 1u], a1_34);
            a1_35 = fma(vec4<f32>(v55), wts[wrow + 35u * TN4 + 1u], a1_35);
        }
        wrow += 36u * TN4;
    }
    let block = p.b0 + wid.x;
    if (M == 4u) {
        let h0_0 = a0_0 + (a0_6 + a0_12) + (a0_18 + a0_24);
        let h1_0 = fma(vec4<f32>(2.0), (a0_18 - a0_24), (a0_6 - a0_12));
        let h2_0 = fma(vec4<f32>(4.0), (a0_18 + a0_24), (a0_6 + a0_12));
        let h3_0 = fma(vec4<f32>(8.0), (a0_18 - a0_24), (a0_6 - a0_12)) + a0_30;
        let h0_1 = a0_1 + (a0_7 + a0_13) + (a0_19 + a0_25);
        let h1_1 = fma(vec4<f32>(2.0), (a0_19 - a0_25), (a0_7 - a0_13));
        let h2_1 = fma(vec4<f32>(4.0), (a0_19 + a0_25), (a0_7 + a0_13));
        let h3_1 = fma(vec4<f32>(8.0), (a0_19 - a0_25), (a0_7 - a0_13)) + a0_31;
        let h0_2 = a0_2 + (a0_8 + a0_14) + (a0_20 + a0_26);
        let h1_2 = fma(vec4<f32>(2.0), (a0_20 - a0_26), (a0_8 - a0_14));
        let h2_2 = fma(vec4<f32>(4.0), (a0_20 + a0_26), (a0_8 + a0_14));
        let h3_2 = fma(vec4<f32>(8.0), (a0_20 - a0_26), (a0_8 - a0_14)) + a0_32;
        let h0_3 = a0_3 + (a0_9 + a0_15) + (a0_21 + a0_27);
        let h1_3 = fma(vec4<f32>(2.0), (a0_21 - a0_27), (a0_9 - a0_15));
        let h2_3 = fma(vec4<f32>(4.0), (a0_21 + a0_27), (a0_9 + a0_15));
        let h3_3 = fma(vec4<f32>(8.0), (a0_21 - a0_27), (a0_9 - a0_15)) + a0_33;
        let h0_4 = a0_4 + (a0_10 + a0_16) + (a0_22 + a0_28);
        let h1_4 = fma(vec4<f32>(2.0), (a0_22 - a0_28), (a0_10 - a0_16));
        let h2_4 = fma(vec4<f32>(4.0), (a0_22 + a0_28), (a0_10 + a0_16));
        let h3_4 = fma(vec4<f32>(8.0), (a0_22 - a0_28), (a0_10 - a0_16)) + a0_34;
        let h0_5 = a0_5 + (a0_11 + a0_17) + (a0_23 + a0_29);
        let h1_5 = fma(vec4<f32>(2.0), (a0_23 - a0_29), (a0_11 - a0_17));
        let h2_5 = fma(vec4<f32>(4.0), (a0_23 + a0_29), (a0_11 + a0_17));
        let h3_5 = fma(vec4<f32>(8.0), (a0_23 - a0_29), (a0_11 - a0_17)) + a0_35;
        store_tile(img, ty * 4u + 0u, tx * 4u + 0u, live, block, 0u, h0_0 + (h0_1 + h0_2) + (h0_3 + h0_4));
        store_tile(img, ty * 4u + 0u, tx * 4u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h0_3 - h0_4), (h0_1 - h0_2)));
        store_tile(img, ty * 4u + 0u, tx * 4u + 2u, live, block, 0u, fma(vec4<f32>(4.0), (h0_3 + h0_4), (h0_1 + h0_2)));
        store_tile(img, ty * 4u + 0u, tx * 4u + 3u, live, block, 0u, fma(vec4<f32>(8.0), (h0_3 - h0_4), (h0_1 - h0_2)) + h0_5);
        store_tile(img, ty * 4u + 1u, tx * 4u + 0u, live, block, 0u, h1_0 + (h1_1 + h1_2) + (h1_3 + h1_4));
        store_tile(img, ty * 4u + 1u, tx * 4u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h1_3 - h1_4), (h1_1 - h1_2)));
        store_tile(img, ty * 4u + 1u, tx * 4u + 2u, live, block, 0u, fma(vec4<f32>(4.0), (h1_3 + h1_4), (h1_1 + h1_2)));
        store_tile(img, ty * 4u + 1u, tx * 4u + 3u, live, block, 0u, fma(vec4<f32>(8.0), (h1_3 - h1_4), (h1_1 - h1_2)) + h1_5);
        store_tile(img, ty * 4u + 2u, tx * 4u + 0u, live, block, 0u, h2_0 + (h2_1 + h2_2) + (h2_3 + h2_4));
        store_tile(img, ty * 4u + 2u, tx * 4u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h2_3 - h2_4), (h2_1 - h2_2)));
        store_tile(img, ty * 4u + 2u, tx * 4u + 2u, live, block, 0u, fma(vec4<f32>(4.0), (h2_3 + h2_4), (h2_1 + h2_2)));
        store_tile(img, ty * 4u + 2u, tx * 4u + 3u, live, block, 0u, fma(vec4<f32>(8.0), (h2_3 - h2_4), (h2_1 - h2_2)) + h2_5);
        store_tile(img, ty * 4u + 3u, tx * 4u + 0u, live, block, 0u, h3_0 + (h3_1 + h3_2) + (h3_3 + h3_4));
        store_tile(img, ty * 4u + 3u, tx * 4u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h3_3 - h3_4), (h3_1 - h3_2)));
        store_tile(img, ty * 4u + 3u, tx * 4u + 2u, live, block, 0u, fma(vec4<f32>(4.0), (h3_3 + h3_4), (h3_1 + h3_2)));
        store_tile(img, ty * 4u + 3u, tx * 4u + 3u, live, block, 0u, fma(vec4<f32>(8.0), (h3_3 - h3_4), (h3_1 - h3_2)) + h3_5);
    } else {
        let h0_0 = a0_0 + (a0_6 + a0_12) + (a0_18 + a0_24);
        let h1_0 = fma(vec4<f32>(2.0), (a0_18 - a0_24), (a0_6 - a0_12)) + a0_30;
        let h0_1 = a0_1 + (a0_7 + a0_13) + (a0_19 + a0_25);
        let h1_1 = fma(vec4<f32>(2.0), (a0_19 - a0_25), (a0_7 - a0_13)) + a0_31;
        let h0_2 = a0_2 + (a0_8 + a0_14) + (a0_20 + a0_26);
        let h1_2 = fma(vec4<f32>(2.0), (a0_20 - a0_26), (a0_8 - a0_14)) + a0_32;
        let h0_3 = a0_3 + (a0_9 + a0_15) + (a0_21 + a0_27);
        let h1_3 = fma(vec4<f32>(2.0), (a0_21 - a0_27), (a0_9 - a0_15)) + a0_33;
        let h0_4 = a0_4 + (a0_10 + a0_16) + (a0_22 + a0_28);
        let h1_4 = fma(vec4<f32>(2.0), (a0_22 - a0_28), (a0_10 - a0_16)) + a0_34;
        let h0_5 = a0_5 + (a0_11 + a0_17) + (a0_23 + a0_29);
        let h1_5 = fma(vec4<f32>(2.0), (a0_23 - a0_29), (a0_11 - a0_17)) + a0_35;
        store_tile(img, ty * 2u + 0u, tx * 2u + 0u, live, block, 0u, h0_0 + (h0_1 + h0_2) + (h0_3 + h0_4));
        store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h0_3 - h0_4), (h0_1 - h0_2)) + h0_5);
        store_tile(img, ty * 2u + 1u, tx * 2u + 0u, live, block, 0u, h1_0 + (h1_1 + h1_2) + (h1_3 + h1_4));
        store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 0u, fma(vec4<f32>(2.0), (h1_3 - h1_4), (h1_1 - h1_2)) + h1_5);
    }
    if (TN4 >= 2u) {
        if (M == 4u) {
            let h0_0 = a1_0 + (a1_6 + a1_12) + (a1_18 + a1_24);
            let h1_0 = fma(vec4<f32>(2.0), (a1_18 - a1_24), (a1_6 - a1_12));
            let h2_0 = fma(vec4<f32>(4.0), (a1_18 + a1_24), (a1_6 + a1_12));
            let h3_0 = fma(vec4<f32>(8.0), (a1_18 - a1_24), (a1_6 - a1_12)) + a1_30;
            let h0_1 = a1_1 + (a1_7 + a1_13) + (a1_19 + a1_25);
            let h1_1 = fma(vec4<f32>(2.0), (a1_19 - a1_25), (a1_7 - a1_13));
            let h2_1 = fma(vec4<f32>(4.0), (a1_19 + a1_25), (a1_7 + a1_13));
            let h3_1 = fma(vec4<f32>(8.0), (a1_19 - a1_25), (a1_7 - a1_13)) + a1_31;
            let h0_2 = a1_2 + (a1_8 + a1_14) + (a1_20 + a1_26);
            let h1_2 = fma(vec4<f32>(2.0), (a1_20 - a1_26), (a1_8 - a1_14));
            let h2_2 = fma(vec4<f32>(4.0), (a1_20 + a1_26), (a1_8 + a1_14));
            let h3_2 = fma(vec4<f32>(8.0), (a1_20 - a1_26), (a1_8 - a1_14)) + a1_32;
            let h0_3 = a1_3 + (a1_9 + a1_15) + (a1_21 + a1_27);
            let h1_3 = fma(vec4<f32>(2.0), (a1_21 - a1_27), (a1_9 - a1_15));
            let h2_3 = fma(vec4<f32>(4.0), (a1_21 + a1_27), (a1_9 + a1_15));
            let h3_3 = fma(vec4<f32>(8.0), (a1_21 - a1_27), (a1_9 - a1_15)) + a1_33;
            let h0_4 = a1_4 + (a1_10 + a1_16) + (a1_22 + a1_28);
            let h1_4 = fma(vec4<f32>(2.0), (a1_22 - a1_28), (a1_10 - a1_16));
            let h2_4 = fma(vec4<f32>(4.0), (a1_22 + a1_28), (a1_10 + a1_16));
            let h3_4 = fma(vec4<f32>(8.0), (a1_22 - a1_28), (a1_10 - a1_16)) + a1_34;
            let h0_5 = a1_5 + (a1_11 + a1_17) + (a1_23 + a1_29);
            let h1_5 = fma(vec4<f32>(2.0), (a1_23 - a1_29), (a1_11 - a1_17));
            let h2_5 = fma(vec4<f32>(4.0), (a1_23 + a1_29), (a1_11 + a1_17));
            let h3_5 = fma(vec4<f32>(8.0), (a1_23 - a1_29), (a1_11 - a1_17)) + a1_35;
            store_tile(img, ty * 4u + 0u, tx * 4u + 0u, live, block, 1u, h0_0 + (h0_1 + h0_2) + (h0_3 + h0_4));
            store_tile(img, ty * 4u + 0u, tx * 4u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h0_3 - h0_4), (h0_1 - h0_2)));
            store_tile(img, ty * 4u + 0u, tx * 4u + 2u, live, block, 1u, fma(vec4<f32>(4.0), (h0_3 + h0_4), (h0_1 + h0_2)));
            store_tile(img, ty * 4u + 0u, tx * 4u + 3u, live, block, 1u, fma(vec4<f32>(8.0), (h0_3 - h0_4), (h0_1 - h0_2)) + h0_5);
            store_tile(img, ty * 4u + 1u, tx * 4u + 0u, live, block, 1u, h1_0 + (h1_1 + h1_2) + (h1_3 + h1_4));
            store_tile(img, ty * 4u + 1u, tx * 4u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h1_3 - h1_4), (h1_1 - h1_2)));
            store_tile(img, ty * 4u + 1u, tx * 4u + 2u, live, block, 1u, fma(vec4<f32>(4.0), (h1_3 + h1_4), (h1_1 + h1_2)));
            store_tile(img, ty * 4u + 1u, tx * 4u + 3u, live, block, 1u, fma(vec4<f32>(8.0), (h1_3 - h1_4), (h1_1 - h1_2)) + h1_5);
            store_tile(img, ty * 4u + 2u, tx * 4u + 0u, live, block, 1u, h2_0 + (h2_1 + h2_2) + (h2_3 + h2_4));
            store_tile(img, ty * 4u + 2u, tx * 4u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h2_3 - h2_4), (h2_1 - h2_2)));
            store_tile(img, ty * 4u + 2u, tx * 4u + 2u, live, block, 1u, fma(vec4<f32>(4.0), (h2_3 + h2_4), (h2_1 + h2_2)));
            store_tile(img, ty * 4u + 2u, tx * 4u + 3u, live, block, 1u, fma(vec4<f32>(8.0), (h2_3 - h2_4), (h2_1 - h2_2)) + h2_5);
            store_tile(img, ty * 4u + 3u, tx * 4u + 0u, live, block, 1u, h3_0 + (h3_1 + h3_2) + (h3_3 + h3_4));
            store_tile(img, ty * 4u + 3u, tx * 4u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h3_3 - h3_4), (h3_1 - h3_2)));
            store_tile(img, ty * 4u + 3u, tx * 4u + 2u, live, block, 1u, fma(vec4<f32>(4.0), (h3_3 + h3_4), (h3_1 + h3_2)));
            store_tile(img, ty * 4u + 3u, tx * 4u + 3u, live, block, 1u, fma(vec4<f32>(8.0), (h3_3 - h3_4), (h3_1 - h3_2)) + h3_5);
        } else {
            let h0_0 = a1_0 + (a1_6 + a1_12) + (a1_18 + a1_24);
            let h1_0 = fma(vec4<f32>(2.0), (a1_18 - a1_24), (a1_6 - a1_12)) + a1_30;
            let h0_1 = a1_1 + (a1_7 + a1_13) + (a1_19 + a1_25);
            let h1_1 = fma(vec4<f32>(2.0), (a1_19 - a1_25), (a1_7 - a1_13)) + a1_31;
            let h0_2 = a1_2 + (a1_8 + a1_14) + (a1_20 + a1_26);
            let h1_2 = fma(vec4<f32>(2.0), (a1_20 - a1_26), (a1_8 - a1_14)) + a1_32;
            let h0_3 = a1_3 + (a1_9 + a1_15) + (a1_21 + a1_27);
            let h1_3 = fma(vec4<f32>(2.0), (a1_21 - a1_27), (a1_9 - a1_15)) + a1_33;
            let h0_4 = a1_4 + (a1_10 + a1_16) + (a1_22 + a1_28);
            let h1_4 = fma(vec4<f32>(2.0), (a1_22 - a1_28), (a1_10 - a1_16)) + a1_34;
            let h0_5 = a1_5 + (a1_11 + a1_17) + (a1_23 + a1_29);
            let h1_5 = fma(vec4<f32>(2.0), (a1_23 - a1_29), (a1_11 - a1_17)) + a1_35;
            store_tile(img, ty * 2u + 0u, tx * 2u + 0u, live, block, 1u, h0_0 + (h0_1 + h0_2) + (h0_3 + h0_4));
            store_tile(img, ty * 2u + 0u, tx * 2u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h0_3 - h0_4), (h0_1 - h0_2)) + h0_5);
            store_tile(img, ty * 2u + 1u, tx * 2u + 0u, live, block, 1u, h1_0 + (h1_1 + h1_2) + (h1_3 + h1_4));
            store_tile(img, ty * 2u + 1u, tx * 2u + 1u, live, block, 1u, fma(vec4<f32>(2.0), (h1_3 - h1_4), (h1_1 - h1_2)) + h1_5);
        }
    }
}
