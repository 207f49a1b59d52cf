"""Triton backward kernel of the fused LGF op for layouts whose channels are the unit stride
(channels_last).

One pass, no N*C*H*W scratch. The lanes of a program run along BC channels (coalesced loads)
and every neighbour a pixel needs lives in the same thread: the program keeps a few columns of a
row as a tuple of [BC] vectors, so shifting by a column is picking another tuple element.

A program owns image n, a block of BC channels, a strip of rows and a band of `groups` groups
of TW columns, one group after the other. For each group (columns w0 .. w0+TW-1) it slides
down the strip: at row r it loads x row r+1 at columns w0-2 .. w0+TW+1 and dy row r at
w0-1 .. w0+TW, computes dl at row r on the TW+2 columns w0-1 .. w0+TW (the two outside ones
are the halo a group recomputes: (TW+2)/TW of the dl work) and writes dx row r-1 from the dl
rows r-2 .. r it carries. The rows run from h0-1 to h0+nrows in one loop with row masks: the
halo rows above and below the strip are computed, not counted in the partial sums. (Peeling
them out of the loop, as the NCHW kernel does, leaves so much code around the row loop that
the group loop spills registers.)

The parameter-gradient terms of the owned pixels are summed in registers over the whole band
and strip and stored once, as ws[n, block, slot, c0:c0+BC]; lgf_finish_grads_kernel reduces
the workspace in a fixed order.
"""

import triton
import triton.language as tl

from .triton_math import (
    NUM_SLOTS,
    accumulate,
    conv3x3,
    i64,
    load_channel_params,
    pixel_grads,
    repeat,
    split_program_id,
)


@triton.jit
def _load_cols(p, off, sw, col0, W, cmask, rok, N: tl.constexpr, ACC: tl.constexpr):
    """One row at the N columns col0, col0+1, ... (zero outside the image); p + off points at
    col0 (off: the lanes' int32 offsets)."""
    out = ()
    for m in tl.static_range(N):
        ok = cmask & (rok & (col0 + m >= 0) & (col0 + m < W))
        out = out + (tl.load(p + (off + m * sw), mask=ok, other=0.0).to(ACC),)
    return out


@triton.jit
def _dl_cols(
    xa, xb, xc, dy, col0, W, rok, owned, coef, acc, TW: tl.constexpr, ACC: tl.constexpr
):  # fmt: skip
    """dl at the TW+2 columns col0 .. col0+TW+1 of one row from the x rows above (xa), at (xb)
    and below (xc) it; zero outside the image (rok: the row is inside). The terms of the owned
    columns (tuple indices 1..TW, inside the image) of an owned row go into the partial sums
    (owned: a scalar; the others add zeros)."""
    wt, bias, a_l, kl, a_g, kg, gamma, gv = coef
    dls = ()
    for k in tl.static_range(TW + 2):
        xw = (xa[k], xa[k + 1], xa[k + 2], xb[k], xb[k + 1], xb[k + 2], xc[k], xc[k + 1], xc[k + 2])
        l = conv3x3(wt, xw, bias)
        dl, dzl, dzg, s_l, s_g, t = pixel_grads(l, dy[k], a_l, kl, a_g, kg, gamma, gv, ACC)
        dl = tl.where(rok & (col0 + k >= 0) & (col0 + k < W), dl, 0.0)
        if k >= 1 and k <= TW:
            o = owned & (col0 + k < W)
            acc = accumulate(
                acc, xw, l, tl.where(o, dy[k], 0.0), tl.where(o, dl, 0.0), tl.where(o, dzl, 0.0),
                tl.where(o, dzg, 0.0), s_l, s_g, tl.where(o, t, 0.0), gv,
            )  # fmt: skip
        dls = dls + (dl,)
    return dls, acc


@triton.jit
def _store_dx_cols(p, off, sw, dyo, da, db, dc, wt, w0, W, ok, TW: tl.constexpr):
    """dx at the TW columns w0 .. w0+TW-1 of row h from dy (dyo) and the dl rows h-1 (da), h (db)
    and h+1 (dc), whose tuple index m is column w0-1+m; ok: the lanes' store mask."""
    for k in tl.static_range(TW):
        dx = dyo[k]
        for j in tl.static_range(3):
            dx += wt[6 + j] * da[k + 2 - j] + wt[3 + j] * db[k + 2 - j] + wt[j] * dc[k + 2 - j]
        tl.store(p + (off + k * sw), dx.to(p.dtype.element_ty), mask=ok & (w0 + k < W))


