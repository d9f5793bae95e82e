alias elem = f32; // storage type of the model input; f16 in the scoring variant

// uint8 RGB pixels (packed four to a u32, [N, H, W, 3] order) to the model's input
// x = (u8 - 127.5) / 127.5, channels-last `elem`.

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> bytes: array<u32>;

@compute @workgroup_size(256)
fn u8_to_unit(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let word = bytes[i / 4u];
    let byte = (word >> (8u * (i % 4u))) & 0xffu;
    out[i] = elem((f32(byte) - 127.5) / 127.5);
}
