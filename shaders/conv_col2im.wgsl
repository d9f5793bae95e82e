// The input gradient of a strided convolution without multiplying the taps that skip a pixel.
// A stride-s filter reaches each input pixel with at most ceil(kh / s) x ceil(kw / s) of its
// taps (one of nine for the model's 3x3 filters at stride 4); a product that walks every tap
// and masks the rest does s * s times the work. Instead:
//   1. filter_rows: the filter W [kh, kw, cin, cout] as rows [cout, kh * kw * cin], so that
//   2. a 1x1 convolution of dY [n, oh, ow, cout] with them (run by the convolution families)
//      gives every tap's contribution, cols [n, oh, ow, kh * kw * cin], with
//      cols[.., (ky * kw + kx) * cin + ci] = sum over co of dY[.., co] * W[ky, kx, ci, co];
//   3. col2im: each dX pixel sums its taps' columns, in order of ky, then kx:
//      dX[img, y, x, ci] = sum of cols[img, oy, ox, (ky * kw + kx) * cin + ci]
//      over y + pad_t = oy * s + ky and x + pad_l = ox * s + kx with 0 <= oy < oh, 0 <= ox < ow.

struct Params {
    // count: filter_rows writes kh * kw * cin * cout elements, col2im `count` pixels of dX
    // starting at image img0 (cols holds that chunk of the batch from its image 0).
    h: u32, w: u32, cin: u32, cout: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    stride: u32, pad_t: u32, pad_l: u32, img0: u32,
    count: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

@compute @workgroup_size(256)
fn filter_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.count) { return; }
    let taps = p.kh * p.kw * p.cin;
    let co = i / taps;
    let k = i - co * taps;
    out[i] = src[k * p.cout + co];
}

// One invocation per dX pixel, all its channels: the index arithmetic once per pixel. The
// first tap writes, later ones add, a pixel no tap reaches gets zeros.
@compute @workgroup_size(256)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let px = gid.x + gid.y * nwg.x * 256u;
    if (px >= p.count) { return; }
    let x = px % p.w;
    let py = px / p.w;
    let y = py % p.h;
    let img = py / p.h;
    let taps = p.kh * p.kw * p.cin;
    let o = (p.img0 * p.h * p.w + px) * p.cin;
    let ys = y + p.pad_t;
    let xs = x + p.pad_l;
    var first = true;
    // ky runs over the taps that land on this row; a larger ky reaches an earlier output row,
    // so past ys every later one is before the image too.
    for (var ky = ys % p.stride; ky < p.kh && ky <= ys; ky += p.stride) {
        let oy = (ys - ky) / p.stride;
        if (oy >= p.oh) { continue; }
        for (var kx = xs % p.stride; kx < p.kw && kx <= xs; kx += p.stride) {
            let ox = (xs - kx) / p.stride;
            if (ox >= p.ow) { continue; }
            let c = ((img * p.oh + oy) * p.ow + ox) * taps + (ky * p.kw + kx) * p.cin;
            if (first) {
                for (var ci = 0u; ci < p.cin; ci++) { out[o + ci] = src[c + ci]; }
                first = false;
            } else {
                for (var ci = 0u; ci < p.cin; ci++) { out[o + ci] += src[c + ci]; }
            }
        }
    }
    if (first) {
        for (var ci = 0u; ci < p.cin; ci++) { out[o + ci] = 0.0; }
    }
}
