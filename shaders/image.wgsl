alias elem = f32; // storage type of the model input; f16 in the scoring variant

// uint8 RGB pixels (packed four to a u32, [N, H, W, 3] order) to the model's input
// x = (u8 - 127.5) / 127.5, channels-last `elem`.

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> bytes: array<u32>;

// One packed word, four bytes, per invocation: a load per lane costs a CPU driver about as
// much as the arithmetic of the four values.
@compute @workgroup_size(256)
fn u8_to_unit(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let v = gid.x + gid.y * nwg.x * 256u;
    let i = v * 4u;
    if (i >= p.n) { return; }
    let word = bytes[v];
    out[i] = elem((f32(word & 0xffu) - 127.5) / 127.5);
    if (i + 1u < p.n) { out[i + 1u] = elem((f32((word >> 8u) & 0xffu) - 127.5) / 127.5); }
    if (i + 2u < p.n) { out[i + 2u] = elem((f32((word >> 16u) & 0xffu) - 127.5) / 127.5); }
    if (i + 3u < p.n) { out[i + 3u] = elem((f32(word >> 24u) - 127.5) / 127.5); }
}
