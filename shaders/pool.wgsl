alias elem = f32; // storage type; f16 in the scoring variant

// 2x2 max pooling (stride 2, odd trailing rows/columns dropped as 'valid' pooling does) and
// 2x nearest-neighbour upsampling, NHWC, each with its adjoint.

struct Params {
    n: u32, h: u32, w: u32, c: u32,   // input of the forward op: [n, h, w, c]
    oh: u32, ow: u32, total: u32, _p: u32,
}

// The shape is fixed per pipeline (override constants, `ops::pool::shape_constants`) so that
// the index arithmetic divides by constants: a CPU driver (llvmpipe) then multiplies where a
// division by a uniform value costs a scalar division per lane, several times the kernel's
// loads and stores. Params keeps the element count.
override H: u32 = 1u;
override W: u32 = 1u;
override C: u32 = 1u;
override OH: u32 = 1u;
override OW: u32 = 1u;

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
    let ch = i % C;
    let t = i / C;
    let ox = t % OW;
    let t2 = t / OW;
    let oy = t2 % OH;
    let img = t2 / OH;
    let base = ((img * H + 2u * oy) * W + 2u * ox) * C + ch;
    let row = W * C;
    out[i] = max(max(a[base], a[base + C]), max(a[base + row], a[base + row + C]));
}

// The same for channel counts that are multiples of 4, four channels as one vec4 per
// invocation: the index arithmetic once for four, and llvmpipe moves a lane's vec4 in one
// access instead of four. p.total counts vec4 here.
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<elem>>;

@compute @workgroup_size(256)
fn maxpool_forward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let c4 = C / 4u;
    let ch = i % c4;
    let t = i / c4;
    let ox = t % OW;
    let t2 = t / OW;
    let oy = t2 % OH;
    let img = t2 / OH;
    let base = ((img * H + 2u * oy) * W + 2u * ox) * c4 + ch;
    let row = W * c4;
    out4[i] = max(max(a4[base], a4[base + c4]), max(a4[base + row], a4[base + row + c4]));
}

// out [n, h, w, c] (the forward input's shape): b = dY routed to the first maximum of each
// window in row-major order (as PyTorch does), 0 elsewhere; a = the forward input. One
// invocation per window (p.total = n * OH * OW * C) finds the maximum once and writes all four
// of its elements, and the window at an odd image's last row or column also zeroes the row or
// column that pooling dropped.
@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % C;
    let t = i / C;
    let ox = t % OW;
    let t2 = t / OW;
    let oy = t2 % OH;
    let img = t2 / OH;
    let base = ((img * H + 2u * oy) * W + 2u * ox) * C + ch;
    let row = W * C;
    var best = a[base];
    var arg = 0u;
    let v1 = a[base + C];
    if (v1 > best) { best = v1; arg = 1u; }
    let v2 = a[base + row];
    if (v2 > best) { best = v2; arg = 2u; }
    let v3 = a[base + row + C];
    if (v3 > best) { best = v3; arg = 3u; }
    let g = b[i];
    let zero = elem(0.0);
    out[base] = select(zero, g, arg == 0u);
    out[base + C] = select(zero, g, arg == 1u);
    out[base + row] = select(zero, g, arg == 2u);
    out[base + row + C] = select(zero, g, arg == 3u);
    let last_row = (H & 1u) == 1u && oy == OH - 1u;
    let last_col = (W & 1u) == 1u && ox == OW - 1u;
    if (last_row) {
        out[base + 2u * row] = zero;
        out[base + 2u * row + C] = zero;
    }
    if (last_col) {
        out[base + 2u * C] = zero;
        out[base + row + 2u * C] = zero;
    }
    if (last_row && last_col) { out[base + 2u * row + 2u * C] = zero; }
}

// out [n, 2h, 2w, c] = a [n, h, w, c] repeated 2x2.
@compute @workgroup_size(256)
fn upsample_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % C;
    let t = i / C;
    let x = t % OW;
    let t2 = t / OW;
    let y = t2 % OH;
    let img = t2 / OH;
    out[i] = a[((img * H + y / 2u) * W + x / 2u) * C + ch];
}

// out [n, h, w, c] = sum of the 2x2 block of a = dY [n, 2h, 2w, c].
@compute @workgroup_size(256)
fn upsample_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.total) { return; }
    let ch = i % C;
    let t = i / C;
    let x = t % W;
    let t2 = t / W;
    let y = t2 % H;
    let img = t2 / H;
    let row = OW * C;
    let base = ((img * OH + 2u * y) * OW + 2u * x) * C + ch;
    out[i] = elem(f32(a[base]) + f32(a[base + C]) + f32(a[base + row]) + f32(a[base + row + C]));
}
