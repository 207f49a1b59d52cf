"""Triton backward kernel of the fused LGF op for layouts whose columns are the unit stride (NCHW).

One pass, no N*C*H*W scratch: dl is computed once per pixel and shared between neighbours.

A program is one warp. It owns image n, channel c, a strip of rows and BW lanes of columns
w0-1 .. w0+BW-2, of which lanes 1 .. BW-2 are its outputs (the two edge lanes are halo). It
slides down the rows: at row r it loads x row r+1 and dy row r, computes l, both gates and dl at
row r on every lane, shifts dl by one lane either way (warp shuffles: tl.gather inside one warp)
and, with the dl rows r-2 and r-1 it carries, writes dx row r-1 = dy + the rotated 3x3 of dl.
The strip's first and last rows need dl one row outside it: those halo rows are computed and
not counted in the partial sums.

The parameter-gradient terms of the owned pixels (16 slots, triton_math.accumulate) are summed
per lane in registers over the whole strip and reduced over the lanes once, into one workspace
row ws[n, block, slot, c]; lgf_finish_grads_kernel reduces the workspace in a fixed order.
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
def _load_row3(p, sxw, okm, ok0, okp, rok, ACC: tl.constexpr):
    """x at columns w-1, w, w+1 of one row (zero outside the image); p points at column w."""
    return (
        tl.load(p - sxw, mask=okm & rok, other=0.0).to(ACC),
        tl.load(p, mask=ok0 & rok, other=0.0).to(ACC),
        tl.load(p + sxw, mask=okp & rok, other=0.0).to(ACC),
    )


@triton.jit
def _shift_lanes(v, li, BW: tl.constexpr):
    """(v of lane-1, v, v of lane+1); the edge lanes get their own value and are never output."""
    left = tl.gather(v, tl.maximum(li - 1, 0), 0)
    right = tl.gather(v, tl.minimum(li + 1, BW - 1), 0)
    return left, v, right


@triton.jit
def _dl_row(xw, dy, ok, coef, acc, li, BW: tl.constexpr, OWNED: tl.constexpr, ACC: tl.constexpr):
    """dl of one row (zero where `ok` is false), shifted by -1, 0, +1 lanes; the row's terms are
    added to the partial sums when the row is OWNED by the strip."""
    wt, bias, a_l, kl, a_g, kg, gamma, gv = coef
    l = conv3x3(wt, xw, bias)
    dl, dzl, dzg, s_l, s_g, t = pixel_grads(l, dy, a_l, kl, a_g, kg, gamma, gv, ACC)
    dl = tl.where(ok, dl, 0.0)
    if OWNED:
        acc = accumulate(acc, xw, l, dy, dl, dzl, dzg, s_l, s_g, t, gv)
    return _shift_lanes(dl, li, BW), acc


@triton.jit
def _dx_row(dy, d_up, d_mid, d_dn, wt):
    """dx[h, w] = dy[h, w] + sum_ij weight[i, j] * dl[h-i+1, w-j+1]; d_up/d_mid/d_dn are the
    shifted dl rows h-1, h, h+1."""
    dx = dy
    for j in tl.static_range(3):
        dx += wt[6 + j] * d_up[2 - j] + wt[3 + j] * d_mid[2 - j] + wt[j] * d_dn[2 - j]
    return dx


@triton.jit
def lgf_backward_nchw_kernel(
    dy_ptr, x_ptr, w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, dx_ptr, ws_ptr,
    C, H, W,
    sdyn, sdyc, sdyh, sdyw,
    sxn, sxc, sxh, sxw,
    sdxn, sdxc, sdxh, sdxw,
    n_strips, n_wblocks, rows_per_prog,
    FP64: tl.constexpr, BW: tl.constexpr, INDEX64: tl.constexpr,
):  # fmt: skip
    ACC = tl.float64 if FP64 else tl.float32
    n, c, rs, wb = split_program_id(n_wblocks, n_strips, C)
    w0 = wb * (BW - 2)
    h0 = rs * rows_per_prog
    nrows = tl.minimum(rows_per_prog, H - h0)
    li = tl.arange(0, BW)
    lo = li - 1  # column offset of each lane from w0
    if INDEX64:
        lo = i64(lo)
    wcol = w0 + lo
    okm = (wcol >= 1) & (wcol <= W)
    ok0 = (wcol >= 0) & (wcol < W)
    okp = (wcol >= -1) & (wcol + 1 < W)
    own = (li >= 1) & (li <= BW - 2) & ok0
    coef = load_channel_params(w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, n, c, c < C, C, ACC)
    wt = coef[0]
    sxh, sdyh, sdxh = i64(sxh), i64(sdyh), i64(sdxh)
    n64 = i64(n)
    c64 = i64(c)
    w064 = i64(w0)
    xp = x_ptr + (n64 * sxn + c64 * sxc + w064 * sxw + i64(h0 - 2) * sxh) + lo * sxw
    dyp = dy_ptr + (n64 * sdyn + c64 * sdyc + w064 * sdyw + i64(h0 - 1) * sdyh)
    dyp = dyp + lo * sdyw
    dxp = dx_ptr + (n64 * sdxn + c64 * sdxc + w064 * sdxw + i64(h0) * sdxh)
    dxp = dxp + lo * sdxw
    acc = repeat(tl.zeros([BW], ACC), NUM_SLOTS)

    # x rows h0-2 .. h0 and dl at the halo row h0-1
    xw = _load_row3(xp, sxw, okm, ok0, okp, h0 >= 2, ACC)
    xp += sxh
    xw = xw + _load_row3(xp, sxw, okm, ok0, okp, h0 >= 1, ACC)
    xp += sxh
    xw = xw + _load_row3(xp, sxw, okm, ok0, okp, h0 < H, ACC)
    xp += sxh
    dy = tl.load(dyp, mask=ok0 & (h0 >= 1), other=0.0).to(ACC)
    dyp += sdyh
    d_up, acc = _dl_row(xw, dy, ok0 & (h0 >= 1), coef, acc, li, BW, False, ACC)
    # dl at row h0, the first owned row
    xw = xw[3:] + _load_row3(xp, sxw, okm, ok0, okp, h0 + 1 < H, ACC)
    xp += sxh
    dy_mid = tl.load(dyp, mask=ok0, other=0.0).to(ACC)
    dyp += sdyh
    d_mid, acc = _dl_row(xw, dy_mid, ok0, coef, acc, li, BW, True, ACC)
    # owned rows r = h0+1 .. h0+nrows-1: dl(r), then dx(r-1)
    for i in range(1, nrows):
        xw = xw[3:] + _load_row3(xp, sxw, okm, ok0, okp, h0 + i + 1 < H, ACC)
        xp += sxh
        dy = tl.load(dyp, mask=ok0, other=0.0).to(ACC)
        dyp += sdyh
        d_dn, acc = _dl_row(xw, dy, ok0, coef, acc, li, BW, True, ACC)
        dx = _dx_row(dy_mid, d_up, d_mid, d_dn, wt)
        tl.store(dxp, dx.to(dx_ptr.dtype.element_ty), mask=own)
        dxp += sdxh
        d_up = d_mid
        d_mid = d_dn
        dy_mid = dy
    # halo row r = h0 + nrows below the strip, then dx of the strip's last row
    rok = h0 + nrows < H
    xw = xw[3:] + _load_row3(xp, sxw, okm, ok0, okp, h0 + nrows + 1 < H, ACC)
    dy = tl.load(dyp, mask=ok0 & rok, other=0.0).to(ACC)
    d_dn, acc = _dl_row(xw, dy, ok0 & rok, coef, acc, li, BW, False, ACC)
    dx = _dx_row(dy_mid, d_up, d_mid, d_dn, wt)
    tl.store(dxp, dx.to(dx_ptr.dtype.element_ty), mask=own)

    # one workspace row per program: ws[n, rs * n_wblocks + wb, slot, c]
    block = (n64 * n_strips + rs) * n_wblocks + wb
    wsp = ws_ptr + block * (NUM_SLOTS * C) + c
    for k in tl.static_range(NUM_SLOTS):
        tl.store(wsp + k * C, tl.sum(tl.where(own, acc[k], 0.0), axis=0))
