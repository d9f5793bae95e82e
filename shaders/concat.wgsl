alias elem = f32; // storage type; f16 in the scoring variant

// Channel-range copies between channels-last tensors of the same rows: concatenation along
// channels is two copies into one output, and its adjoint is two copies out of the gradient.
// out[r, dst_off + c] = a[r, src_off + c] for c < count.

struct Params {
    rows: u32, src_c: u32, dst_c: u32, src_off: u32,
    dst_off: u32, count: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> a: array<elem>;
@group(0) @binding(3) var<storage, read> b: array<elem>;

@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.count) { return; }
    let r = i / p.count;
    let c = i - r * p.count;
    out[r * p.dst_c + p.dst_off + c] = a[r * p.src_c + p.src_off + c];
}

// The decoder's input for scoring in one pass instead of three (upsample, Siamese difference,
// concatenation), each of which would write and re-read a full-resolution tensor:
//   out [n, h, w, c1 + c2] = concat(upsample2x(a), |b[img] - b[img + n]|)
// with a [n, h/2, w/2, c1] (count = c1, src_c = c1, dst_c = c1 + c2) and b the stacked
// encoder features [2n, h, w, c2]; rows = n * h * w, _p0 = h, _p1 = w.
@compute @workgroup_size(256)
fn upsample_absdiff_concat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.dst_c) { return; }
    let r = i / p.dst_c;
    let ch = i - r * p.dst_c;
    if (ch < p.count) {
        let h = p._p0;
        let w = p._p1;
        let x = r % w;
        let t = r / w;
        let y = t % h;
        let img = t / h;
        out[i] = a[((img * (h / 2u) + y / 2u) * (w / 2u) + x / 2u) * p.src_c + ch];
    } else {
        let c2 = p.dst_c - p.count;
        let j = r * c2 + ch - p.count;
        out[i] = abs(b[j] - b[j + p.rows * c2]);
    }
}
