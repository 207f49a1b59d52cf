"""Triton forward kernel of the fused LGF op: y = x + gamma * (s_l*l + s_g*g) in one pass.

A program owns a [BLOCK_C, BLOCK_W] tile (channels x columns) of image n and slides it down a
strip of rows. It keeps the 3x3 window of x as six loop-carried tiles (rows h-1 and h at columns
w-1, w, w+1) and loads only row h+1 per step: three loads per output, the shifted ones hitting
L1. The launcher makes the tile long along x's unit-stride dimension (columns for NCHW,
channels for channels_last). Nothing but y is written.

Indexing: the program's base pointer (image, first channel, row and column) is computed in
int64 once; the offsets from it, over the strip of rows of the tile, are int32 unless the
launcher's guard asks for int64 (INDEX64: a strip reaching 2^31 elements).

The row loop runs without row masks (the image's last row, whose lower neighbour is padding,
is peeled off) and is unrolled three times, the period of the window's rotation, so the
window needs no register copies.
"""

import triton
import triton.language as tl

from .triton_math import fused_output, i64, load_channel_params, split_program_id


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
    n64 = i64(n)
    xp = x_ptr + (n64 * sxn + i64(c0) * sxc + i64(h0) * sxh + i64(w0) * sxw)
    yp = y_ptr + (n64 * syn + i64(c0) * syc + i64(h0) * syh + i64(w0) * syw)
    # offsets from the program's base, advanced a row at a time
    xo = ci * sxc + wi * sxw - sxh
    yo = ci * syc + wi * syw
    # rows h0-1 and h0 of the window
    xw = _load_row3(xp + xo, sxw, okm, ok0, okp, h0 >= 1, ACC)
    xo += sxh
    xw = xw + _load_row3(xp + xo, sxw, okm, ok0, okp, True, ACC)
    xo += sxh
    # rows whose next row is inside the image (no row mask); unrolled: no window copies
    n_inner = tl.minimum(nrows, H - 1 - h0)
    for _ in tl.range(0, n_inner, loop_unroll_factor=3):
        xw = xw + _load_row3(xp + xo, sxw, okm, ok0, okp, True, ACC)
        xo += sxh
        y = fused_output(xw, wt, bias, a_l, kl, a_g, kg, gamma, gv, ACC)
        tl.store(yp + yo, y.to(y_ptr.dtype.element_ty), mask=ok0)
        yo += syh
        xw = xw[3:]
    if n_inner < nrows:  # the image's last row: the row below it is zero padding
        zero = tl.zeros_like(xw[0])
        y = fused_output(xw + (zero, zero, zero), wt, bias, a_l, kl, a_g, kg, gamma, gv, ACC)
        tl.store(yp + yo, y.to(y_ptr.dtype.element_ty), mask=ok0)
