alias elem = f32; // storage type of activations and weights; f16 in the scoring variant

// Convolution as an implicit GEMM over channels-last (NHWC) activations and HWIO weights.
//
// One kernel, three products, chosen by the override MODE:
//   0 forward      C[m = (img, oy, ox), n = co] = sum_k X(img, oy*s+ky-pt, ox*s+kx-pl, ci) W[k = (ky, kx, ci), co]
//                  then + bias, then the fused activation ACT, then (scoring only) an
//                  evaluation-mode batch norm as a per-channel affine map.
//   1 grad input   C[m = (img, iy, ix), n = ci] = sum_k dY(img, oy, ox, co) W[ky, kx, ci, co],
//                  k = (ky, kx, co), (oy, ox) = ((iy+pt-ky)/s, (ix+pl-kx)/s) where that divides exactly.
//   2 grad weight  C[m = (ky, kx, ci), n = co] = sum_k X(img, oy*s+ky-pt, ...) dY[k = (img, oy, ox), co],
//                  split over K: workgroup z writes its partial sum to slice z, a reduction adds them.
// Channels-last makes the reduction axis k = (ky, kx, ci) contiguous in memory for the inner
// channel loop, and weights stored [kh, kw, in, out] make W a plain row-major K x N matrix.
// A dense layer is the 1x1 convolution of a 1x1 image, a conv1d the convolution of a 1-row image.
//
// Tiles: each workgroup computes BM x BN of C, staging BK-deep slices of A and B in workgroup
// memory; each thread accumulates TM x TN outputs in registers. Index arithmetic avoids
// divisions in the loops (they are slow on CPU drivers such as lavapipe, which scalarise them):
// each thread decomposes its rows once, and walks k with counters that carry like an odometer.
//
// Storage is `elem` (f32, or f16 for scoring). The tiles and each K block's products and sums
// are `elem` too (f16 arithmetic runs at twice the f32 rate on many GPUs); every block's sum
// is then added to an f32 accumulator, so the long reduction over K stays f32.

override MODE: u32 = 0u;
override ACT: u32 = 0u;        // 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh
override TM: u32 = 4u;         // rows of C per thread
override TN: u32 = 4u;         // columns of C per thread
override THREADS_N: u32 = 4u;  // threads along N; WG / THREADS_N along M
override WG: u32 = 64u;        // threads per workgroup (64, 128 or 256)

const BK: u32 = 16u;

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    oh: u32, ow: u32, cout: u32, kh: u32,
    kw: u32, stride: u32, pad_t: u32, pad_l: u32,
    gm: u32, gn: u32, gk: u32, k_chunk: u32,
    has_bias: u32, stride_shift: u32, has_bn: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> a_src: array<elem>;
@group(0) @binding(3) var<storage, read> b_src: array<elem>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// Folded batch norm [scale (gn); shift (gn)], read when has_bn (forward only).
@group(0) @binding(5) var<storage, read> bn: array<f32>;

var<workgroup> tile_a: array<elem, 2048>; // BK x BM (BM <= 128), k-major
var<workgroup> tile_b: array<elem, 1024>; // BK x BN (BN <= 64), k-major

fn activate(x: f32) -> f32 {
    if (ACT == 1u) { return select(0.5 * x, x, x > 0.0); }
    if (ACT == 2u) { return max(x, 0.0); }
    if (ACT == 3u) { return 1.0 / (1.0 + exp(-x)); }
    if (ACT == 4u) { return tanh(x); }
    return x;
}

// The k axis as three counters (outer, middle, inner) with the inner one fastest:
// MODE 0: (ky, kx, ci); MODE 1: (ky, kx, co); MODE 2: (img, oy, ox).
struct Odometer { o: u32, m: u32, i: u32 }

fn odometer_at(k: u32) -> Odometer {
    var mid = p.kw;
    var inner = p.cin;
    if (MODE == 1u) { inner = p.cout; }
    if (MODE == 2u) { mid = p.oh; inner = p.ow; }
    let i = k % inner;
    let t = k / inner;
    return Odometer(t / mid, t % mid, i);
}

fn odometer_step(d: Odometer, by: u32) -> Odometer {
    var mid = p.kw;
    var inner = p.cin;
    if (MODE == 1u) { inner = p.cout; }
    if (MODE == 2u) { mid = p.oh; inner = p.ow; }
    var r = d;
    r.i += by;
    while (r.i >= inner) {
        r.i -= inner;
        r.m += 1u;
        if (r.m == mid) { r.m = 0u; r.o += 1u; }
    }
    return r;
}

