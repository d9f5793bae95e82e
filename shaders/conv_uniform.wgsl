// Convolution kernels for CPU drivers (lavapipe/llvmpipe), where loads, not arithmetic, bound
// the speed: llvmpipe runs a workgroup as SIMD loops over its invocations, so a load whose
// address differs between invocations becomes one scalar load per lane, while a load whose
// address is the same for every invocation is one load and a broadcast. These kernels make
// the operand that is shared by every pixel (the weights; for the weight gradient, dY) the
// same for every invocation of a workgroup, read as vec4 along the output channels (from a
// 64 KiB uniform window for the weights), and reuse each of its loads over several pixels per
// invocation; every invocation gathers only its own pixels' activations, with padding and
// stride tests hoisted out of the channel loop.
//
// Products (same layouts as conv.wgsl: NHWC activations, HWIO weights):
//   conv_uniform, MODE 0 (forward): C[m = (img, oy, ox), n = co], k = (ky, kx, ci)
//   conv_uniform, MODE 1 (grad input): C[m = (img, iy, ix), n = ci], k = (ky, kx, co)
//   conv_uniform_dw (grad weight): C[m = (ky, kx, ci), n = co], k = (img, oy, ox), one
//     dispatch per 64 KiB window of dY rows (pack_rows), split over k within it
// pack_weights lays the K x N weight matrix of MODE 0 or 1 out for conv_uniform: blocks of TN
// columns, each [kp rows][TN4 vec4], zero beyond K and N, so that a 64 KiB window holds whole
// rows of one or more blocks. A layer whose block does not fit one window runs in several
// dispatches over k, each adding to the output (`first`, `last`).
//
// Each invocation owns TM pixels (rows of C) spaced WG apart, so that neighbouring invocations
// take neighbouring pixels, and TN4 vec4 columns; all of a workgroup's invocations share
// those columns. Sums run in 16-deep blocks added to the total, as in conv.wgsl.

override MODE: u32 = 0u;
override ACT: u32 = 0u;        // 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh
override TM: u32 = 2u;         // pixels (rows of C) per invocation
override TN4: u32 = 2u;        // vec4 columns of C per invocation (the workgroup's block)

const WG: u32 = 64u;
const BK: u32 = 16u;
// vec4 in one 64 KiB uniform window.
const WINDOW: u32 = 4096u;

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    oh: u32, ow: u32, cout: u32, kh: u32,
    kw: u32, stride: u32, pad_t: u32, pad_l: u32,
    gm: u32, gn: u32, gk: u32, kp: u32,
    has_bias: u32, stride_shift: u32, has_bn: u32, b0: u32,
    k0: u32, k1: u32, first: u32, last: u32,
    k_chunk: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a_src: array<f32>;
@group(0) @binding(3) var<uniform> wts: array<vec4<f32>, WINDOW>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> bn: array<f32>;

fn activate(x: f32) -> f32 {
    if (ACT == 1u) { return select(0.5 * x, x, x > 0.0); }
    if (ACT == 2u) { return max(x, 0.0); }
    if (ACT == 3u) { return 1.0 / (1.0 + exp(-x)); }
    if (ACT == 4u) { return tanh(x); }
    return x;
}

