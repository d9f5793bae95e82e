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

@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.rows * p.count) { return; }
    let r = i / p.count;
    let c = i - r * p.count;
    out[r * p.dst_c + p.dst_off + c] = a[r * p.src_c + p.src_off + c];
}