// One element of the implicit A matrix: row data (r0, r1, r2) decomposed once per thread (see
// the kernels), column k given by its odometer. Zero outside the image (the 'same' padding)
// and, for the input gradient, where the stride does not divide the offset.
fn gather_a(r0: i32, r1: i32, r2: i32, d: Odometer) -> elem {
    if (MODE == 0u) {
        let iy = r1 + i32(d.o);
        let ix = r2 + i32(d.m);
        if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
            return a_src[((u32(r0 + iy)) * p.w + u32(ix)) * p.cin + d.i];
        }
    } else if (MODE == 1u) {
        let ty = r1 - i32(d.o);
        let tx = r2 - i32(d.m);
        let smask = p.stride - 1u;
        if (ty >= 0 && tx >= 0 && (u32(ty) & smask) == 0u && (u32(tx) & smask) == 0u) {
            let oy = u32(ty) >> p.stride_shift;
            let ox = u32(tx) >> p.stride_shift;
            if (oy < p.oh && ox < p.ow) {
                return a_src[((u32(r0) + oy) * p.ow + ox) * p.cout + d.i];
            }
        }
    } else {
        let iy = i32(d.m * p.stride) + r0 - i32(p.pad_t);
        let ix = i32(d.i * p.stride) + r1 - i32(p.pad_l);
        if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
            return a_src[((d.o * p.h + u32(iy)) * p.w + u32(ix)) * p.cin + u32(r2)];
        }
    }
    return elem(0.0);
}

// Per-row data of the A matrix, decomposed once: MODE 0 (img * h, oy * s - pt, ox * s - pl);
// MODE 1 (img * oh, iy + pt, ix + pl); MODE 2 (ky, kx, ci).
fn decompose_row(m: u32) -> vec3<i32> {
    if (MODE == 0u) {
        let plane = p.oh * p.ow;
        let img = m / plane;
        let rem = m - img * plane;
        let oy = rem / p.ow;
        let ox = rem - oy * p.ow;
        return vec3<i32>(i32(img * p.h), i32(oy * p.stride) - i32(p.pad_t), i32(ox * p.stride) - i32(p.pad_l));
    } else if (MODE == 1u) {
        let plane = p.h * p.w;
        let img = m / plane;
        let rem = m - img * plane;
        let iy = rem / p.w;
        let ix = rem - iy * p.w;
        return vec3<i32>(i32(img * p.oh), i32(iy + p.pad_t), i32(ix + p.pad_l));
    }
    let ci = m % p.cin;
    let t = m / p.cin;
    return vec3<i32>(i32(t / p.kw), i32(t % p.kw), i32(ci));
}

// The epilogue: bias, activation and the folded batch norm for the forward product, slice
// `split` of the partial sums for the weight gradient.
fn store_c(m: u32, n: u32, split: u32, acc: f32) {
    if (MODE == 0u) {
        var v = acc;
        if (p.has_bias != 0u) { v += bias[n]; }
        v = activate(v);
        if (p.has_bn != 0u) { v = v * bn[n] + bn[p.gn + n]; }
        out[m * p.gn + n] = elem(v);
    } else if (MODE == 1u) {
        out[m * p.gn + n] = elem(acc);
    } else {
        out[(split * p.gm + m) * p.gn + n] = elem(acc);
    }
}

@compute @workgroup_size(WG)
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

    // A-tile loading: a thread owns up to 4 rows (row_lane + rp * r) and walks every
    // kl-th k of the block starting at k_lane.
    let rp = min(bm, WG);
    let kl = WG / rp;
    let row_lane = lid % rp;
    let k_lane = lid / rp;
    let rows = bm / rp;
    // Rows decomposed once (decompose_row); invalid rows are marked by rv = 0.
    var r0: array<i32, 4>;
    var r1: array<i32, 4>;
    var r2: array<i32, 4>;
    var rv: array<u32, 4>;
    for (var r = 0u; r < rows; r++) {
        let m = m0 + row_lane + rp * r;
        rv[r] = select(0u, 1u, m < p.gm);
        let q = decompose_row(m);
        r0[r] = q.x;
        r1[r] = q.y;
        r2[r] = q.z;
    }
    // B-tile loading: thread owns column nb_lane and walks every klb-th k from kb_lane.
    let klb = WG / bn;
    let nb_lane = lid % bn;
    let kb_lane = lid / bn;

    var acc: array<f32, 32>;
    for (var i = 0u; i < 32u; i++) { acc[i] = 0.0; }

    for (var kb = k_begin; kb < k_end; kb += BK) {
        // ---- stage A
        var d = odometer_at(kb + k_lane);
        for (var kk = k_lane; kk < BK; kk += kl) {
            let k = kb + kk;
            let k_ok = k < k_end;
            for (var r = 0u; r < rows; r++) {
                var v = elem(0.0);
                if (k_ok && rv[r] != 0u) { v = gather_a(r0[r], r1[r], r2[r], d); }
                tile_a[kk * bm + row_lane + rp * r] = v;
            }
            d = odometer_step(d, kl);
        }
        // ---- stage B
        let n = n0 + nb_lane;
        var kq = kb + kb_lane;
        // MODE 1 walks k = (t, co) with co fastest: W index (t * cin + n) * cout + co.
        var co = 0u;
        var t = 0u;
        if (MODE == 1u) { co = kq % p.cout; t = kq / p.cout; }
        for (var kk = kb_lane; kk < BK; kk += klb) {
            var v = elem(0.0);
            if (kq < k_end && n < p.gn) {
                if (MODE == 1u) {
                    v = b_src[(t * p.cin + n) * p.cout + co];
                } else {
                    v = b_src[kq * p.cout + n];
                }
            }
            tile_b[kk * bn + nb_lane] = v;
            kq += klb;
            if (MODE == 1u) {
                co += klb;
                while (co >= p.cout) { co -= p.cout; t += 1u; }
            }
        }
        workgroupBarrier();
        // Two-level summation: each K block is summed on its own, then added to the total.
        // This keeps f32 rounding error near (BK + K / BK) ulps instead of K, which matters
        // for the weight gradient's long reductions and for values near activation kinks.
        var blk: array<elem, 32>;
        for (var i = 0u; i < TM * TN; i++) { blk[i] = elem(0.0); }
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<elem, 8>;
            var bv: array<elem, 8>;
            for (var i = 0u; i < TM; i++) { av[i] = tile_a[kk * bm + tm_idx + i * threads_m]; }
            for (var j = 0u; j < TN; j++) { bv[j] = tile_b[kk * bn + tn_idx + j * THREADS_N]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    blk[i * TN + j] = fma(av[i], bv[j], blk[i * TN + j]);
                }
            }
        }
        for (var i = 0u; i < TM * TN; i++) { acc[i] += f32(blk[i]); }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + tm_idx + i * threads_m;
        if (m >= p.gm) { continue; }
        for (var j = 0u; j < TN; j++) {
            let n = n0 + tn_idx + j * THREADS_N;
            if (n >= p.gn) { continue; }
            store_c(m, n, wid.z, acc[i * TN + j]);
        }
    }
}

