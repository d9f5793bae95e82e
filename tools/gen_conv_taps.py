#!/usr/bin/env python3
"""Writes shaders/conv_taps.wgsl and shaders/conv_taps_dw.wgsl: convolutions with few input
channels (the encoder's first 5x5 layers, and the decoder's stride-4 layer) written out tap by
tap, forward (every weight read at a constant offset of its uniform window) and weight
gradient.

    python3 tools/gen_conv_taps.py           rewrite them in place
    python3 tools/gen_conv_taps.py --check   exit 1 if a file differs from this output

Why written out: llvmpipe turns a uniform-buffer load into one load and a broadcast only
when its offset is built from constants (`nir_src_is_always_uniform`); an offset that runs
with a loop counter is a gather over the 8 lanes of a 256-bit vector, one per component.
With every tap and channel unrolled, each weight vec4 sits at a constant offset, and each
input value an invocation gathers serves every tap of a run of adjacent output pixels.

Forward: each invocation computes a run of R adjacent output pixels of one row and the 4 x N4
output channels of one block. Sums run over k = (ky, kx, ci) in 16-deep blocks added to the
total, as in conv.wgsl and conv_uniform.wgsl, so the results equal theirs to the bit: a
training forward (whose gradient reads the side of an activation's kink a value falls on)
may run here. `UP_DIFF_CONFIGS` adds scoring entry points that read their input, the
decoder's concatenation, from the two tensors it is built from. The weight gradient is
described in DW_HEADER.
"""
import os
import sys

SHADER = os.path.join(os.path.dirname(__file__), "..", "shaders", "conv_taps.wgsl")
DW_SHADER = os.path.join(os.path.dirname(__file__), "..", "shaders", "conv_taps_dw.wgsl")
UNIFORM_SHADER = os.path.join(os.path.dirname(__file__), "..", "shaders", "conv_uniform.wgsl")
BK = 16

# (input channels, filter size, vec4 output channels per dispatch, pixels per invocation[,
# stride]): the encoder's 5x5 layers on 3 and 8 channels, at the runs that measured fastest
# on llvmpipe and one shorter, and the decoder's 3x3 stride-4 layer on 24 channels. The module
# is parsed whole whenever one of its kernels is built, so it holds these, not every
# combination. src/ops/conv/taps.rs `KERNELS` lists the same.
CONFIGS = [
    (3, 5, 1, 4),
    (3, 5, 1, 8),
    (3, 5, 2, 4),
    (3, 5, 2, 8),
    (8, 5, 2, 4),
    (8, 5, 4, 4),
    (24, 3, 8, 2, 4),
]

# Kernels of one vec4 block whose sums are vec3: layers of at most 3 output channels
# (`enc.conv0`, 3 -> 3), which otherwise multiply a fourth channel that is never stored; llvmpipe
# runs each vec4 operation as four 8-lane instructions and a vec3 one as three. (input channels,
# filter size, pixels per invocation), each the twin of a CONFIGS entry with one vec4 block.
THREE_LANE_CONFIGS = [
    (3, 5, 8),
]

# Scoring entry points whose input is the decoder's concatenation [up(low), |f(R) - f(D)|],
# read from its two sources instead of from the built tensor: (channels of the upsampled
# half, channels of the difference, filter size, vec4 output channels, pixels per invocation,
# stride). `dec.down0` reads 9 of every 16 pixels of its 288x288x24 input, which then is
# never written.
UP_DIFF_CONFIGS = [
    (16, 8, 3, 8, 2, 4),
]

HEADER = """\
// Written by tools/gen_conv_taps.py; edit that, not this file.
//
// Convolutions with few input channels, written out tap by tap (forward only, NHWC
// activations, the weights packed by conv_uniform.wgsl's pack_weights in blocks of N4 vec4
// columns; the window bound for a dispatch starts at block b0, whose row k = (ky, kx, ci) is
// at wts[k * N4 + j]: output channels b0 * 4 * N4 + 4j ..). Every weight load has a constant
// offset, which llvmpipe reads once and broadcasts (an offset that runs with a loop counter
// is a gather per lane). An invocation owns a run of R adjacent output pixels of one row and
// the block's output channels; each input value it gathers serves each tap that reaches it.
// Sums run over k in 16-deep blocks added to the total, as in conv.wgsl, so results equal the
// direct and uniform kernels' to the bit. Entry points: conv_taps_c{CIN}_k{K}[_s{STRIDE}]
// _n{N4}_r{R}[_lanes3] (the last: vec3 sums, for at most 3 output channels), and for
// scoring conv_taps_up{C1}_diff{C2}_k{K}[_s{STRIDE}]_n{N4}_r{R}, whose
// input is the decoder's concatenation [up(low), |f(R) - f(D)|] of C1 + C2 channels read
// from low (`a_src`, half the height and width) and the stacked features (`feat`).

override ACT: u32 = 0u;        // 0 none, 1 leaky ReLU(0.5), 2 ReLU, 3 sigmoid, 4 tanh

const WG: u32 = 64u;
const WINDOW: u32 = 4096u;

// conv_uniform.wgsl's parameter block, field for field.
"""


