// Batch normalisation over the rows of a channels-last [R, C] tensor (R = N*H*W), applied
// after the activation as the model specifies. Statistics (mean, biased variance, and the
// backward's two sums) come from reduce.wgsl; these kernels apply them.
//   normalize        y  = (x - mean) / sqrt(var + eps) * gamma + beta        (aux1 = beta)
//                    (normalize4, backward4: the same, four channels per invocation)
//   backward         dx = gamma * istd * (dy - sum_dy / R - xhat * sum(dy * xhat) / R)
//                    with aux1 = sum(dy), aux2 = sum(dy * (x - mean)), xhat = (x - mean) * istd
//   backward_eval    dx = dy * gamma * istd  (running statistics are constants)
//   gamma_grad       dgamma = istd * sum(dy * (x - mean))      (per channel, n = C)
//   fold             out = [gamma * istd; beta - mean * gamma * istd]  (per channel, n = C;
//                    aux1 = beta): the evaluation-mode norm as an affine map, which the
//                    scoring forward pass applies in the convolution's epilogue

struct Params {
    n: u32, c: u32, rows: u32, _p0: u32,
    eps: f32, _p1: u32, _p2: u32, _p3: u32,
}

// The channel count is fixed per pipeline (an override constant) so that `i % C` is a
// multiply on CPU drivers rather than a scalar division per lane (see pool.wgsl).
override C: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> var_: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> aux1: array<f32>;
@group(0) @binding(8) var<storage, read> aux2: array<f32>;

// The same buffers as vec4, for channel counts that are multiples of 4: four channels of one
// row per invocation. llvmpipe spends about as long per invocation as on its loads here, so
// four elements an invocation roughly halve these passes; each lane's arithmetic is the scalar
// kernel's, so the results are the same.
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mean4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> var4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> gamma4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> aux14: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> aux24: array<vec4<f32>>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn bn_normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % C;
    out[i] = (x[i] - mean[ch]) * inverseSqrt(var_[ch] + p.eps) * gamma[ch] + aux1[ch];
}

@compute @workgroup_size(256)
fn bn_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % C;
    let istd = inverseSqrt(var_[ch] + p.eps);
    let inv_r = 1.0 / f32(p.rows);
    let xhat = (x[i] - mean[ch]) * istd;
    let sum_dy_xhat = aux2[ch] * istd;
    out[i] = gamma[ch] * istd * (dy[i] - aux1[ch] * inv_r - xhat * sum_dy_xhat * inv_r);
}

@compute @workgroup_size(256)
fn bn_normalize4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = index(gid, nwg);
    if (v >= p.n / 4u) { return; }
    let ch = v % (C / 4u);
    out4[v] = (x4[v] - mean4[ch]) * inverseSqrt(var4[ch] + p.eps) * gamma4[ch] + aux14[ch];
}

@compute @workgroup_size(256)
fn bn_backward4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = index(gid, nwg);
    if (v >= p.n / 4u) { return; }
    let ch = v % (C / 4u);
    let istd = inverseSqrt(var4[ch] + p.eps);
    let inv_r = 1.0 / f32(p.rows);
    let xhat = (x4[v] - mean4[ch]) * istd;
    let sum_dy_xhat = aux24[ch] * istd;
    out4[v] = gamma4[ch] * istd * (dy4[v] - aux14[ch] * inv_r - xhat * sum_dy_xhat * inv_r);
}

@compute @workgroup_size(256)
fn bn_backward_eval(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % C;
    out[i] = dy[i] * gamma[ch] * inverseSqrt(var_[ch] + p.eps);
}

@compute @workgroup_size(256)
fn bn_gamma_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = aux2[i] * inverseSqrt(var_[i] + p.eps);
}

@compute @workgroup_size(256)
fn bn_fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let scale = gamma[i] * inverseSqrt(var_[i] + p.eps);
    out[i] = scale;
    out[p.n + i] = aux1[i] - mean[i] * scale;
}
