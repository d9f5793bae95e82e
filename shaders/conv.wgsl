// Convolution as an implicit GEMM over channels-last (NHWC) activations and HWIO weights.
//
// One kernel, three products, chosen by the override MODE:
//   0 forward      C[m = (img, oy, ox), n = co] = sum_k X(img, oy*s+ky-pt, ox*s+kx-pl, ci) W[k = (ky, kx, ci), co]
//                  then + bias, then the fused activation ACT.
//   1 grad input   C[m = (img, iy, ix), n = ci] = sum_k dY(img, oy, ox, co) W[ky, kx, ci, co],
//                  k = (ky, kx, co), (oy, ox) = ((iy+pt-ky)/s, (ix+pl-kx)/s) where that divides exactly.
//   2 grad weight  C[m = (ky, kx, ci), n = co] = sum_k X(img, oy*s+ky-pt, ...) dY[k = (img, oy, ox), co],
//                  split over K: workgroup z writes its partial sum to slice z, a reduction adds them.
// Channels-last makes the reduction axis k = (ky, kx, ci) contiguous in memory for the inner
// channel loop, and weights stored [kh, kw, in, out] make W a plain row-major K x N matrix.
// A dense layer is the 1x1 convolution of a 1x1 image, a conv1d the convolution of a 1-row image.

override MODE: u32 = 0u;
override ACT: u32 = 0u;        // 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh
override TM: u32 = 4u;         // rows of C per thread
override TN: u32 = 4u;         // columns of C per thread
override THREADS_N: u32 = 4u;  // threads along N; 64 / THREADS_N along M

const WG: u32 = 64u;
const BK: u32 = 16u;
const MAX_BM: u32 = 256u;
const MAX_BN: u32 = 64u;

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    oh: u32, ow: u32, cout: u32, kh: u32,
    kw: u32, stride: u32, pad_t: u32, pad_l: u32,
    gm: u32, gn: u32, gk: u32, k_chunk: u32,
    has_bias: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a_src: array<f32>;
@group(0) @binding(3) var<storage, read> b_src: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> tile_a: array<f32, 4096>; // BK x BM, k-major
var<workgroup> tile_b: array<f32, 1024>; // BK x BN, k-major

fn load_a(m: u32, k: u32) -> f32 {
    if (m >= p.gm || k >= p.gk) { return 0.0; }
    if (MODE == 0u) {
        let plane = p.oh * p.ow;
        let img = m / plane;
        let r = m - img * plane;
        let oy = r / p.ow;
        let ox = r - oy * p.ow;
        let ci = k % p.cin;
        let t = k / p.cin;
        let kx = t % p.kw;
        let ky = t / p.kw;
        let iy = i32(oy * p.stride + ky) - i32(p.pad_t);
        let ix = i32(ox * p.stride + kx) - i32(p.pad_l);
        if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) { return 0.0; }
        return a_src[((img * p.h + u32(iy)) * p.w + u32(ix)) * p.cin + ci];
    } else if (MODE == 1u) {
        let plane = p.h * p.w;
        let img = m / plane;
        let r = m - img * plane;
        let iy = r / p.w;
        let ix = r - iy * p.w;
        let co = k % p.cout;
        let t = k / p.cout;
        let kx = t % p.kw;
        let ky = t / p.kw;
        let ty = i32(iy + p.pad_t) - i32(ky);
        let tx = i32(ix + p.pad_l) - i32(kx);
        if (ty < 0 || tx < 0) { return 0.0; }
        let s = p.stride;
        if (u32(ty) % s != 0u || u32(tx) % s != 0u) { return 0.0; }
        let oy = u32(ty) / s;
        let ox = u32(tx) / s;
        if (oy >= p.oh || ox >= p.ow) { return 0.0; }
        return a_src[((img * p.oh + oy) * p.ow + ox) * p.cout + co];
    } else {
        let ci = m % p.cin;
        let t = m / p.cin;
        let kx = t % p.kw;
        let ky = t / p.kw;
        let plane = p.oh * p.ow;
        let img = k / plane;
        let r = k - img * plane;
        let oy = r / p.ow;
        let ox = r - oy * p.ow;
        let iy = i32(oy * p.stride + ky) - i32(p.pad_t);
        let ix = i32(ox * p.stride + kx) - i32(p.pad_l);
        if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) { return 0.0; }
        return a_src[((img * p.h + u32(iy)) * p.w + u32(ix)) * p.cin + ci];
    }
}