def uniform_source(start, end):
    """shaders/conv_uniform.wgsl from the line starting `start` through the next line that
    is `end`: the declarations these kernels share with it, copied rather than restated."""
    with open(UNIFORM_SHADER) as f:
        text = f.read()
    a = text.index("\n" + start) + 1
    b = text.index("\n" + end + "\n", a) + len(end) + 2
    return text[a:b]


def name(cin, k, n4, r, stride=1, split=None, lanes=4):
    s = f"_s{stride}" if stride > 1 else ""
    c = f"up{split[0]}_diff{split[1]}" if split else f"c{cin}"
    three = "_lanes3" if lanes == 3 else ""
    return f"conv_taps_{c}_k{k}{s}_n{n4}_r{r}{three}"


def input_load(cin, ky, c, ci, split):
    """The WGSL expression of input channel ci at column c of the run in filter row ky: a
    load of the activation, or with `split` = (c1, c2), channel ci of [up(low), |f(R) -
    f(D)|] from its sources (`a_src` holds low, `feat` the stacked features)."""
    ok = f"ok{ky}_{c}_{ci}"
    if not split:
        return (
            f"select(0.0, a_src[select(0u, (rb{ky} + u32(ix0 + {c})) * {cin}u + {ci}u, {ok})], "
            f"{ok})"
        )
    c1, c2 = split
    if ci < c1:
        at = f"(lrb{ky} + u32(ix0 + {c}) / 2u) * {c1}u + {ci}u"
        return f"select(0.0, a_src[select(0u, {at}, {ok})], {ok})"
    at = f"select(0u, (rb{ky} + u32(ix0 + {c})) * {c2}u + {ci - c1}u, {ok})"
    return f"select(0.0, abs(feat[{at}] - feat[{at} + d_half]), {ok})"


def kernel(cin, k, n4, r, stride=1, split=None, lanes=4):
    """`lanes` 3: one block whose sums are vec3, for at most 3 output channels."""
    # Pixel ri's tap kx reads input column ri * stride + kx of the run's first.
    cols = sorted({ri * stride + kx for ri in range(r) for kx in range(k)})
    vec = f"vec{lanes}<f32>"
    pick = ".xyz" if lanes == 3 else ""
    o = []
    e = o.append
    e("")
    e("@compute @workgroup_size(WG)")
    e(f"fn {name(cin, k, n4, r, stride, split, lanes)}(@builtin(local_invocation_index) lid: u32,")
    e("        @builtin(workgroup_id) wid: vec3<u32>,")
    e("        @builtin(num_workgroups) nwg: vec3<u32>) {")
    e(f"    let runs = (p.ow + {r - 1}u) / {r}u;")
    e("    let t = (wid.y + wid.z * nwg.y) * WG + lid;")
    e("    let live = t < p.n * p.oh * runs;")
    e("    let tt = select(0u, t, live);")
    e("    let row = tt / runs;")
    e(f"    let ox0 = (tt - row * runs) * {r}u;")
    e("    let img = row / p.oh;")
    e(f"    let iy_top = i32((row - img * p.oh) * {stride}u) - i32(p.pad_t);")
    e(f"    let ix0 = i32(ox0 * {stride}u) - i32(p.pad_l);")
    if split:
        # The distorted images' features follow the references' (p.n pairs).
        e(f"    let d_half = p.n * p.h * p.w * {split[1]}u;")
    for c in cols:
        e(f"    let cok{c} = live && ix0 + {c} >= 0 && ix0 + {c} < i32(p.w);")
    for ri in range(r):
        for j in range(n4):
            e(f"    var acc{ri}_{j} = {vec}(0.0);")
            e(f"    var blk{ri}_{j} = {vec}(0.0);")
    fill = 0
    kk = 0
    for ky in range(k):
        e(f"    // filter row {ky}")
        e(f"    let iy{ky} = iy_top + {ky};")
        e(f"    let rok{ky} = iy{ky} >= 0 && iy{ky} < i32(p.h);")
        e(f"    let rb{ky} = (img * p.h + u32(max(iy{ky}, 0))) * p.w;")
        if split:
            e(f"    let lrb{ky} = (img * (p.h / 2u) + u32(max(iy{ky}, 0)) / 2u) * (p.w / 2u);")
        loaded = set()
        for kx in range(k):
            for ci in range(cin):
                for ri in range(r):
                    c = ri * stride + kx
                    if (c, ci) not in loaded:
                        loaded.add((c, ci))
                        v = f"a{ky}_{c}_{ci}"
                        e(f"    let ok{ky}_{c}_{ci} = rok{ky} && cok{c};")
                        e(f"    let {v} = {vec}({input_load(cin, ky, c, ci, split)});")
                for j in range(n4):
                    e(f"    let w{kk}_{j} = wts[{kk * n4 + j}]{pick};")
                    for ri in range(r):
                        a = f"a{ky}_{ri * stride + kx}_{ci}"
                        e(f"    blk{ri}_{j} = fma({a}, w{kk}_{j}, blk{ri}_{j});")
                kk += 1
                fill += 1
                if fill == BK:
                    fill = 0
                    for ri in range(r):
                        for j in range(n4):
                            e(f"    acc{ri}_{j} += blk{ri}_{j};")
                            e(f"    blk{ri}_{j} = {vec}(0.0);")
    if fill:
        for ri in range(r):
            for j in range(n4):
                e(f"    acc{ri}_{j} += blk{ri}_{j};")
    e("    // bias, activation and the folded batch norm, as conv_uniform's epilogue")
    e(f"    let n0 = p.b0 * {4 * n4}u;")
    for ri in range(r):
        e(f"    if (live && ox0 + {ri}u < p.ow) {{")
        e(f"        let m{ri} = row * p.ow + ox0 + {ri}u;")
        for j in range(n4):
            for c in range(lanes):
                nn = j * 4 + c
                e(f"        if (n0 + {nn}u < p.gn) {{")
                e(f"            var v = acc{ri}_{j}[{c}];")
                e(f"            if (p.has_bias != 0u) {{ v += bias[n0 + {nn}u]; }}")
                e("            v = activate(v);")
                e(f"            if (p.has_bn != 0u) {{ v = v * bn[n0 + {nn}u] + bn[p.gn + n0 + {nn}u]; }}")
                e(f"            out[m{ri} * p.gn + n0 + {nn}u] = v;")
                e("        }")
        e("    }")
    e("}")
    return o


