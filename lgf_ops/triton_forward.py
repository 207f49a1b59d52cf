"""Triton forward kernel of the fused LGF op: y = x + gamma * (s_l*l + s_g*g) in one pass.

A program owns a [BLOCK_C, BLOCK_W] tile (channels x columns) of image n and slides it down a
strip of rows. It keeps the 3x3 window of x as six loop-carried tiles (rows h-1 and h at columns
w-1, w, w+1) and loads only row h+1 per step: three loads per output, the shifted ones hitting
L1. The launcher makes the tile long along x's unit-stride dimension (columns for NCHW,
channels for channels_last). Nothing but y is written.

Indexing: the program's base offset and the row steps are 64-bit scalars; offsets inside the
tile are int32 unless the launcher's guard asks for int64 (INDEX64; strides so large that a
tile spans 2^31 elements).
"""

import triton
import triton.language as tl

from .triton_math import conv3x3, fused_output, i64, load_channel_params, split_program_id


@triton.jit
def _load_row3(p, sxw, okm, ok0, okp, rok, ACC: tl.constexpr):
    """Row tiles at columns w-1, w, w+1 (zero outside the image); p points at column w."""
    return (
        tl.load(p - sxw, mask=okm & rok, other=0.0).to(ACC),
        tl.load(p, mask=ok0 & rok, other=0.0).to(ACC),
        tl.load(p + sxw, mask=okp & rok, other=0.0).to(ACC),
    )


@triton.jit
def lgf_forward_kernel(
    x_ptr, w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, y_ptr,
    C, H, W,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    n_cblocks, n_strips, n_wblocks, rows_per_prog,
    FP64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr, INDEX64: tl.constexpr,
):  # fmt: skip
    ACC = tl.float64 if FP64 else tl.float32
    n, cb, rs, wb = split_program_id(n_wblocks, n_strips, n_cblocks)
    c0 = cb * BLOCK_C
    w0 = wb * BLOCK_W
    h0 = rs * rows_per_prog
    nrows = tl.minimum(rows_per_prog, H - h0)
    ci = tl.arange(0, BLOCK_C)[:, None]
    wi = tl.arange(0, BLOCK_W)[None, :]
    if INDEX64:
        ci = i64(ci)
        wi = i64(wi)
    cs = c0 + ci
    cmask = cs < C
    wcol = w0 + wi
    okm = cmask & (wcol >= 1) & (wcol <= W)
    ok0 = cmask & (wcol < W)
    okp = cmask & (wcol + 1 < W)
    wt, bias, a_l, kl, a_g, kg, gamma, gv = load_channel_params(
        w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC
    )
    gg = gamma * gv
    sxh, syh = i64(sxh), i64(syh)
    n64 = i64(n)
    xp = x_ptr + (n64 * sxn + i64(c0) * sxc + i64(w0) * sxw + i64(h0 - 1) * sxh)
    yp = y_ptr + (n64 * syn + i64(c0) * syc + i64(w0) * syw + i64(h0) * syh)
    xoff = ci * sxc + wi * sxw
    yoff = ci * syc + wi * syw
    # rows h0-1 and h0 of the window
    xw = _load_row3(xp + xoff, sxw, okm, ok0, okp, h0 >= 1, ACC)
    xp += sxh
    xw = xw + _load_row3(xp + xoff, sxw, okm, ok0, okp, h0 < H, ACC)
    xp += sxh
    for i in range(0, nrows):
        # row h = h0 + i: load row h + 1, then the window is complete
        xw = xw + _load_row3(xp + xoff, sxw, okm, ok0, okp, h0 + i + 1 < H, ACC)
        xp += sxh
        l = conv3x3(wt, xw, bias)
        y = fused_output(xw[4], l, a_l, kl, a_g, kg, gamma, gg, ACC)
        tl.store(yp + yoff, y.to(y_ptr.dtype.element_ty), mask=ok0)
        yp += syh
        xw = (xw[3], xw[4], xw[5], xw[6], xw[7], xw[8])
