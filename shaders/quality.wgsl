// Full-reference quality baselines for N image pairs of the same size, given as packed u8 RGB
// (four bytes to a u32, [N, H, W, 3] order, pair p's bytes at p * H * W * 3), following the
// float64 references in tests/ops/quality.rs (psnr_ref, ssim_ref; checked there against
// scikit-image).
//
// PSNR: the sum of squared byte differences is an integer, so it is summed exactly in u32:
// psnr_partials gives each workgroup a chunk of at most 65536 bytes of one pair (65536 * 255^2
// < 2^32), and psnr_sum adds a pair's chunks into a 64-bit (lo, hi) word pair. The host then
// takes 10 log10(255^2 * count / sse) in f64, so the GPU result is the CPU one.
//
// SSIM: one 16x16 workgroup per 16x16 tile of the valid SSIM map ((H - 10) x (W - 10)). It
// loads the 26x26 luma patch of both images into workgroup memory, then each thread filters
// its 11x11 window twice: first the means, then the *centred* second moments
// sum g (x - mu_x)^2, sum g (y - mu_y)^2, sum g (x - mu_x)(y - mu_y). In f32 the textbook
// E[x^2] - mu_x^2 cancels catastrophically on flat bright regions (terms near 255^2 = 65025
// to get a variance near 0, against C2 = 58.5); centred moments keep the error relative to
// the variance itself. The window is 2-D (121 taps from workgroup memory, weights g_i g_j of
// the normalised 1-D Gaussian passed in the parameter block), which equals the CPU's
// separable filtering. Each workgroup writes the sum of its tile's SSIM values; the per-pair
// mean is a column reduction (ops::reduce) of those partials.

struct Params {
    n: u32, h: u32, w: u32, bytes_per_pair: u32,
    chunk: u32, chunks: u32, oh: u32, ow: u32,
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

// ------------------------------------------------------------------------------- SSIM

const TILE: u32 = 16u;
const WIN: u32 = 11u;
const PATCH: u32 = 26u;          // TILE + WIN - 1
const C1: f32 = 6.5025;          // (0.01 * 255)^2
const C2: f32 = 58.5225;         // (0.03 * 255)^2

var<workgroup> luma_a: array<f32, 676>;   // PATCH * PATCH
var<workgroup> luma_b: array<f32, 676>;
var<workgroup> ssim_part: array<f32, 256>;

fn gauss(i: u32) -> f32 {
    return p.g[i / 4u][i % 4u];
}

fn luma_a_at(px: u32) -> f32 {
    let i = px * 3u;
    return 0.299 * f32(byte_of_a(i)) + 0.587 * f32(byte_of_a(i + 1u)) + 0.114 * f32(byte_of_a(i + 2u));
}

fn luma_b_at(px: u32) -> f32 {
    let i = px * 3u;
    return 0.299 * f32(byte_of_b(i)) + 0.587 * f32(byte_of_b(i + 1u)) + 0.114 * f32(byte_of_b(i + 2u));
}

// out (as f32 bits)[pair * tiles + tile] = sum of the SSIM map over the tile's valid pixels.
// Grid: (ceil(ow / 16), ceil(oh / 16), N), 16x16 threads.
@compute @workgroup_size(16, 16)
fn ssim_tiles(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pair = wid.z;
    let x0 = wid.x * TILE;
    let y0 = wid.y * TILE;
    // Load the patch (zeros past the image edge: only invalid outputs would read them).
    for (var k = lid; k < PATCH * PATCH; k += TILE * TILE) {
        let y = y0 + k / PATCH;
        let x = x0 + k % PATCH;
        var va = 0.0;
        var vb = 0.0;
        if (y < p.h && x < p.w) {
            let px = (pair * p.h + y) * p.w + x;
            va = luma_a_at(px);
            vb = luma_b_at(px);
        }
        luma_a[k] = va;
        luma_b[k] = vb;
    }
    workgroupBarrier();

    let ox = x0 + lid3.x;
    let oy = y0 + lid3.y;
    var s = 0.0;
    if (ox < p.ow && oy < p.oh) {
        let origin = lid3.y * PATCH + lid3.x;
        var mx = 0.0;
        var my = 0.0;
        for (var i = 0u; i < WIN; i++) {
            var rx = 0.0;
            var ry = 0.0;
            for (var j = 0u; j < WIN; j++) {
                let gj = gauss(j);
                rx += gj * luma_a[origin + i * PATCH + j];
                ry += gj * luma_b[origin + i * PATCH + j];
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
                let dx = luma_a[origin + i * PATCH + j] - mx;
                let dy = luma_b[origin + i * PATCH + j] - my;
                rxx += gj * dx * dx;
                ryy += gj * dy * dy;
                rxy += gj * dx * dy;
            }
            let gi = gauss(i);
            vx += gi * rxx;
            vy += gi * ryy;
            cxy += gi * rxy;
        }
        s = ((2.0 * mx * my + C1) * (2.0 * cxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
    }
    ssim_part[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) { ssim_part[lid] += ssim_part[lid + stride]; }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let tiles = nwg.x * nwg.y;
        out[pair * tiles + wid.y * nwg.x + wid.x] = bitcast<u32>(ssim_part[0]);
    }
}