# Weight gradients: (input channels of one dispatch, filter size, vec4 output channels per
# dispatch, pixels per step). The layer's input channels may be several groups of these.
DW_CONFIGS = [
    (3, 5, 1, 4),
    (3, 5, 2, 4),
    (4, 5, 2, 4),
]

DW_HEADER = """\
// Written by tools/gen_conv_taps.py; edit that, not this file.
//
// Weight gradients of stride-1 convolutions with few input channels, written out tap by tap:
// dW[ky, kx, ci, co] = sum over pixels of X(img, oy + ky - pt, ox + kx - pl, ci) dY(img, oy,
// ox, co). An invocation owns one filter row ky, CG input channels (from k0) and N4 vec4
// output channels (block b0), and walks k_chunk output rows from row r0 = its index / KH,
// R pixels a step: it gathers the step's R + K - 1 input columns and R pixels of dY once,
// and every product of them lands in one of its K * CG * N4 vec4 sums, held in registers.
// Each invocation writes its sums to its own slice of `out` ([slices, kh * kw * cin, cout],
// the filter's layout per slice); a column reduction adds the slices. Sums of gradients reach
// no kink of the forward pass, so their order is free. Entry points:
// conv_taps_dw_c{CG}_k{K}_n{N4}_r{R}.

const WG: u32 = 64u;

// conv_uniform.wgsl's parameter block, field for field.
{params}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
"""


def dw_name(cg, k, n4, r):
    return f"conv_taps_dw_c{cg}_k{k}_n{n4}_r{r}"


