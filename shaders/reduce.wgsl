alias elem = f32; // storage type of x, y and out; f16 in the scoring variant

// Column reductions of a [G, R, C] tensor to [G, C]: sums over the R rows of each column.
// Long reductions are split: a pass writes per-slice partial sums [G, S, C], which are reduced
// again (R = S) until one slice remains; the last pass applies the scale (1/R for means).
// MODE chooses the summand, so that batch-norm statistics, bias gradients, spatial means,
// broadcast-product gradients and squared norms all share one kernel:
//   0 x    1 (x - m[c])^2    2 x * y    3 x * (y - m[c])    4 x^2    5 x * y where y < 0 (PReLU alpha)
// Sums are f32 in both variants; only the stored values are `elem`.

override MODE: u32 = 0u;

struct Params {
    g: u32, r: u32, c: u32, rows_per_wg: u32,
    splits: u32, scale: f32, cw: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<elem>;
@group(0) @binding(2) var<storage, read> x: array<elem>;
@group(0) @binding(3) var<storage, read> y: array<elem>;
@group(0) @binding(4) var<storage, read> m: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn summand(i: u32, col: u32) -> f32 {
    let v = f32(x[i]);
    if (MODE == 1u) { let d = v - m[col]; return d * d; }
    if (MODE == 2u) { return v * f32(y[i]); }
    if (MODE == 3u) { return v * (f32(y[i]) - m[col]); }
    if (MODE == 4u) { return v * v; }
    if (MODE == 5u) { let u = f32(y[i]); return select(0.0, v * u, u < 0.0); }
    return v;
}

// A workgroup covers CW = p.cw adjacent columns (a power of two, at most 256) and 256 / CW
// rows at a time, so that neighbouring threads read neighbouring addresses of the channels-last
// tensor (one column per workgroup would read one float per cache line). Threads sharing a
// column are then combined by a tree in workgroup memory.
@compute @workgroup_size(256)
fn reduce_cols(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let split = wid.x;
    let cw = p.cw;
    let col = wid.y * cw + (lid & (cw - 1u));
    let row_lanes = 256u / cw;
    let grp = wid.z;
    let row0 = split * p.rows_per_wg;
    let row1 = min(row0 + p.rows_per_wg, p.r);
    var s = 0.0;
    if (col < p.c) {
        for (var row = row0 + lid / cw; row < row1; row += row_lanes) {
            s += summand((grp * p.r + row) * p.c + col, col);
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride >= cw; stride >>= 1u) {
        if (lid < stride) { partial[lid] += partial[lid + stride]; }
        workgroupBarrier();
    }
    if (lid < cw && col < p.c) {
        out[(grp * p.splits + split) * p.c + col] = elem(partial[lid] * p.scale);
    }
}

// Adds the slices of split-K partial products: out[i] = sum_s x[s * c + i] for s < r
// (r = number of slices, c = slice length).
@compute @workgroup_size(256)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.c) { return; }
    var s = 0.0;
    for (var k = 0u; k < p.r; k++) { s += f32(x[k * p.c + i]); }
    out[i] = elem(s);
}
