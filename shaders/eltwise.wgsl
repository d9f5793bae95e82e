alias elem = f32; // storage type; f16 in the scoring variant

// Element-wise kernels: activations and their derivatives, sums, products with broadcast,
// the Siamese absolute difference, PReLU, batch slicing. One thread per element; the grid is
// two-dimensional so that tensors beyond 65535 * 256 elements still fit one dispatch.
// Loads convert to f32 and stores back to `elem`, so the arithmetic is f32 in both variants.

struct Params {
    n: u32, c: u32, hw: u32, op: u32,
    off: u32, len: u32, alpha: f32, beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> a: array<elem>;
@group(0) @binding(3) var<storage, read> b: array<elem>;
@group(0) @binding(4) var<storage, read> c: array<elem>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// op: 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh
fn activate(op: u32, x: f32) -> f32 {
    if (op == 1u) { return select(0.5 * x, x, x > 0.0); }
    if (op == 2u) { return max(x, 0.0); }
    if (op == 3u) { return 1.0 / (1.0 + exp(-x)); }
    if (op == 4u) { return tanh(x); }
    return x;
}

// Derivative expressed through the output y, which is all these activations need.
fn activate_grad(op: u32, y: f32) -> f32 {
    if (op == 1u) { return select(0.5, 1.0, y > 0.0); }
    if (op == 2u) { return select(0.0, 1.0, y > 0.0); }
    if (op == 3u) { return y * (1.0 - y); }
    if (op == 4u) { return 1.0 - y * y; }
    return 1.0;
}

// out = act(a)
@compute @workgroup_size(256)
fn act_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = elem(activate(p.op, f32(a[i])));
}

// out = b * act'(y = a)
@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = elem(f32(b[i]) * activate_grad(p.op, f32(a[i])));
}

// act_backward and axpby four elements an invocation (n a multiple of 4), as vec4 views of the
// same buffers: on llvmpipe an invocation costs about as much as its loads in these passes.
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<elem>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<elem>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<elem>>;

fn activate_grad4(op: u32, y: vec4<f32>) -> vec4<f32> {
    if (op == 1u) { return select(vec4<f32>(0.5), vec4<f32>(1.0), y > vec4<f32>(0.0)); }
    if (op == 2u) { return select(vec4<f32>(0.0), vec4<f32>(1.0), y > vec4<f32>(0.0)); }
    if (op == 3u) { return y * (1.0 - y); }
    if (op == 4u) { return 1.0 - y * y; }
    return vec4<f32>(1.0);
}

@compute @workgroup_size(256)
fn act_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = index(gid, nwg);
    if (v >= p.n / 4u) { return; }
    out4[v] = vec4<elem>(vec4<f32>(b4[v]) * activate_grad4(p.op, vec4<f32>(a4[v])));
}

@compute @workgroup_size(256)
fn axpby4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = index(gid, nwg);
    if (v >= p.n / 4u) { return; }
    out4[v] = vec4<elem>(p.alpha * vec4<f32>(a4[v]) + p.beta * vec4<f32>(b4[v]));
}

// out = alpha * a + beta * b
@compute @workgroup_size(256)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = elem(p.alpha * f32(a[i]) + p.beta * f32(b[i]));
}

// out = alpha * a * b[0]: a gradient scaled by an upstream scalar gradient that lives on the GPU.
@compute @workgroup_size(256)
fn scale_by_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = elem(p.alpha * f32(a[i]) * f32(b[0]));
}

// out = alpha * b[0] broadcast to n elements (the gradient of a sum or mean).
@compute @workgroup_size(256)
fn fill_from_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = elem(p.alpha * f32(b[0]));
}

// out = a * b, b either the same shape (op 0) or [N, 1, 1, C] broadcast over H x W (op 1).
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    var j = i;
    if (p.op == 1u) {
        let img = i / (p.hw * p.c);
        j = img * p.c + i % p.c;
    }
    out[i] = elem(f32(a[i]) * f32(b[j]));
}

// Siamese difference of a stacked batch [R; D]: out = |a[i] - a[i + len]| for i < len.
@compute @workgroup_size(256)
fn absdiff_halves(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    out[i] = elem(abs(f32(a[i]) - f32(a[i + p.len])));
}

// Its gradient for the stacked input: +-sign(r - d) * g, and exactly 0 where r == d.
@compute @workgroup_size(256)
fn absdiff_halves_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.len) { return; }
    let s = sign(f32(a[i]) - f32(a[i + p.len])) * f32(b[i]);
    out[i] = elem(s);
    out[i + p.len] = elem(-s);
}

// PReLU with one alpha per channel (b = alpha): y = x if x >= 0 else alpha[c] x.
@compute @workgroup_size(256)
fn prelu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let x = f32(a[i]);
    out[i] = elem(select(f32(b[i % p.c]) * x, x, x >= 0.0));
}

// Its input gradient (a = x, b = dy, c = alpha): dy if x >= 0 else alpha[c] dy.
@compute @workgroup_size(256)
fn prelu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let g = f32(b[i]);
    out[i] = elem(select(f32(c[i % p.c]) * g, g, f32(a[i]) >= 0.0));
}

// out = a[i + off]: rows [off, off + n) of a batch (a slice along the outermost axis).
@compute @workgroup_size(256)
fn slice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i + p.off];
}

// The slice's adjoint: out (n elements) = a placed at [off, off + len), zero elsewhere.
@compute @workgroup_size(256)
fn unslice(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    var v = elem(0.0);
    if (i >= p.off && i < p.off + p.len) { v = a[i - p.off]; }
    out[i] = v;
}