def dw_kernel(cg, k, n4, r):
    cols = r + k - 1
    o = []
    e = o.append
    e("")
    e("@compute @workgroup_size(WG)")
    e(f"fn {dw_name(cg, k, n4, r)}(@builtin(local_invocation_index) lid: u32,")
    e("        @builtin(workgroup_id) wid: vec3<u32>,")
    e("        @builtin(num_workgroups) nwg: vec3<u32>) {")
    e("    let t = (wid.y + wid.z * nwg.y) * WG + lid;")
    e("    let bands = (p.n * p.oh + p.k_chunk - 1u) / p.k_chunk;")
    e(f"    let live = t < bands * {k}u;")
    e("    let tt = select(0u, t, live);")
    e(f"    let band = tt / {k}u;")
    e(f"    let ky = tt - band * {k}u;")
    e(f"    let n0 = p.b0 * {4 * n4}u;")
    e("    let c0 = p.k0;")
    for kx in range(k):
        for ci in range(cg):
            for j in range(n4):
                e(f"    var s{kx}_{ci}_{j} = vec4<f32>(0.0);")
    # dY columns beyond cout read as zero
    for j in range(n4):
        for c in range(4):
            e(f"    let nok{j}_{c} = n0 + {j * 4 + c}u < p.gn;")
    e("    let row_end = min((band + 1u) * p.k_chunk, p.n * p.oh);")
    e("    for (var row = band * p.k_chunk; row < row_end; row++) {")
    e("        let img = row / p.oh;")
    e("        let iy = i32(row - img * p.oh) + i32(ky) - i32(p.pad_t);")
    e("        let rok = live && iy >= 0 && iy < i32(p.h);")
    e("        let xrow = (img * p.h + u32(max(iy, 0))) * p.w;")
    e("        let drow = row * p.ow;")
    e(f"        for (var ox0 = 0u; ox0 < p.ow; ox0 += {r}u) {{")
    e("            let ix0 = i32(ox0) - i32(p.pad_l);")
    for ri in range(r):
        e(f"            let pok{ri} = live && ox0 + {ri}u < p.ow;")
        e(f"            let pd{ri} = select(0u, (drow + ox0 + {ri}u) * p.gn + n0, pok{ri});")
        for j in range(n4):
            comps = ", ".join(
                f"select(0.0, dy[pd{ri} + {j * 4 + c}u], pok{ri} && nok{j}_{c})" for c in range(4)
            )
            e(f"            let d{ri}_{j} = vec4<f32>({comps});")
    for c in range(cols):
        e(f"            let cok{c} = rok && ix0 + {c} >= 0 && ix0 + {c} < i32(p.w);")
        e(f"            let xb{c} = select(0u, (xrow + u32(ix0 + {c})) * p.cin + c0, cok{c});")
        for ci in range(cg):
            e(f"            let a{c}_{ci} = vec4<f32>(select(0.0, x[xb{c} + {ci}u], cok{c}));")
    for ri in range(r):
        for kx in range(k):
            for ci in range(cg):
                for j in range(n4):
                    e(f"            s{kx}_{ci}_{j} = fma(a{ri + kx}_{ci}, d{ri}_{j}, s{kx}_{ci}_{j});")
    e("        }")
    e("    }")
    e("    if (!live) { return; }")
    e("    // Slice `band` of the filter layout: row (ky, kx, c0 + ci), columns n0 ..")
    e("    let slice = band * p.kh * p.kw * p.cin;")
    for kx in range(k):
        for ci in range(cg):
            e(f"    let o{kx}_{ci} = (slice + (ky * {k}u + {kx}u) * p.cin + c0 + {ci}u) * p.gn + n0;")
            for j in range(n4):
                for c in range(4):
                    e(f"    if (nok{j}_{c}) {{ out[o{kx}_{ci} + {j * 4 + c}u] = s{kx}_{ci}_{j}[{c}]; }}")
    e("}")
    return o


def render():
    # The parameter block, bindings and `activate` of conv_uniform.wgsl, whose packed weights
    # and launch parameters these kernels take.
    header = HEADER + uniform_source("struct Params {", "}") + "\n"
    header += uniform_source("@group(0) @binding(0)", "}")
    lines = header.rstrip("\n").split("\n")
    lines.append("")
    lines.append("// The stacked features [R; D] of the up-and-difference entry points.")
    lines.append("@group(0) @binding(6) var<storage, read> feat: array<f32>;")
    for cfg in CONFIGS:
        lines += kernel(*cfg)
    for cin, k, r in THREE_LANE_CONFIGS:
        lines += kernel(cin, k, 1, r, lanes=3)
    for c1, c2, k, n4, r, stride in UP_DIFF_CONFIGS:
        lines += kernel(c1 + c2, k, n4, r, stride, (c1, c2))
    return "\n".join(lines) + "\n"


def render_dw():
    header = DW_HEADER.replace("{params}", uniform_source("struct Params {", "}").rstrip("\n"))
    lines = header.rstrip("\n").split("\n")
    for cfg in DW_CONFIGS:
        lines += dw_kernel(*cfg)
    return "\n".join(lines) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    for path, text in [(SHADER, render()), (DW_SHADER, render_dw())]:
        if check:
            with open(path) as f:
                if f.read() != text:
                    print(f"{path} differs from tools/gen_conv_taps.py's output", file=sys.stderr)
                    sys.exit(1)
        else:
            with open(path, "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
