// Full-reference quality baselines for N image pairs of the same size, given as packed u8 RGB
// (four bytes to a u32, [N, H, W, 3] order, pair p's bytes at p * H * W * 3), following the
// float64 references in tests/ops/quality.rs (psnr_ref, ssim_ref, ms_ssim_ref, gmsd_ref;
// checked there against scikit-image and piq).
//
// PSNR: the sum of squared byte differences is an integer, so it is summed exactly in u32:
// psnr_partials gives each workgroup a chunk of at most 65536 bytes of one pair (65536 * 255^2
// < 2^32), and psnr_sum adds a pair's chunks into a 64-bit (lo, hi) word pair. The host then
// takes 10 log10(255^2 * count / sse) in f64, so the GPU result is the CPU one.
//
// The structural metrics work on luma planes: luma_planes writes the 2N f32 planes
// (0.299 R + 0.587 G + 0.114 B, 0..255, unrounded) of both images, x planes first, then y;
// halve makes the next scale of every plane (2x2 means).
//
// SSIM (and MS-SSIM's scales): one 16x16 workgroup per 16x16 tile of the valid SSIM map
// ((H - 10) x (W - 10)). It loads the 26x26 patch of both planes into workgroup memory, then
// each thread filters its 11x11 window twice: first the means, then the *centred* second
// moments sum g (x - mu_x)^2, sum g (y - mu_y)^2, sum g (x - mu_x)(y - mu_y). In f32 the
// textbook E[x^2] - mu_x^2 cancels catastrophically on flat bright regions (terms near
// 255^2 = 65025 to get a variance near 0, against C2 = 58.5); centred moments keep the error
// relative to the variance itself. The window is 2-D (121 taps from workgroup memory, weights
// g_i g_j of the normalised 1-D Gaussian passed in the parameter block), which equals the
// CPU's separable filtering. Each workgroup writes the sums of its tile's SSIM and contrast-
// structure (cs) values; the host adds the tiles in f64.
//
// GMSD: one 16x16 workgroup per tile of the (halved) planes: Prewitt gradient magnitudes of
// both (zero outside the plane), their similarity map, and the tile's count, sum and centred
// sum of squares, which the host merges in f64 (Chan's pairwise update): the deviation is
// never taken as E[g^2] - E[g]^2.

struct Params {
    n: u32, h: u32, w: u32, bytes_per_pair: u32,
    chunk: u32, chunks: u32, oh: u32, ow: u32,
    // halve: the input planes' size, and the replicated rows/columns put before them.
    in_h: u32, in_w: u32, pad_lead: u32, planes: u32,
    g: array<vec4<f32>, 3>,   // 1-D Gaussian weights g[0..11] (g[11] unused)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;

// Byte i of a packed u8 buffer.
fn byte_of_a(i: u32) -> u32 { return (a[i / 4u] >> (8u * (i % 4u))) & 0xffu; }
fn byte_of_b(i: u32) -> u32 { return (b[i / 4u] >> (8u * (i % 4u))) & 0xffu; }

// ------------------------------------------------------------------------------- PSNR

var<workgroup> sse_part: array<u32, 256>;

// out[pair * chunks + chunk] = sum over the chunk's bytes of (a - b)^2, exactly.
// Grid: (chunks, N, 1), 256 threads.
@compute @workgroup_size(256)
fn psnr_partials(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let chunk = wid.x;
    let pair = wid.y;
    let lo = chunk * p.chunk;
    let hi = min(lo + p.chunk, p.bytes_per_pair);
    let base = pair * p.bytes_per_pair;
    var s = 0u;
    for (var i = lo + lid; i < hi; i += 256u) {
        let d = i32(byte_of_a(base + i)) - i32(byte_of_b(base + i));
        s += u32(d * d);
    }
    sse_part[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) { sse_part[lid] += sse_part[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[pair * p.chunks + chunk] = sse_part[0];
    }
}

// out[2 * pair], out[2 * pair + 1] = low and high words of the pair's 64-bit sum of the
// chunk partials in a. One thread per pair.
@compute @workgroup_size(256)
fn psnr_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = gid.x + gid.y * nwg.x * 256u;
    if (pair >= p.n) { return; }
    var lo = 0u;
    var hi = 0u;
    for (var c = 0u; c < p.chunks; c++) {
        let v = a[pair * p.chunks + c];
        lo += v;
        if (lo < v) { hi += 1u; }
    }
    out[2u * pair] = lo;
    out[2u * pair + 1u] = hi;
}

// ------------------------------------------------------------------------- luma planes

// out[img * N * H * W + pair * H * W + px] = luma of pixel px of pair's image img (0: a, 1: b).
// Grid: grid_1d(2 N H W), 256 threads.
@compute @workgroup_size(256)
fn luma_planes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let per_image = p.n * p.h * p.w;
    if (t >= 2u * per_image) { return; }
    let px = t % per_image;
    let i = px * 3u;
    var v: f32;
    if (t < per_image) {
        v = 0.299 * f32(byte_of_a(i)) + 0.587 * f32(byte_of_a(i + 1u)) + 0.114 * f32(byte_of_a(i + 2u));
    } else {
        v = 0.299 * f32(byte_of_b(i)) + 0.587 * f32(byte_of_b(i + 1u)) + 0.114 * f32(byte_of_b(i + 2u));
    }
    out[t] = bitcast<u32>(v);
}

