alias elem = f32; // storage type; f16 in the scoring variant

// 2x2 max pooling (stride 2, odd trailing rows/columns dropped as 'valid' pooling does) and
// 2x nearest-neighbour upsampling, NHWC, each with its adjoint.

struct Params {
    n: u32, h: u32, w: u32, c: u32,   // input of the forward op: [n, h, w, c]
    oh: u32, ow: u32, total: u32, _p: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> a: array<elem>;
@group(0) @binding(3) var<storage, read> b: array<elem>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// out [n, h/2, w/2, c] = max over each 2x2 window of a [n, h, w, c].
@compute @workgroup_size(256)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let t = i / p.c;
    let ox = t % p.ow;
    let t2 = t / p.ow;
    let oy = t2 % p.oh;
    let img = t2 / p.oh;
    let base = ((img * p.h + 2u * oy) * p.w + 2u * ox) * p.c + ch;
    let row = p.w * p.c;
    out[i] = max(max(a[base], a[base + p.c]), max(a[base + row], a[base + row + p.c]));
}

// out [n, h, w, c] (the forward input's shape): b = dY routed to the first maximum of each
// window in row-major order (as PyTorch does), 0 elsewhere; a = the forward input.
@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let t = i / p.c;
    let x = t % p.w;
    let t2 = t / p.w;
    let y = t2 % p.h;
    let img = t2 / p.h;
    let oy = y / 2u;
    let ox = x / 2u;
    if (oy >= p.oh || ox >= p.ow) { out[i] = elem(0.0); return; }
    let base = ((img * p.h + 2u * oy) * p.w + 2u * ox) * p.c + ch;
    let row = p.w * p.c;
    var best = a[base];
    var arg = 0u;
    let v1 = a[base + p.c];
    if (v1 > best) { best = v1; arg = 1u; }
    let v2 = a[base + row];
    if (v2 > best) { best = v2; arg = 2u; }
    let v3 = a[base + row + p.c];
    if (v3 > best) { best = v3; arg = 3u; }
    let mine = (y - 2u * oy) * 2u + (x - 2u * ox);
    var g = elem(0.0);
    if (mine == arg) { g = b[((img * p.oh + oy) * p.ow + ox) * p.c + ch]; }
    out[i] = g;
}

// out [n, 2h, 2w, c] = a [n, h, w, c] repeated 2x2.
@compute @workgroup_size(256)
fn upsample_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let t = i / p.c;
    let x = t % p.ow;
    let t2 = t / p.ow;
    let y = t2 % p.oh;
    let img = t2 / p.oh;
    out[i] = a[((img * p.h + y / 2u) * p.w + x / 2u) * p.c + ch];
}

// out [n, h, w, c] = sum of the 2x2 block of a = dY [n, 2h, 2w, c].
@compute @workgroup_size(256)
fn upsample_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % p.c;
    let t = i / p.c;
    let x = t % p.w;
    let t2 = t / p.w;
    let y = t2 % p.h;
    let img = t2 / p.h;
    let row = p.ow * p.c;
    let base = ((img * p.oh + 2u * y) * p.ow + 2u * x) * p.c + ch;
    out[i] = elem(f32(a[base]) + f32(a[base + p.c]) + f32(a[base + row]) + f32(a[base + row + p.c]));
}
