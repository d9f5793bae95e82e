alias elem = f32; // storage type; f16 in the scoring variant

// Channel-range copies between channels-last tensors of the same rows: concatenation along
// channels is two copies into one output, and its adjoint is two copies out of the gradient.
// out[r, dst_off + c] = a[r, src_off + c] for c < count.

struct Params {
    rows: u32, src_c: u32, dst_c: u32, src_off: u32,
    dst_off: u32, count: u32, _p0: u32, _p1: u32,
}

// The divisors of the index arithmetic are fixed per pipeline (override constants) so that
// CPU drivers multiply instead of dividing per lane (see pool.wgsl): COUNT for every kernel,
// DST_C, H and W for the upsample_absdiff_concat kernels (equal to p.dst_c, p._p0 and p._p1).
override COUNT: u32 = 1u;
override DST_C: u32 = 1u;
override H: u32 = 1u;
override W: u32 = 1u;
// Channels per invocation of copy_channels: 4 where the count is a multiple of 4, so that one
// invocation's fixed cost on a CPU driver covers four consecutive channels of a row.
override PER: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> a: array<elem>;
@group(0) @binding(3) var<storage, read> b: array<elem>;

@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (gid.x + gid.y * nwg.x * 256u) * PER;
    if (i >= p.rows * COUNT) { return; }
    let r = i / COUNT;
    let c = i - r * COUNT;
    let dst = r * p.dst_c + p.dst_off + c;
    let src = r * p.src_c + p.src_off + c;
    for (var e = 0u; e < PER; e++) { out[dst + e] = a[src + e]; }
}

// The decoder's input for scoring in one pass instead of three (upsample, Siamese difference,
// concatenation), each of which would write and re-read a full-resolution tensor:
//   out [n, h, w, c1 + c2] = concat(upsample2x(a), |b[img] - b[img + n]|)
// with a [n, h/2, w/2, c1] (count = c1, src_c = c1, dst_c = c1 + c2) and b the stacked
// encoder features [2n, h, w, c2]; rows = n * h * w, _p0 = h, _p1 = w. One element per
// invocation; upsample_absdiff_concat4 below where c1 and c2 are multiples of 4.
@compute @workgroup_size(256)
fn upsample_absdiff_concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * DST_C) { return; }
    let r = i / DST_C;
    let ch = i - r * DST_C;
    if (ch < COUNT) {
        let x = r % W;
        let t = r / W;
        let y = t % H;
        let img = t / H;
        out[i] = a[((img * (H / 2u) + y / 2u) * (W / 2u) + x / 2u) * p.src_c + ch];
    } else {
        let c2 = DST_C - COUNT;
        let j = r * c2 + ch - COUNT;
        out[i] = abs(b[j] - b[j + p.rows * c2]);
    }
}

// The same with four channels per invocation, moved as one vec4 each (every shape of the
// model): four elements, all on the same side of the concatenation, share the index
// arithmetic, and llvmpipe moves a lane's vec4 in one access instead of four.
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<elem>>;

@compute @workgroup_size(256)
fn upsample_absdiff_concat4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = gid.x + gid.y * nwg.x * 256u;
    let i = v * 4u;
    if (i >= p.rows * DST_C) { return; }
    let r = i / DST_C;
    let ch = i - r * DST_C;
    if (ch < COUNT) {
        let x = r % W;
        let t = r / W;
        let y = t % H;
        let img = t / H;
        out4[v] = a4[(((img * (H / 2u) + y / 2u) * (W / 2u) + x / 2u) * p.src_c + ch) / 4u];
    } else {
        let c2 = DST_C - COUNT;
        let j = (r * c2 + ch - COUNT) / 4u;
        out4[v] = abs(b4[j] - b4[j + p.rows * c2 / 4u]);
    }
}