@triton.jit
def _group(
    xb, dyb, dxb, xo, dyo, dxo, coef, acc, cmask, h0, nrows, w0, H, W,
    sxh, sxw, sdyh, sdyw, sdxh, sdxw,
    TW: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """The strip of one column group: dx written, the group's terms added to acc. xb, dyb and
    dxb point at (n, c0, h0, w0); xo, dyo and dxo are the lanes' offsets (channels) from them,
    advanced a row at a time. One loop over the rows r = h0-1 .. h0+nrows of dl (the halo rows
    included, with row masks): little code outside it, so few registers live across groups."""
    wt = coef[0]
    c0 = w0 - 1  # the column of dl's tuple index 0
    xo += -2 * sxh - 2 * sxw
    dyo += -sdyh - sdyw
    dxo += -2 * sdxh
    xa = _load_cols(xb, xo, sxw, w0 - 2, W, cmask, h0 >= 2, TW + 4, ACC)
    xo += sxh
    xm = _load_cols(xb, xo, sxw, w0 - 2, W, cmask, h0 >= 1, TW + 4, ACC)
    xo += sxh
    zero = tl.zeros_like(xa[0])
    da = repeat(zero, TW + 2)
    db = repeat(zero, TW + 2)
    dy_mid = repeat(zero, TW)
    # not unrolled: 3x unrolling saves the rotations' register copies (~7% of the
    # instructions) but needs all 255 registers (half the occupancy)
    for i in range(0, nrows + 2):
        r = h0 - 1 + i  # dl row r, dx row r - 1
        rok = (r >= 0) & (r < H)
        xc = _load_cols(xb, xo, sxw, w0 - 2, W, cmask, r + 1 < H, TW + 4, ACC)
        xo += sxh
        dy = _load_cols(dyb, dyo, sdyw, c0, W, cmask, rok, TW + 2, ACC)
        dyo += sdyh
        owned = (i >= 1) & (i <= nrows)
        dc, acc = _dl_cols(xa, xm, xc, dy, c0, W, rok, owned, coef, acc, TW, ACC)
        _store_dx_cols(dxb, dxo, sdxw, dy_mid, da, db, dc, wt, w0, W, cmask & (i >= 2), TW)
        dxo += sdxh
        xa, xm = xm, xc
        da, db, dy_mid = db, dc, dy[1 : TW + 1]
    return acc


# groups: not specialised when 1, so the group loop stays one loop for every shape
@triton.jit(do_not_specialize=["groups"])
def lgf_backward_nhwc_kernel(
    dy_ptr, x_ptr, w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, dx_ptr, ws_ptr,
    C, H, W,
    sdyn, sdyc, sdyh, sdyw,
    sxn, sxc, sxh, sxw,
    sdxn, sdxc, sdxh, sdxw,
    n_cblocks, n_strips, n_wblocks, rows_per_prog, groups,
    FP64: tl.constexpr, BC: tl.constexpr, TW: tl.constexpr,
    EVEN_C: tl.constexpr, INDEX64: tl.constexpr,
):  # fmt: skip
    ACC = tl.float64 if FP64 else tl.float32
    n, cb, rs, wb = split_program_id(n_wblocks, n_strips, n_cblocks)
    c0 = cb * BC
    h0 = rs * rows_per_prog
    nrows = tl.minimum(rows_per_prog, H - h0)
    ci = tl.arange(0, BC)
    if INDEX64:
        ci = i64(ci)
    cs = c0 + ci
    if EVEN_C:  # C is a multiple of BC: no channel mask
        cmask = tl.full([BC], 1, tl.int1)
    else:
        cmask = cs < C
    coef = load_channel_params(w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC)
    n64 = i64(n)
    c064 = i64(c0)
    h064 = i64(h0)
    acc = repeat(tl.zeros([BC], ACC), NUM_SLOTS)
    for gi in range(0, groups):
        w0 = (wb * groups + gi) * TW
        if w0 < W:
            w064 = i64(w0)
            acc = _group(
                x_ptr + (n64 * sxn + c064 * sxc + h064 * sxh + w064 * sxw),
                dy_ptr + (n64 * sdyn + c064 * sdyc + h064 * sdyh + w064 * sdyw),
                dx_ptr + (n64 * sdxn + c064 * sdxc + h064 * sdxh + w064 * sdxw),
                ci * sxc, ci * sdyc, ci * sdxc, coef, acc, cmask, h0, nrows, w0,
                H, W, sxh, sxw, sdyh, sdyw, sdxh, sdxw, TW, ACC,
            )  # fmt: skip
    block = (n64 * n_strips + rs) * n_wblocks + wb
    wsp = ws_ptr + block * (NUM_SLOTS * C) + cs
    for k in tl.static_range(NUM_SLOTS):
        tl.store(wsp + k * C, acc[k], mask=cmask)


# At most 144 registers for fp32/fp16/bf16 (one warp): ptxas for sm_80 otherwise settles on 128
# registers and spills (sm_90 takes 141 and does not). fp64 keeps ptxas' own choice.
lgf_backward_nhwc_kernel_144regs = triton.autotune(
    configs=[triton.Config({}, num_warps=1, maxnreg=144)], key=[]
)(lgf_backward_nhwc_kernel)