// The next scale of `planes` planes of in_h x in_w (in a, as f32 bits): output pixel (r, c)
// is the mean of input rows 2r, 2r + 1 and columns 2c, 2c + 1, counted after pad_lead
// replicated rows and columns put before the plane (MS-SSIM's padding of odd sizes); rows and
// columns past the plane's end count as 0 (GMSD's). Grid: grid_1d(planes H W).
@compute @workgroup_size(256)
fn halve(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.planes * p.h * p.w) { return; }
    let plane = t / (p.h * p.w);
    let r = (t / p.w) % p.h;
    let c = t % p.w;
    var s = 0.0;
    for (var dy = 0u; dy < 2u; dy++) {
        for (var dx = 0u; dx < 2u; dx++) {
            let y = max(i32(2u * r + dy) - i32(p.pad_lead), 0);
            let x = max(i32(2u * c + dx) - i32(p.pad_lead), 0);
            if (u32(y) < p.in_h && u32(x) < p.in_w) {
                s += bitcast<f32>(a[(plane * p.in_h + u32(y)) * p.in_w + u32(x)]);
            }
        }
    }
    out[t] = bitcast<u32>(0.25 * s);
}

// ------------------------------------------------------------------------------- SSIM

const TILE: u32 = 16u;
const WIN: u32 = 11u;
const PATCH: u32 = 26u;          // TILE + WIN - 1
const C1: f32 = 6.5025;          // (0.01 * 255)^2
const C2: f32 = 58.5225;         // (0.03 * 255)^2

var<workgroup> luma_x: array<f32, 676>;   // PATCH * PATCH
var<workgroup> luma_y: array<f32, 676>;
var<workgroup> ssim_part: array<f32, 256>;
var<workgroup> cs_part: array<f32, 256>;

fn gauss(i: u32) -> f32 {
    return p.g[i / 4u][i % 4u];
}

fn plane_at(i: u32) -> f32 {
    return bitcast<f32>(a[i]);
}

// out (as f32 bits)[(pair * tiles + tile) * 2 + {0, 1}] = sums of the SSIM and cs maps over
// the tile's valid pixels, for the h x w planes in a (x planes 0..N, then y planes).
// Grid: (ceil(ow / 16), ceil(oh / 16), N), 16x16 threads.
@compute @workgroup_size(16, 16)
fn ssim_tiles(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = wid.z;
    let x0 = wid.x * TILE;
    let y0 = wid.y * TILE;
    // Load the patch (zeros past the plane's edge: only invalid outputs would read them).
    for (var k = lid; k < PATCH * PATCH; k += TILE * TILE) {
        let y = y0 + k / PATCH;
        let x = x0 + k % PATCH;
        var vx = 0.0;
        var vy = 0.0;
        if (y < p.h && x < p.w) {
            let px = y * p.w + x;
            vx = plane_at(pair * p.h * p.w + px);
            vy = plane_at((p.n + pair) * p.h * p.w + px);
        }
        luma_x[k] = vx;
        luma_y[k] = vy;
    }
    workgroupBarrier();

    let ox = x0 + lid3.x;
    let oy = y0 + lid3.y;
    var s = 0.0;
    var cs = 0.0;
    if (ox < p.ow && oy < p.oh) {
        let origin = lid3.y * PATCH + lid3.x;
        var mx = 0.0;
        var my = 0.0;
        for (var i = 0u; i < WIN; i++) {
            var rx = 0.0;
            var ry = 0.0;
            for (var j = 0u; j < WIN; j++) {
                let gj = gauss(j);
                rx += gj * luma_x[origin + i * PATCH + j];
                ry += gj * luma_y[origin + i * PATCH + j];
            }
            let gi = gauss(i);
            mx += gi * rx;
            my += gi * ry;
        }
        var vx = 0.0;
        var vy = 0.0;
        var cxy = 0.0;
        for (var i = 0u; i < WIN; i++) {
            var rxx = 0.0;
            var ryy = 0.0;
            var rxy = 0.0;
            for (var j = 0u; j < WIN; j++) {
                let gj = gauss(j);
                let dx = luma_x[origin + i * PATCH + j] - mx;
                let dy = luma_y[origin + i * PATCH + j] - my;
                rxx += gj * dx * dx;
                ryy += gj * dy * dy;
                rxy += gj * dx * dy;
            }
            let gi = gauss(i);
            vx += gi * rxx;
            vy += gi * ryy;
            cxy += gi * rxy;
        }
        cs = (2.0 * cxy + C2) / (vx + vy + C2);
        s = (2.0 * mx * my + C1) / (mx * mx + my * my + C1) * cs;
    }
    ssim_part[lid] = s;
    cs_part[lid] = cs;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            ssim_part[lid] += ssim_part[lid + stride];
            cs_part[lid] += cs_part[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let tile = pair * nwg.x * nwg.y + wid.y * nwg.x + wid.x;
        out[2u * tile] = bitcast<u32>(ssim_part[0]);
        out[2u * tile + 1u] = bitcast<u32>(cs_part[0]);
    }
}

