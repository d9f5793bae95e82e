// Loss terms over one batch of n standardised scores, each computed by one workgroup:
//   mse       mean((a - b)^2)                   b is the target (a constant)
//   mae       mean(|a - b|)                     the sorter's training loss
//   pearson   1 - clamp(r(a, b), -1, 1)^2
// and their gradients with respect to a, scaled by the upstream scalar gradient g[0].

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;

var<workgroup> s0: array<f32, 256>;
var<workgroup> s1: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

fn reduce3(lid: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            s0[lid] += s0[lid + stride];
            s1[lid] += s1[lid + stride];
            s2[lid] += s2[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn mse_forward(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += 256u) { let d = a[i] - b[i]; s += d * d; }
    s0[lid] = s; s1[lid] = 0.0; s2[lid] = 0.0;
    reduce3(lid);
    if (lid == 0u) { out[0] = s0[0] / f32(p.n); }
}

@compute @workgroup_size(256)
fn mse_backward(@builtin(local_invocation_index) lid: u32) {
    let scale = 2.0 * g[0] / f32(p.n);
    for (var i = lid; i < p.n; i += 256u) { out[i] = scale * (a[i] - b[i]); }
}

@compute @workgroup_size(256)
fn mae_forward(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += 256u) { s += abs(a[i] - b[i]); }
    s0[lid] = s; s1[lid] = 0.0; s2[lid] = 0.0;
    reduce3(lid);
    if (lid == 0u) { out[0] = s0[0] / f32(p.n); }
}

// sign(0) = 0: no gradient where the prediction is exact, as PyTorch's abs.
@compute @workgroup_size(256)
fn mae_backward(@builtin(local_invocation_index) lid: u32) {
    let scale = g[0] / f32(p.n);
    for (var i = lid; i < p.n; i += 256u) { out[i] = scale * sign(a[i] - b[i]); }
}

// Means of a and b, then the centred sums Sab, Saa, Sbb; returns (r, Saa, Sbb, 0) in the
// workgroup arrays' slot 0 of s0, s1, s2.
fn centred_sums(lid: u32) -> vec4<f32> {
    var sa = 0.0;
    var sb = 0.0;
    for (var i = lid; i < p.n; i += 256u) { sa += a[i]; sb += b[i]; }
    s0[lid] = sa; s1[lid] = sb; s2[lid] = 0.0;
    reduce3(lid);
    let ma = s0[0] / f32(p.n);
    let mb = s1[0] / f32(p.n);
    workgroupBarrier();
    var sab = 0.0;
    var saa = 0.0;
    var sbb = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        let da = a[i] - ma;
        let db = b[i] - mb;
        sab += da * db; saa += da * da; sbb += db * db;
    }
    s0[lid] = sab; s1[lid] = saa; s2[lid] = sbb;
    reduce3(lid);
    return vec4<f32>(s0[0], s1[0], s2[0], 0.0) ;
}

@compute @workgroup_size(256)
fn pearson_forward(@builtin(local_invocation_index) lid: u32) {
    let s = centred_sums(lid);
    let r = s.x / sqrt(s.y * s.z);
    if (lid == 0u) { let rc = clamp(r, -1.0, 1.0); out[0] = 1.0 - rc * rc; }
}

// d(1 - r^2)/da_i = -2 r dr/da_i, dr/da_i = (b_i - mb) / sqrt(Saa Sbb) - r (a_i - ma) / Saa;
// zero where the clamp is active, as for any clamp.
@compute @workgroup_size(256)
fn pearson_backward(@builtin(local_invocation_index) lid: u32) {
    var sa = 0.0;
    var sb = 0.0;
    for (var i = lid; i < p.n; i += 256u) { sa += a[i]; sb += b[i]; }
    s0[lid] = sa; s1[lid] = sb; s2[lid] = 0.0;
    reduce3(lid);
    let ma = s0[0] / f32(p.n);
    let mb = s1[0] / f32(p.n);
    workgroupBarrier();
    var sab = 0.0;
    var saa = 0.0;
    var sbb = 0.0;
    for (var i = lid; i < p.n; i += 256u) {
        let da = a[i] - ma;
        let db = b[i] - mb;
        sab += da * db; saa += da * da; sbb += db * db;
    }
    s0[lid] = sab; s1[lid] = saa; s2[lid] = sbb;
    reduce3(lid);
    let denom = sqrt(s1[0] * s2[0]);
    let r = s0[0] / denom;
    var k = -2.0 * r * g[0];
    if (r > 1.0 || r < -1.0) { k = 0.0; }
    for (var i = lid; i < p.n; i += 256u) {
        out[i] = k * ((b[i] - mb) / denom - r * (a[i] - ma) / s1[0]);
    }
}
