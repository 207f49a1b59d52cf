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
def _store_dx(p, dy, d_up, d_mid, d_dn, wt, own):
    """dx[h, w] = dy[h, w] + sum_ij weight[i, j] * dl[h-i+1, w-j+1] on the owned lanes;
    d_up/d_mid/d_dn are the shifted dl rows h-1, h, h+1."""
    dx = dy
    for j in tl.static_range(3):
        dx += wt[6 + j] * d_up[2 - j] + wt[3 + j] * d_mid[2 - j] + wt[j] * d_dn[2 - j]
    tl.store(p, dx.to(p.dtype.element_ty), mask=own)


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
    n64 = i64(n)
    c64 = i64(c)
    w064 = i64(w0)
    h064 = i64(h0)
    xb = x_ptr + (n64 * sxn + c64 * sxc + h064 * sxh + w064 * sxw)
    dyb = dy_ptr + (n64 * sdyn + c64 * sdyc + h064 * sdyh + w064 * sdyw)
    dxb = dx_ptr + (n64 * sdxn + c64 * sdxc + h064 * sdxh + w064 * sdxw)
    # offsets from the program's base (image, channel, first row and column), advanced a row
    # at a time; int32 unless INDEX64
    xo = lo * sxw - 2 * sxh
    dyo = lo * sdyw - sdyh
    dxo = lo * sdxw
    acc = repeat(tl.zeros([BW], ACC), NUM_SLOTS)

    # x rows h0-2 .. h0 and dl at the halo row h0-1
    xw = _load_row3(xb + xo, sxw, okm, ok0, okp, h0 >= 2, ACC)
    xo += sxh
    xw = xw + _load_row3(xb + xo, sxw, okm, ok0, okp, h0 >= 1, ACC)
    xo += sxh
    xw = xw + _load_row3(xb + xo, sxw, okm, ok0, okp, True, ACC)
    xo += sxh
    dy = tl.load(dyb + dyo, mask=ok0 & (h0 >= 1), other=0.0).to(ACC)
    dyo += sdyh
    d_up, acc = _dl_row(xw, dy, ok0 & (h0 >= 1), coef, acc, li, BW, False, ACC)
    # dl at row h0, the first owned row
    xw = xw[3:] + _load_row3(xb + xo, sxw, okm, ok0, okp, h0 + 1 < H, ACC)
    xo += sxh
    dy_mid = tl.load(dyb + dyo, mask=ok0, other=0.0).to(ACC)
    dyo += sdyh
    d_mid, acc = _dl_row(xw, dy_mid, ok0, coef, acc, li, BW, True, ACC)
    # owned rows r = h0+1 .. whose row r+1 is inside the image: no row masks; unrolled three
    # times (the period of the rotations), so the carried rows need no register copies
    n_in = tl.maximum(tl.minimum(nrows, H - 1 - h0), 1)
    for _ in tl.range(1, n_in, loop_unroll_factor=3):
        xw = xw[3:] + _load_row3(xb + xo, sxw, okm, ok0, okp, True, ACC)
        xo += sxh
        dy = tl.load(dyb + dyo, mask=ok0, other=0.0).to(ACC)
        dyo += sdyh
        d_dn, acc = _dl_row(xw, dy, ok0, coef, acc, li, BW, True, ACC)
        _store_dx(dxb + dxo, dy_mid, d_up, d_mid, d_dn, coef[0], own)
        dxo += sdxh
        d_up, d_mid, dy_mid = d_mid, d_dn, dy
    if n_in < nrows:  # the strip ends at the image's last row: its lower row is padding
        zero = tl.zeros([BW], ACC)
        xw = xw[3:] + (zero, zero, zero)
        dy = tl.load(dyb + dyo, mask=ok0, other=0.0).to(ACC)
        dyo += sdyh
        d_dn, acc = _dl_row(xw, dy, ok0, coef, acc, li, BW, True, ACC)
        _store_dx(dxb + dxo, dy_mid, d_up, d_mid, d_dn, coef[0], own)
        dxo += sdxh
        d_up, d_mid, dy_mid = d_mid, d_dn, dy
    # the halo row h0+nrows below the strip, then dx of the strip's last row
    rok = h0 + nrows < H
    xw = xw[3:] + _load_row3(xb + xo, sxw, okm, ok0, okp, h0 + nrows + 1 < H, ACC)
    dy = tl.load(dyb + dyo, mask=ok0 & rok, other=0.0).to(ACC)
    d_dn, acc = _dl_row(xw, dy, ok0 & rok, coef, acc, li, BW, False, ACC)
    _store_dx(dxb + dxo, dy_mid, d_up, d_mid, d_dn, coef[0], own)

    # one workspace row per program: ws[n, rs * n_wblocks + wb, slot, c]
    block = (i64(n) * n_strips + rs) * n_wblocks + wb
    wsp = ws_ptr + block * (NUM_SLOTS * C) + c
    for k in tl.static_range(NUM_SLOTS):
        tl.store(wsp + k * C, tl.sum(tl.where(own, acc[k], 0.0), axis=0))
