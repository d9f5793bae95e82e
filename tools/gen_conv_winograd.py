#!/usr/bin/env python3
"""Writes the Winograd product kernels of shaders/conv_winograd.wgsl (three forward and input
gradient kernels, two weight gradient kernels), everything from the line
"// F(2x2, 3x3) written out," to the end (the part above it is written by hand), and all of
shaders/conv_winograd_subgroup.wgsl: the three forward and input gradient kernels and the two
weight gradient kernels again, with the U loads shared through 8-wide subgroups, beside the
declarations they use (copied from conv_winograd.wgsl).

    python3 tools/gen_conv_winograd.py           rewrite them in place
    python3 tools/gen_conv_winograd.py --check   exit 1 if a file differs from this output

Every value is a named local and every transform is written out: llvmpipe keeps a local array
indexed in a loop on the stack, one access per use, and the loop form of these kernels ran
0.6-0.9x as fast. The override constants TT (tiles per invocation, up to TT_MAX; F(4x4, 3x3)
is written for one) and TN4 (vec4 output channels, up to the kernel's maximum) select which
of the written-out blocks run; the rest is removed when the pipeline is specialised.
"""
import os
import sys

TT_MAX = 4
SHADER = os.path.join(os.path.dirname(__file__), "..", "shaders", "conv_winograd.wgsl")
SUBGROUP_SHADER = os.path.join(
    os.path.dirname(__file__), "..", "shaders", "conv_winograd_subgroup.wgsl"
)
# The subgroup width the shared U loads are written for (llvmpipe's on 256-bit vectors).
LANES = 8
MARKER = "// F(2x2, 3x3) written out,"