// ------------------------------------------------------------------------------- GMSD

const GPATCH: u32 = 18u;         // TILE + 2: the 3x3 Prewitt window's halo
const T_GMS: f32 = 170.0;        // GMSD's constant on the 0..255 scale

// Both images' patches, x at 0 and y at GPATCH * GPATCH (one array, so that one function
// reads either: WGSL passes no pointers to workgroup memory).
var<workgroup> grad_patches: array<f32, 648>;
var<workgroup> gms_part: array<f32, 256>;
var<workgroup> gms_count: array<u32, 256>;

// Prewitt gradient magnitude at position k of the patch that starts at `base` in
// grad_patches (horizontal and vertical differences of the 3x3 neighbourhood, each / 3).
fn prewitt(base: u32, k: u32) -> f32 {
    let c = base + k;
    let gx = (grad_patches[c - GPATCH + 1u] + grad_patches[c + 1u] + grad_patches[c + GPATCH + 1u]
            - grad_patches[c - GPATCH - 1u] - grad_patches[c - 1u] - grad_patches[c + GPATCH - 1u]) / 3.0;
    let gy = (grad_patches[c + GPATCH - 1u] + grad_patches[c + GPATCH] + grad_patches[c + GPATCH + 1u]
            - grad_patches[c - GPATCH - 1u] - grad_patches[c - GPATCH] - grad_patches[c - GPATCH + 1u]) / 3.0;
    return sqrt(gx * gx + gy * gy);
}

// out (as f32 bits)[(pair * tiles + tile) * 3 + {0, 1, 2}] = the tile's pixel count, sum of
// the gradient magnitude similarity map, and sum of squared deviations from the tile's mean,
// for the h x w planes in a (x planes 0..N, then y planes; zero outside the plane).
// Grid: (ceil(w / 16), ceil(h / 16), N), 16x16 threads.
@compute @workgroup_size(16, 16)
fn gms_tiles(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32,
             @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = wid.z;
    let x0 = i32(wid.x * TILE) - 1;
    let y0 = i32(wid.y * TILE) - 1;
    for (var k = lid; k < GPATCH * GPATCH; k += TILE * TILE) {
        let y = y0 + i32(k / GPATCH);
        let x = x0 + i32(k % GPATCH);
        var vx = 0.0;
        var vy = 0.0;
        if (y >= 0 && x >= 0 && u32(y) < p.h && u32(x) < p.w) {
            let px = u32(y) * p.w + u32(x);
            vx = plane_at(pair * p.h * p.w + px);
            vy = plane_at((p.n + pair) * p.h * p.w + px);
        }
        grad_patches[k] = vx;
        grad_patches[GPATCH * GPATCH + k] = vy;
    }
    workgroupBarrier();

    let ox = wid.x * TILE + lid3.x;
    let oy = wid.y * TILE + lid3.y;
    let inside = ox < p.w && oy < p.h;
    var gms = 0.0;
    if (inside) {
        let k = (lid3.y + 1u) * GPATCH + lid3.x + 1u;
        let mx = prewitt(0u, k);
        let my = prewitt(GPATCH * GPATCH, k);
        gms = (2.0 * mx * my + T_GMS) / (mx * mx + my * my + T_GMS);
    }
    gms_part[lid] = gms;
    gms_count[lid] = select(0u, 1u, inside);
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            gms_part[lid] += gms_part[lid + stride];
            gms_count[lid] += gms_count[lid + stride];
        }
        workgroupBarrier();
    }
    let count = gms_count[0];
    let sum = gms_part[0];
    let mean = sum / f32(count);
    workgroupBarrier();
    var d2 = 0.0;
    if (inside) { d2 = (gms - mean) * (gms - mean); }
    gms_part[lid] = d2;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) { gms_part[lid] += gms_part[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let tile = pair * nwg.x * nwg.y + wid.y * nwg.x + wid.x;
        out[3u * tile] = bitcast<u32>(f32(count));
        out[3u * tile + 1u] = bitcast<u32>(sum);
        out[3u * tile + 2u] = bitcast<u32>(gms_part[0]);
    }
}