@compute @workgroup_size(WG)
fn conv_uniform(@builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let m_tile = wid.y + wid.z * nwg.y;
    let block = p.b0 + wid.x;
    // MODE 0 walks k = (ky, kx, ci) over the input image; MODE 1 k = (ky, kx, co) over dY.
    var inner = p.cin;
    var src_h = p.h;
    var src_w = p.w;
    var img_h = p.oh;
    var img_w = p.ow;
    if (MODE == 1u) {
        inner = p.cout;
        src_h = p.oh;
        src_w = p.ow;
        img_h = p.h;
        img_w = p.w;
    }
    // Each pixel decomposed once: the image's first source row, and its (y, x) origin in
    // source coordinates (MODE 0: oy * s - pt; MODE 1: iy + pt).
    var row0: array<u32, 8>;
    var y0: array<i32, 8>;
    var x0: array<i32, 8>;
    var live: array<bool, 8>;
    let plane = img_h * img_w;
    for (var i = 0u; i < TM; i++) {
        let m = m_tile * (WG * TM) + i * WG + lid;
        live[i] = m < p.gm;
        let mm = select(0u, m, live[i]);
        let img = mm / plane;
        let rem = mm - img * plane;
        let y = rem / img_w;
        let x = rem - y * img_w;
        row0[i] = img * src_h;
        if (MODE == 0u) {
            y0[i] = i32(y * p.stride) - i32(p.pad_t);
            x0[i] = i32(x * p.stride) - i32(p.pad_l);
        } else {
            y0[i] = i32(y + p.pad_t);
            x0[i] = i32(x + p.pad_l);
        }
    }
    // A k range after the first continues the total that the earlier ranges wrote, so that
    // the sum is associated exactly as in one pass.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM; i++) {
        let m = m_tile * (WG * TM) + i * WG + lid;
        for (var j = 0u; j < TN4; j++) {
            var v = vec4<f32>(0.0);
            if (p.first == 0u && live[i]) {
                for (var e = 0u; e < 4u; e++) {
                    let n = block * (TN4 * 4u) + j * 4u + e;
                    if (n < p.gn) { v[e] = out[m * p.gn + n]; }
                }
            }
            acc[i * TN4 + j] = v;
        }
    }

    // This dispatch's k range [k0, k1) starts at tap k0 / inner, channel k0 % inner.
    var tap = p.k0 / inner;
    var c = p.k0 - tap * inner;
    var k = p.k0;
    // Row of the window that holds weight row k of this block.
    var wrow = (wid.x * p.kp) * TN4;
    // The 16-deep blocks run over k as conv.wgsl's do, across taps (k0 is a multiple of 16),
    // so both kernels round every sum the same way and agree to the bit: a result that sits
    // on an activation's kink then takes the same branch whichever kernel computed it.
    var blk: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM * TN4; i++) { blk[i] = vec4<f32>(0.0); }
    var fill = 0u;
    while (k < p.k1) {
        let ky = tap / p.kw;
        let kx = tap - ky * p.kw;
        var base: array<u32, 8>;
        var ok: array<bool, 8>;
        for (var i = 0u; i < TM; i++) {
            var sy: i32;
            var sx: i32;
            var in_range: bool;
            if (MODE == 0u) {
                sy = y0[i] + i32(ky);
                sx = x0[i] + i32(kx);
                in_range = sy >= 0 && sx >= 0 && sy < i32(src_h) && sx < i32(src_w);
            } else {
                let ty = y0[i] - i32(ky);
                let tx = x0[i] - i32(kx);
                let smask = p.stride - 1u;
                sy = ty >> p.stride_shift;
                sx = tx >> p.stride_shift;
                in_range = ty >= 0 && tx >= 0 && (u32(ty) & smask) == 0u && (u32(tx) & smask) == 0u
                    && sy < i32(src_h) && sx < i32(src_w);
            }
            ok[i] = live[i] && in_range;
            // Out-of-range pixels read channel c of pixel 0 (always in bounds) and discard it.
            base[i] = select(0u, ((row0[i] + u32(sy)) * src_w + u32(sx)) * inner, ok[i]);
        }
        let c_start = c;
        let c_end = min(inner, c + (p.k1 - k));
        while (c < c_end) {
            let run_end = min(c + (BK - fill), c_end);
            fill += run_end - c;
            for (; c < run_end; c++) {
                var av: array<f32, 8>;
                for (var i = 0u; i < TM; i++) {
                    av[i] = select(0.0, a_src[base[i] + c], ok[i]);
                }
                for (var j = 0u; j < TN4; j++) {
                    let wv = wts[wrow + j];
                    for (var i = 0u; i < TM; i++) {
                        blk[i * TN4 + j] = fma(vec4<f32>(av[i]), wv, blk[i * TN4 + j]);
                    }
                }
                wrow += TN4;
            }
            if (fill == BK) {
                for (var i = 0u; i < TM * TN4; i++) {
                    acc[i] += blk[i];
                    blk[i] = vec4<f32>(0.0);
                }
                fill = 0u;
            }
        }
        k += c_end - c_start;
        if (c == inner) {
            c = 0u;
            tap += 1u;
        }
    }
    if (fill != 0u) {
        for (var i = 0u; i < TM * TN4; i++) { acc[i] += blk[i]; }
    }

    // Epilogue: on the last k range, bias, activation and the folded batch norm (forward
    // only).
    for (var i = 0u; i < TM; i++) {
        if (!live[i]) { continue; }
        let m = m_tile * (WG * TM) + i * WG + lid;
        for (var j = 0u; j < TN4; j++) {
            for (var e = 0u; e < 4u; e++) {
                let n = block * (TN4 * 4u) + j * 4u + e;
                if (n >= p.gn) { continue; }
                let o = m * p.gn + n;
                var v = acc[i * TN4 + j][e];
                if (MODE == 0u && p.last != 0u) {
                    if (p.has_bias != 0u) { v += bias[n]; }
                    v = activate(v);
                    if (p.has_bn != 0u) { v = v * bn[n] + bn[p.gn + n]; }
                }
                out[o] = v;
            }
        }
    }
}