// The same three products without workgroup memory or barriers, for CPU drivers (lavapipe)
// where workgroup memory is ordinary memory and a barrier costs a context switch: each thread
// computes TM rows x TN columns straight from global memory, the k walk is uniform across the
// workgroup, and neighbouring threads take neighbouring output channels so that weight loads
// are contiguous. Measured 1.5-2x faster than conv_gemm on lavapipe (benches/kernels.rs).
@compute @workgroup_size(WG)
fn conv_direct(@builtin(local_invocation_index) lid: u32,
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
    let n_lane = lid % THREADS_N;
    let m_lane = lid / THREADS_N;
    let m0 = m_tile * bm + m_lane * TM;
    let n0 = wid.x * bn + n_lane;

    var r0: array<i32, 8>;
    var r1: array<i32, 8>;
    var r2: array<i32, 8>;
    var rv: array<u32, 8>;
    for (var r = 0u; r < TM; r++) {
        let m = m0 + r;
        rv[r] = select(0u, 1u, m < p.gm);
        let q = decompose_row(m);
        r0[r] = q.x;
        r1[r] = q.y;
        r2[r] = q.z;
    }
    var nv: array<u32, 8>;
    for (var j = 0u; j < TN; j++) { nv[j] = select(0u, 1u, n0 + j * THREADS_N < p.gn); }
    var acc: array<f32, 32>;
    for (var i = 0u; i < 32u; i++) { acc[i] = 0.0; }
    var d = odometer_at(k_begin);
    var kb = k_begin;
    while (kb < k_end) {
        let kb_end = min(kb + BK, k_end);
        var blk: array<elem, 32>;
        for (var i = 0u; i < TM * TN; i++) { blk[i] = elem(0.0); }
        for (var k = kb; k < kb_end; k++) {
            var av: array<elem, 8>;
            var bv: array<elem, 8>;
            for (var r = 0u; r < TM; r++) {
                var v = elem(0.0);
                if (rv[r] != 0u) { v = gather_a(r0[r], r1[r], r2[r], d); }
                av[r] = v;
            }
            for (var j = 0u; j < TN; j++) {
                var v = elem(0.0);
                let n = n0 + j * THREADS_N;
                if (nv[j] != 0u) {
                    if (MODE == 1u) {
                        // k = (ky, kx, co): W[ky, kx, n = ci, co]
                        v = b_src[(((d.o * p.kw + d.m) * p.cin) + n) * p.cout + d.i];
                    } else {
                        v = b_src[k * p.cout + n];
                    }
                }
                bv[j] = v;
            }
            for (var r = 0u; r < TM; r++) {
                for (var j = 0u; j < TN; j++) {
                    blk[r * TN + j] = fma(av[r], bv[j], blk[r * TN + j]);
                }
            }
            d = odometer_step(d, 1u);
        }
        for (var i = 0u; i < TM * TN; i++) { acc[i] += f32(blk[i]); }
        kb = kb_end;
    }

    for (var r = 0u; r < TM; r++) {
        let m = m0 + r;
        if (m >= p.gm) { continue; }
        for (var j = 0u; j < TN; j++) {
            let n = n0 + j * THREADS_N;
            if (n >= p.gn) { continue; }
            store_c(m, n, wid.z, acc[r * TN + j]);
        }
    }
}