fn load_b(k: u32, n: u32, k_end: u32) -> f32 {
    if (k >= k_end || n >= p.gn) { return 0.0; }
    if (MODE == 0u) {
        return b_src[k * p.cout + n];
    } else if (MODE == 1u) {
        let co = k % p.cout;
        let t = k / p.cout;
        return b_src[(t * p.cin + n) * p.cout + co];
    } else {
        return b_src[k * p.cout + n];
    }
}

fn activate(x: f32) -> f32 {
    if (ACT == 1u) { return select(0.5 * x, x, x > 0.0); }
    if (ACT == 2u) { return max(x, 0.0); }
    if (ACT == 3u) { return 1.0 / (1.0 + exp(-x)); }
    if (ACT == 4u) { return tanh(x); }
    return x;
}

@compute @workgroup_size(64)
fn conv_gemm(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let threads_m = WG / THREADS_N;
    let bm = threads_m * TM;
    let bn = THREADS_N * TN;
    var m_tile = wid.y;
    var k_begin = 0u;
    var k_end = p.gk;
    if (MODE == 2u) {
        k_begin = wid.z * p.k_chunk;
        k_end = min(k_begin + p.k_chunk, p.gk);
    } else {
        m_tile = wid.y + wid.z * nwg.y;
    }
    let m0 = m_tile * bm;
    let n0 = wid.x * bn;
    let tn_idx = lid % THREADS_N;
    let tm_idx = lid / THREADS_N;

    var acc: array<f32, 32>;
    for (var i = 0u; i < 32u; i++) { acc[i] = 0.0; }

    for (var kb = k_begin; kb < k_end; kb += BK) {
        for (var e = lid; e < bm * BK; e += WG) {
            let mm = e % bm;
            let kk = e / bm;
            let k = kb + kk;
            var v = 0.0;
            if (k < k_end) { v = load_a(m0 + mm, k); }
            tile_a[kk * bm + mm] = v;
        }
        for (var e = lid; e < bn * BK; e += WG) {
            let nn = e % bn;
            let kk = e / bn;
            tile_b[kk * bn + nn] = load_b(kb + kk, n0 + nn, k_end);
        }
        workgroupBarrier();
        // Two-level summation: each K block is summed on its own, then added to the total.
        // This keeps f32 rounding error near (BK + K / BK) ulps instead of K, which matters
        // for the weight gradient's long reductions and for values near activation kinks.
        var blk: array<f32, 32>;
        for (var i = 0u; i < TM * TN; i++) { blk[i] = 0.0; }
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, 8>;
            var bv: array<f32, 8>;
            for (var i = 0u; i < TM; i++) { av[i] = tile_a[kk * bm + tm_idx + i * threads_m]; }
            for (var j = 0u; j < TN; j++) { bv[j] = tile_b[kk * bn + tn_idx + j * THREADS_N]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    blk[i * TN + j] = fma(av[i], bv[j], blk[i * TN + j]);
                }
            }
        }
        for (var i = 0u; i < TM * TN; i++) { acc[i] += blk[i]; }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + tm_idx + i * threads_m;
        if (m >= p.gm) { continue; }
        for (var j = 0u; j < TN; j++) {
            let n = n0 + tn_idx + j * THREADS_N;
            if (n >= p.gn) { continue; }
            var v = acc[i * TN + j];
            if (MODE == 0u) {
                if (p.has_bias != 0u) { v += bias[n]; }
                out[m * p.gn + n] = activate(v);
            } else if (MODE == 1u) {
                out[m * p.gn + n] = v;
            } else {
                out[(wid.z * p.gm + m) * p.gn + n] = v;
            }
        }
    }
}