def ceil_div(a, b):
    return -(-a // b)


def level(c, a, m):
    """The first tile (0-based) whose input columns include column c."""
    return max(0, ceil_div(c - a + 1, m))


def input_transform(a, d):
    """The rows of B^T applied to the ALPHA values d(0) .. d(ALPHA - 1)."""
    if a == 4:
        return [f"{d(0)} - {d(2)}", f"{d(1)} + {d(2)}", f"{d(2)} - {d(1)}", f"{d(1)} - {d(3)}"]
    return [
        f"fma(4.0, {d(0)}, fma(-5.0, {d(2)}, {d(4)}))",
        f"fma(-4.0, {d(1)} + {d(2)}, {d(3)} + {d(4)})",
        f"fma(4.0, {d(1)} - {d(2)}, {d(4)} - {d(3)})",
        f"fma(2.0, {d(3)} - {d(1)}, {d(4)} - {d(2)})",
        f"fma(2.0, {d(1)} - {d(3)}, {d(4)} - {d(2)})",
        f"fma(4.0, {d(1)}, fma(-5.0, {d(3)}, {d(5)}))",
    ]


def kernel(name, a, m, tn4_max, tt_max, header, shared=False):
    """`shared`: the U loads shared through subgroups of LANES invocations. Invocation `lane`
    loads transform points lane, lane + LANES, ... of each vec4 column, and
    subgroupBroadcast, whose lane must be a constant, hands each point to the others."""
    a2 = a * a
    nc = m * (tt_max - 1) + a
    out = header[:]
    out.append("@compute @workgroup_size(WG)")
    out.append(f"fn {name}(@builtin(local_invocation_index) lid: u32,")
    pad = " " * (len(name) + 4)
    out.append(f"{pad}@builtin(workgroup_id) wid: vec3<u32>,")
    if shared:
        out.append(f"{pad}@builtin(num_workgroups) nwg: vec3<u32>,")
        out.append(f"{pad}@builtin(subgroup_invocation_id) lane: u32) {{")
    else:
        out.append(f"{pad}@builtin(num_workgroups) nwg: vec3<u32>) {{")
    # Prologue: the invocation's row of TT tiles, and per input row and column whether it
    # lies in the image (outside it reads element 0 and discards it).
    out.append("    let s_raw = (wid.y + wid.z * nwg.y) * WG + lid;")
    out.append("    let live = s_raw < p.tiles;")
    out.append("    let s = select(0u, s_raw, live);")
    out.append("    let plane = p.tiles_y * p.runs_x;")
    out.append("    let img = s / plane;")
    out.append("    let rem = s - img * plane;")
    out.append("    let ty = rem / p.runs_x;")
    out.append("    let tx = (rem - ty * p.runs_x) * TT;")
    out.append(f"    let y0 = i32(ty * {m}u) - i32(p.pad_t);")
    out.append(f"    let x0 = i32(tx * {m}u) - i32(p.pad_l);")
    out.append("    let row = (img * p.sh + u32(y0)) * p.sw + u32(x0);")
    # Tile t of the run is computed where TT > t; where the last run of a row overhangs it,
    # store_tile's bounds test drops the pixels past the row's end.
    out.append("    let live0 = live;")
    for t in range(1, tt_max):
        out.append(f"    let live{t} = live && TT > {t}u;")
    for r in range(a):
        out.append(f"    let ry{r} = live && y0 + {r} >= 0 && y0 + {r} < i32(p.sh);")
    for c in range(nc):
        out.append(f"    let cx{c} = x0 + {c} >= 0 && x0 + {c} < i32(p.sw);")
    for r in range(a):
        for c in range(nc):
            out.append(f"    let k{r}_{c} = ry{r} && cx{c};")
            out.append(
                f"    let o{r}_{c} = select(0u, (row + {r}u * p.sw + {c}u) * p.sc, k{r}_{c});"
            )
    for t in range(tt_max):
        for j in range(tn4_max):
            for xi in range(a2):
                out.append(f"    var a{t}{j}_{xi} = vec4<f32>(0.0);")
    for c in range(nc):
        if level(c, a, m) > 0:
            for u in range(a):
                out.append(f"    var e{u}_{c} = 0.0;")
    for t in range(1, tt_max):
        for xi in range(a2):
            out.append(f"    var v{t}_{xi} = 0.0;")
    out.append("    var wrow = wid.x * p.kp * TN4;")
    out.append("    for (var ch = p.c0; ch < p.c1; ch++) {")
    ind = "        "
    # Columns: loads and B^T (rows combined), grouped by the first tile that needs them.
    out.append(f"{ind}// Each input column once: its loads and B^T d (rows combined).")
    for lv in range(tt_max):
        cols = [c for c in range(nc) if level(c, a, m) == lv]
        if not cols:
            continue
        i2 = ind
        if lv > 0:
            out.append(f"{ind}if (TT > {lv}u) {{")
            i2 = ind + "    "
        decl = "let " if lv == 0 else ""
        for c in cols:
            for r in range(a):
                out.append(f"{i2}let d{r}_{c} = select(0.0, src[o{r}_{c} + ch], k{r}_{c});")
            exprs = input_transform(a, lambda r: f"d{r}_{c}")
            for u in range(a):
                out.append(f"{i2}{decl}e{u}_{c} = {exprs[u]};")
        if lv > 0:
            out.append(f"{ind}}}")
    # Tiles: (B^T d) B (columns combined).
    out.append(f"{ind}// Each tile: (B^T d) B (columns combined).")
    for t in range(tt_max):
        i2 = ind
        if t > 0:
            out.append(f"{ind}if (TT > {t}u) {{")
            i2 = ind + "    "
        decl = "let " if t == 0 else ""
        for u in range(a):
            exprs = input_transform(a, lambda w, u=u: f"e{u}_{t * m + w}")
            for w in range(a):
                out.append(f"{i2}{decl}v{t}_{u * a + w} = {exprs[w]};")
        if t > 0:
            out.append(f"{ind}}}")
    # Products: each shared U vec4 loaded once, used by every tile.
    if shared:
        out.append(f"{ind}// Each U vec4 loaded by one lane and broadcast, multiplied into every")
        out.append(f"{ind}// tile's sums.")
    else:
        out.append(f"{ind}// Each U vec4 loaded once and multiplied into every tile's sums.")
    for j in range(tn4_max):
        i2 = ind
        if j >= 1:
            out.append(f"{ind}if (TN4 > {j}u) {{")
            i2 = ind + "    "
        if shared:
            # The last group's lanes past ALPHA^2 read the next rows (clamped at the
            # window's end); nothing broadcasts them.
            for h in range(ceil_div(a2, LANES)):
                out.append(
                    f"{i2}let w{j}_{h} = wts[wrow + (lane + {h * LANES}u) * TN4 + {j}u];"
                )
        for xi in range(a2):
            if shared:
                out.append(
                    f"{i2}let u{j}_{xi} = subgroupBroadcast(w{j}_{xi // LANES}, {xi % LANES}u);"
                )
            else:
                out.append(f"{i2}let u{j}_{xi} = wts[wrow + {xi}u * TN4 + {j}u];")
            out.append(f"{i2}a0{j}_{xi} = fma(vec4<f32>(v0_{xi}), u{j}_{xi}, a0{j}_{xi});")
        for t in range(1, tt_max):
            out.append(f"{i2}if (TT > {t}u) {{")
            for xi in range(a2):
                out.append(f"{i2}    a{t}{j}_{xi} = fma(vec4<f32>(v{t}_{xi}), u{j}_{xi}, a{t}{j}_{xi});")
            out.append(f"{i2}}}")
        if j >= 1:
            out.append(f"{ind}}}")
    out.append(f"        wrow += {a2}u * TN4;")
    out.append("    }")
    out.append("    let block = p.b0 + wid.x;")
    for t in range(tt_max):
        for j in range(tn4_max):
            conds = []
            if t >= 1:
                conds.append(f"TT > {t}u")
            if j >= 1:
                conds.append(f"TN4 > {j}u")
            out.append(f"    if ({' && '.join(conds)}) {{" if conds else "    {")
            acc = lambda i, t=t, j=j: f"a{t}{j}_{i}"
            emit_out(out, "        ", a, m, t, j, acc)
            out.append("    }")
    out.append("}")
    return out


def dw_kernel(name, a, tn4_max, header, shared=False):
    """The weight gradient's products: each invocation owns CT = 2 input channels and sums,
    over the window's tiles of its workgroup's slice, B^T d B of each channel's ALPHA x ALPHA
    input tile times the tile's U = A dY A^T (one load for both channels), for TN4 vec4
    columns of output channels. A tile continuing its row takes its first ALPHA - 2 columns
    (loads and B^T d) from the tile before it. `shared`: the U loads go through subgroups of
    LANES invocations as in `kernel`, and invocations past the last channel stay to the end
    (a broadcast needs its whole subgroup), their loads and stores switched off."""
    a2 = a * a
    ct = 2
    keep = a - 2
    out = header[:]
    out.append("@compute @workgroup_size(WG)")
    out.append(f"fn {name}(@builtin(local_invocation_index) lid: u32,")
    pad = " " * (len(name) + 4)
    if shared:
        out.append(f"{pad}@builtin(workgroup_id) wid: vec3<u32>,")
        out.append(f"{pad}@builtin(subgroup_invocation_id) lane: u32) {{")
    else:
        out.append(f"{pad}@builtin(workgroup_id) wid: vec3<u32>) {{")
    out.append(f"    let ci0 = (wid.x * WG + lid) * {ct}u;")
    if shared:
        out.append("    let has0 = ci0 < q.sc;")
    else:
        out.append("    if (ci0 >= q.sc) {")
        out.append("        return;")
        out.append("    }")
    for h in range(1, ct):
        out.append(f"    let has{h} = ci0 + {h}u < q.sc;")
    out.append("    let j0 = wid.y * TN4;")
    out.append("    let plane = q.tiles_y * q.tiles_x;")
    out.append("    let sc = i32(q.sc);")
    out.append("    let row = i32(q.sw) * sc;")
    for h in range(ct):
        for j in range(tn4_max):
            for xi in range(a2):
                out.append(f"    var a{h}{j}_{xi} = vec4<f32>(0.0);")
    for h in range(ct):
        for u in range(a):
            for c in range(a):
                out.append(f"    var e{h}{u}_{c} = 0.0;")
    out.append("    let t0 = wid.z * q.chunk;")
    out.append("    let t1 = min(t0 + q.chunk, q.count);")
    out.append("    // The first tile's place; later ones step along the rows (no division per tile).")
    out.append("    let tile = q.first_tile + t0;")
    out.append("    var img = tile / plane;")
    out.append("    let rem = tile - img * plane;")
    out.append("    var ty = rem / q.tiles_x;")
    out.append("    var tx = rem - ty * q.tiles_x;")
    out.append("    for (var t = t0; t < t1; t++) {")
    ind = "        "
    out.append(f"{ind}let y0 = i32(ty * 2u) - i32(q.pad_t);")
    out.append(f"{ind}let x0 = i32(tx * 2u) - i32(q.pad_l);")
    out.append(f"{ind}let o = i32(img * q.sh * q.sw * q.sc + ci0) + (y0 * i32(q.sw) + x0) * sc;")
    for r in range(a):
        out.append(f"{ind}let ry{r} = y0 + {r} >= 0 && y0 + {r} < i32(q.sh);")

    def column(i2, c):
        out.append(f"{i2}let cx{c} = x0 + {c} >= 0 && x0 + {c} < i32(q.sw);")
        for r in range(a):
            out.append(f"{i2}let k{r}_{c} = ry{r} && cx{c};")
            out.append(f"{i2}let o{r}_{c} = u32(select(0, o + {r} * row + {c} * sc, k{r}_{c}));")
        for h in range(ct):
            for r in range(a):
                if h == 0 and not shared:
                    load = f"select(0.0, src[o{r}_{c}], k{r}_{c})"
                else:
                    # Past the last channel the index stays in bounds (element 0, discarded).
                    live = f"k{r}_{c} && has{h}"
                    load = f"select(0.0, src[select(0u, o{r}_{c} + {h}u, {live})], {live})"
                out.append(f"{i2}let d{h}{r}_{c} = {load};")
            exprs = input_transform(a, lambda r: f"d{h}{r}_{c}")
            for u in range(a):
                out.append(f"{i2}e{h}{u}_{c} = {exprs[u]};")

    out.append(f"{ind}// The input tiles' columns: loads and B^T d (rows combined); a tile that continues")
    out.append(f"{ind}// its row has its first {keep} from the tile before it.")
    out.append(f"{ind}if (t > t0 && tx != 0u) {{")
    for h in range(ct):
        for u in range(a):
            for c in range(keep):
                out.append(f"{ind}    e{h}{u}_{c} = e{h}{u}_{c + 2};")
    out.append(f"{ind}}} else {{")
    for c in range(keep):
        column(ind + "    ", c)
    out.append(f"{ind}}}")
    for c in range(keep, a):
        column(ind, c)
    out.append(f"{ind}// (B^T d) B (columns combined).")
    for h in range(ct):
        for u in range(a):
            exprs = input_transform(a, lambda w, u=u: f"e{h}{u}_{w}")
            for w in range(a):
                out.append(f"{ind}let v{h}_{u * a + w} = {exprs[w]};")
    out.append(f"{ind}// Each U vec4 of the tile, the same for every invocation and both channels.")
    out.append(f"{ind}let wrow = t * {a2}u * q.cout4 + j0;")
    for j in range(tn4_max):
        i2 = ind
        if j >= 1:
            out.append(f"{ind}if (TN4 > {j}u) {{")
            i2 = ind + "    "
        if shared:
            for h in range(ceil_div(a2, LANES)):
                out.append(
                    f"{i2}let w{j}_{h} = wts[wrow + (lane + {h * LANES}u) * q.cout4 + {j}u];"
                )
        for xi in range(a2):
            if shared:
                out.append(
                    f"{i2}let u{j}_{xi} = subgroupBroadcast(w{j}_{xi // LANES}, {xi % LANES}u);"
                )
            else:
                out.append(f"{i2}let u{j}_{xi} = wts[wrow + {xi}u * q.cout4 + {j}u];")
            for h in range(ct):
                out.append(f"{i2}a{h}{j}_{xi} = fma(vec4<f32>(v{h}_{xi}), u{j}_{xi}, a{h}{j}_{xi});")
        if j >= 1:
            out.append(f"{ind}}}")
    out.append(f"{ind}tx += 1u;")
    out.append(f"{ind}if (tx == q.tiles_x) {{")
    out.append(f"{ind}    tx = 0u;")
    out.append(f"{ind}    ty += 1u;")
    out.append(f"{ind}    if (ty == q.tiles_y) {{")
    out.append(f"{ind}        ty = 0u;")
    out.append(f"{ind}        img += 1u;")
    out.append(f"{ind}    }}")
    out.append(f"{ind}}}")
    out.append("    }")
    out.append("    // Each workgroup slice's sums start at the first window and gather the later ones.")
    out.append("    let first = q.first != 0u;")
    for h in range(ct):
        out.append(f"    let s{h} = wid.z * {a2}u * q.sc + ci0 + {h}u;")
    for h in range(ct):
        for j in range(tn4_max):
            conds = []
            if h >= 1 or shared:
                conds.append(f"has{h}")
            if j >= 1:
                conds.append(f"TN4 > {j}u")
            out.append(f"    if ({' && '.join(conds)}) {{" if conds else "    {")
            for xi in range(a2):
                out.append(f"        let i{xi} = (s{h} + {xi}u * q.sc) * q.cout4 + j0 + {j}u;")
                out.append(f"        sums[i{xi}] = select(sums[i{xi}] + a{h}{j}_{xi}, a{h}{j}_{xi}, first);")
            out.append("    }")
    out.append("}")
    return out


def store(out, ind, t, j, oy, ox, m, val):
    out.append(
        f"{ind}store_tile(img, ty * {m}u + {oy}u, (tx + {t}u) * {m}u + {ox}u, live{t}, block, {j}u, {val});"
    )


def emit_out(out, ind, a, m, t, j, acc):
    x = acc
    if a == 4:
        for c in range(4):
            out.append(f"{ind}let h0_{c} = {x(c)} + {x(4 + c)} + {x(8 + c)};")
            out.append(f"{ind}let h1_{c} = {x(4 + c)} - {x(8 + c)} - {x(12 + c)};")
        for r in range(2):
            store(out, ind, t, j, r, 0, 2, f"h{r}_0 + h{r}_1 + h{r}_2")
            store(out, ind, t, j, r, 1, 2, f"h{r}_1 - h{r}_2 - h{r}_3")
        return
    if m == 4:
        for c in range(6):
            out.append(f"{ind}let h0_{c} = {x(c)} + ({x(6 + c)} + {x(12 + c)}) + ({x(18 + c)} + {x(24 + c)});")
            out.append(f"{ind}let h1_{c} = fma(vec4<f32>(2.0), ({x(18 + c)} - {x(24 + c)}), ({x(6 + c)} - {x(12 + c)}));")
            out.append(f"{ind}let h2_{c} = fma(vec4<f32>(4.0), ({x(18 + c)} + {x(24 + c)}), ({x(6 + c)} + {x(12 + c)}));")
            out.append(
                f"{ind}let h3_{c} = fma(vec4<f32>(8.0), ({x(18 + c)} - {x(24 + c)}), ({x(6 + c)} - {x(12 + c)})) + {x(30 + c)};"
            )
        for r in range(4):
            h = lambda c: f"h{r}_{c}"
            store(out, ind, t, j, r, 0, 4, f"{h(0)} + ({h(1)} + {h(2)}) + ({h(3)} + {h(4)})")
            store(out, ind, t, j, r, 1, 4, f"fma(vec4<f32>(2.0), ({h(3)} - {h(4)}), ({h(1)} - {h(2)}))")
            store(out, ind, t, j, r, 2, 4, f"fma(vec4<f32>(4.0), ({h(3)} + {h(4)}), ({h(1)} + {h(2)}))")
            store(out, ind, t, j, r, 3, 4, f"fma(vec4<f32>(8.0), ({h(3)} - {h(4)}), ({h(1)} - {h(2)})) + {h(5)}")
        return
    for c in range(6):
        out.append(f"{ind}let h0_{c} = {x(c)} + ({x(6 + c)} + {x(12 + c)}) + ({x(18 + c)} + {x(24 + c)});")
        out.append(
            f"{ind}let h1_{c} = fma(vec4<f32>(2.0), ({x(18 + c)} - {x(24 + c)}), ({x(6 + c)} - {x(12 + c)})) + {x(30 + c)};"
        )
    for r in range(2):
        h = lambda c: f"h{r}_{c}"
        store(out, ind, t, j, r, 0, 2, f"{h(0)} + ({h(1)} + {h(2)}) + ({h(3)} + {h(4)})")
        store(out, ind, t, j, r, 1, 2, f"fma(vec4<f32>(2.0), ({h(3)} - {h(4)}), ({h(1)} - {h(2)})) + {h(5)}")


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit("usage: gen_conv_winograd.py [--check]")
    text = open(SHADER).read()
    if MARKER not in text:
        sys.exit(f"{SHADER}: no line starting {MARKER!r}")
    head = text[: text.index(MARKER)]
    why = [
        "// every value a named local, no array indexed by a loop counter, so that a CPU driver keeps",
        "// the accumulators in registers or fixed stack slots (a local array indexed in a loop there",
        "// costs a stack access per use).",
    ]
    runs = why[:-1] + [
        "// costs a stack access per use). Each invocation owns a run of TT horizontally adjacent",
        "// output tiles: they share the input columns they overlap in (loads and B^T d) and every",
        "// U load.",
    ]
    # A 4x4 tile in runs lost to 2x2 tiles in runs on every layer measured, and compiled for
    # up to a minute on llvmpipe: each invocation owns one.
    alone = why[:-1] + ["// costs a stack access per use). Each invocation owns one output tile."]
    body = kernel("winograd_2x2_3x3", 4, 2, 4, TT_MAX, [MARKER] + runs)
    body += kernel("winograd_4x4_3x3", 6, 4, 2, 1, ["", "// F(4x4, 3x3) written out,"] + alone)
    body += kernel("winograd_2x2_5x5", 6, 2, 4, TT_MAX, ["", "// F(2x2, 5x5) written out,"] + runs)
    dw = [
        "// costs a stack access per use). Each invocation owns two input channels; its workgroup",
        "// walks the window's tiles in step, so every U load is shared.",
    ]
    body += dw_kernel(
        "winograd_dw_3x3", 4, 4, ["", "// Weight gradient, F(3x3, 2x2) written out,"] + why[:-1] + dw
    )
    body += dw_kernel(
        "winograd_dw_5x5", 6, 2, ["", "// Weight gradient, F(5x5, 2x2) written out,"] + why[:-1] + dw
    )
    want = head + "\n".join(body) + "\n"
    want_subgroup = subgroup_module(head, runs, alone, why[:-1] + dw)
    for path, new in [(SHADER, want), (SUBGROUP_SHADER, want_subgroup)]:
        old = open(path).read() if os.path.exists(path) else None
        if check:
            if new != old:
                sys.exit(f"{path}: differs from tools/gen_conv_winograd.py's output (run it)")
        elif new != old:
            with open(path, "w") as f:
                f.write(new)


def subgroup_module(head, runs, alone, dw):
    """conv_winograd_subgroup.wgsl: the declarations of conv_winograd.wgsl's head that the
    product kernels use (its override constants, parameters, bindings, `alpha` and
    `activate`, and `store_tile`), then the product kernels with shared U loads."""
    start = head.index("override MODE")
    end = head.index("// Row `row` of G")
    store = head.index("// Writes the 4 channels of vec4 column j")
    store_end = head.index("\n}\n", store) + 3
    lines = [
        "// Generated by tools/gen_conv_winograd.py from shaders/conv_winograd.wgsl: do not edit.",
        "//",
        "// conv_winograd.wgsl's product kernels (forward and input gradient) and weight gradient",
        "// kernels for adapters whose subgroups are 8 invocations wide, as llvmpipe's on 256-bit",
        "// vectors. llvmpipe loads a uniform-buffer value once and broadcasts it only where the",
        "// offset is a compile-time constant; U's offsets run with the channel (or tile) loop, so",
        "// there every component of every U vec4 is a gather over the 8 lanes, and those loads",
        "// bounded these kernels. Here lane l loads transform points l, l + 8, ... and",
        "// subgroupBroadcast hands each to the others: the same values in the same order of sums,",
        "// so the results are the same to the bit. A module of its own: a device without",
        "// subgroups rejects any module that uses them.",
        "",
        "",
    ]
    dw_start = head.index("struct DwParams")
    dw_end = head.index("// Row `row` of A")
    text = (
        "\n".join(lines)
        + head[start:end].rstrip()
        + "\n\n"
        + head[store:store_end]
        + "\n"
        + head[dw_start:dw_end].rstrip()
        + "\n"
    )
    body = kernel(
        "winograd_2x2_3x3", 4, 2, 4, TT_MAX, ["", "// F(2x2, 3x3) written out,"] + runs, True
    )
    body += kernel("winograd_4x4_3x3", 6, 4, 2, 1, ["", "// F(4x4, 3x3) written out,"] + alone, True)
    body += kernel(
        "winograd_2x2_5x5", 6, 2, 4, TT_MAX, ["", "// F(2x2, 5x5) written out,"] + runs, True
    )
    body += dw_kernel(
        "winograd_dw_3x3", 4, 4, ["", "// Weight gradient, F(3x3, 2x2) written out,"] + dw, True
    )
    body += dw_kernel(
        "winograd_dw_5x5", 6, 2, ["", "// Weight gradient, F(5x5, 2x2) written out,"] + dw, True
    )
    return text + "\n".join(body) + "\n"


main()