// The K x N weight matrix of MODE 0 (W[k = (ky, kx, ci), co], HWIO as it is) or MODE 1
// (W[k = (ky, kx, co), n = ci], HWIO read transposed per tap) as blocks of TN4 vec4 columns:
// packed[(block * kp + k) * TN4 + j] = columns block * TN + 4j .. 4j + 3 of row k, zero
// outside K x N. One invocation per vec4.
@group(0) @binding(1) var<storage, read_write> packed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;

@compute @workgroup_size(WG)
fn pack_weights(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let blocks = (p.gn + TN4 * 4u - 1u) / (TN4 * 4u);
    if (idx >= blocks * p.kp * TN4) { return; }
    let j = idx % TN4;
    let row = idx / TN4;
    let k = row % p.kp;
    let block = row / p.kp;
    var v = vec4<f32>(0.0);
    if (k < p.gk) {
        for (var e = 0u; e < 4u; e++) {
            let n = block * TN4 * 4u + j * 4u + e;
            if (n < p.gn) {
                if (MODE == 0u) {
                    v[e] = weight[k * p.cout + n];
                } else {
                    let t = k / p.cout;
                    let co = k - t * p.cout;
                    v[e] = weight[(t * p.cin + n) * p.cout + co];
                }
            }
        }
    }
    packed[idx] = v;
}

// Rows of dY [gk rows of cout] as 64 KiB windows for conv_uniform_dw: window w holds rows
// [w * R, (w + 1) * R), R = kp here, each row cout padded to whole vec4 (coutp4), zero beyond.
@compute @workgroup_size(WG)
fn pack_rows(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let coutp4 = (p.cout + 3u) / 4u;
    let windows = (p.gk + p.kp - 1u) / p.kp;
    if (idx >= windows * WINDOW) { return; }
    let win = idx / WINDOW;
    let inw = idx - win * WINDOW;
    let r = inw / coutp4;
    let j = inw - r * coutp4;
    let q = win * p.kp + r;
    var v = vec4<f32>(0.0);
    if (r < p.kp && q < p.gk) {
        for (var e = 0u; e < 4u; e++) {
            let n = j * 4u + e;
            if (n < p.cout) { v[e] = weight[q * p.cout + n]; }
        }
    }
    packed[idx] = v;
}

// The weight gradient: C[m = (ky, kx, ci), n = co] = sum over pixels q = (img, oy, ox) of
// X(img, oy * s + ky - pt, ox * s + kx - pl, ci) dY[q, co]. Here dY plays the weights' part:
// every invocation of a workgroup walks the same pixels and reads the same dY vec4 from the
// uniform window of rows [k0, k1) (pack_rows), while its TM rows (ky, kx, ci), spaced WG
// apart (closer in a block the rows do not fill), make neighbouring invocations read
// neighbouring channels of X. Workgroup z sums pixels [k0 + z * k_chunk, ...) into slice
// b0 + z of the output; a reduction adds the slices.
@compute @workgroup_size(WG)
fn conv_uniform_dw(@builtin(local_invocation_index) lid: u32,
                   @builtin(workgroup_id) wid: vec3<u32>) {
    // A block with fewer than WG * TM rows (a layer with few input channels: 75 rows for a
    // 5x5 filter on 3 channels) spaces them closer, so that whole invocations are left over
    // and leave at once instead of running masked beside the live ones.
    let m_base = wid.y * (WG * TM);
    let spacing = min(WG, (min(WG * TM, p.gm - m_base) + TM - 1u) / TM);
    if (lid >= spacing) { return; }
    let q_begin = p.k0 + wid.z * p.k_chunk;
    let q_end = min(q_begin + p.k_chunk, p.k1);
    let n0 = wid.x * (TN4 * 4u);
    let coutp4 = (p.cout + 3u) / 4u;
    var ry: array<i32, 8>;   // ky - pt
    var rx: array<i32, 8>;   // kx - pl
    var rc: array<u32, 8>;   // ci
    var live: array<bool, 8>;
    for (var i = 0u; i < TM; i++) {
        let m = m_base + i * spacing + lid;
        live[i] = m < p.gm;
        let mm = select(0u, m, live[i]);
        let ci = mm % p.cin;
        let t = mm / p.cin;
        let ky = t / p.kw;
        rc[i] = ci;
        ry[i] = i32(ky) - i32(p.pad_t);
        rx[i] = i32(t - ky * p.kw) - i32(p.pad_l);
    }
    // vec4 columns beyond cout read the last one and are never stored.
    var col: array<u32, 8>;
    for (var j = 0u; j < TN4; j++) { col[j] = min(wid.x * TN4 + j, coutp4 - 1u); }
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < TM * TN4; i++) { acc[i] = vec4<f32>(0.0); }

    let plane = p.oh * p.ow;
    var q = q_begin;
    while (q < q_end) {
        // One output row (img, oy) at a time: its input row per invocation row tested once.
        let img = q / plane;
        let rem = q - img * plane;
        let oy = rem / p.ow;
        let ox_begin = rem - oy * p.ow;
        let ox_end = min(p.ow, ox_begin + (q_end - q));
        var rbase: array<u32, 8>;
        var rok: array<bool, 8>;
        for (var i = 0u; i < TM; i++) {
            let iy = i32(oy * p.stride) + ry[i];
            rok[i] = live[i] && iy >= 0 && iy < i32(p.h);
            rbase[i] = (img * p.h + u32(max(iy, 0))) * p.w;
        }
        var ox = ox_begin;
        var dq = (q - p.k0) * coutp4;
        while (ox < ox_end) {
            let ob_end = min(ox + BK, ox_end);
            var blk: array<vec4<f32>, 16>;
            for (var i = 0u; i < TM * TN4; i++) { blk[i] = vec4<f32>(0.0); }
            for (; ox < ob_end; ox++) {
                var av: array<f32, 8>;
                for (var i = 0u; i < TM; i++) {
                    let ix = i32(ox * p.stride) + rx[i];
                    let okx = rok[i] && ix >= 0 && ix < i32(p.w);
                    let a = a_src[select(0u, (rbase[i] + u32(ix)) * p.cin + rc[i], okx)];
                    av[i] = select(0.0, a, okx);
                }
                for (var j = 0u; j < TN4; j++) {
                    let dv = wts[dq + col[j]];
                    for (var i = 0u; i < TM; i++) {
                        blk[i * TN4 + j] = fma(vec4<f32>(av[i]), dv, blk[i * TN4 + j]);
                    }
                }
                dq += coutp4;
            }
            for (var i = 0u; i < TM * TN4; i++) { acc[i] += blk[i]; }
        }
        q += ox_end - ox_begin;
    }

    for (var i = 0u; i < TM; i++) {
        if (!live[i]) { continue; }
        let m = m_base + i * spacing + lid;
        for (var j = 0u; j < TN4; j++) {
            for (var e = 0u; e < 4u; e++) {
                let n = n0 + j * 4u + e;
                if (n < p.gn) { out[((p.b0 + wid.z) * p.gm + m) * p.gn + n] = acc[i * TN4 + j][e]; }
            }
        }
    }
}
