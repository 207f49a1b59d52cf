"""Triton kernel that turns the backward's workspace into the parameter gradients.

The workspace ws[N, NB, NUM_SLOTS, C] holds one row of partial sums per backward program (NB
programs per image and channel). Program (channel block, slot) sums its slot over the blocks and
images in a fixed order (images one after the other; blocks in chunks of BB, each chunk reduced
by tl.sum), so the gradients are bitwise the same run to run, and writes its gradient entries in
the parameter's dtype (dg in g's dtype):

    slot S_MIX -> dgamma       S_DL -> dbias           S_DW0 + k -> dweight[:, 0, k // 3, k % 3]
    slot S_TSG -> dg[n, c] = tsg[n] + b_l * dz_l[n] + b_g * dz_g[n]   (reads S_DZL and S_DZG too)
    slot S_DZL -> dgate[2] = sum dz_l, dgate[1] = sum_n g[n] * dz_l[n]   (S_DZG: rows 5 and 4)
    slot S_DZL_L -> dgate[0]   S_DZG_L -> dgate[3]
"""

import triton
import triton.language as tl

from .triton_math import (
    NUM_SLOTS,
    S_DW0,
    S_DZG,
    S_DZG_L,
    S_DZL,
    S_DZL_L,
    S_MIX,
    S_TSG,
    i64,
)


@triton.jit
def _image_sum(
    ws_ptr, n, slot, NB, C, cs, cmask, BB: tl.constexpr, BCF: tl.constexpr, ACC: tl.constexpr
):
    """sum over the NB blocks of image n of ws[n, block, slot, cs], as [BCF]."""
    bi = tl.arange(0, BB)[:, None]
    acc = tl.zeros([BB, BCF], ACC)
    row0 = i64(n) * NB
    for b0 in range(0, NB, BB):
        rows = row0 + b0 + bi
        p = ws_ptr + (rows * NUM_SLOTS + slot) * C + cs[None, :]
        acc += tl.load(p, mask=(b0 + bi < NB) & cmask[None, :], other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def lgf_finish_grads_kernel(
    ws_ptr, g_ptr, gate_ptr,
    dweight_ptr, dbias_ptr, dg_ptr, dgate_ptr, dgamma_ptr,
    N, C, NB,
    FP64: tl.constexpr, BCF: tl.constexpr, BB: tl.constexpr,
):  # fmt: skip
    ACC = tl.float64 if FP64 else tl.float32
    slot = tl.program_id(1)
    cs = tl.program_id(0) * BCF + tl.arange(0, BCF)
    cmask = cs < C
    if slot == S_TSG:
        b_l = tl.load(gate_ptr + 1 * C + cs, mask=cmask, other=0.0).to(ACC)
        b_g = tl.load(gate_ptr + 4 * C + cs, mask=cmask, other=0.0).to(ACC)
        for n in range(0, N):
            tsg = _image_sum(ws_ptr, n, S_TSG, NB, C, cs, cmask, BB, BCF, ACC)
            dzl = _image_sum(ws_ptr, n, S_DZL, NB, C, cs, cmask, BB, BCF, ACC)
            dzg = _image_sum(ws_ptr, n, S_DZG, NB, C, cs, cmask, BB, BCF, ACC)
            dg = tsg + b_l * dzl + b_g * dzg
            tl.store(dg_ptr + n * C + cs, dg.to(dg_ptr.dtype.element_ty), mask=cmask)
    else:
        total = tl.zeros([BCF], ACC)
        gsum = tl.zeros([BCF], ACC)
        for n in range(0, N):
            v = _image_sum(ws_ptr, n, slot, NB, C, cs, cmask, BB, BCF, ACC)
            total += v
            gsum += tl.load(g_ptr + n * C + cs, mask=cmask, other=0.0).to(ACC) * v
        # where the slot's total goes, chosen without branches (a switch would compile to a
        # jump table); the dz slots also write sum_n g[n] * dz[n] to the gate row before
        is_gate = (slot >= S_DZL) & (slot <= S_DZG_L)
        row = tl.where(
            slot == S_DZL, 2, tl.where(slot == S_DZG, 5, tl.where(slot == S_DZL_L, 0, 3))
        )
        p = tl.where(slot == S_MIX, dgamma_ptr + cs, dbias_ptr + cs)
        p = tl.where(slot >= S_DW0, dweight_ptr + cs * 9 + (slot - S_DW0), p)
        p = tl.where(is_gate, dgate_ptr + row * C + cs, p)
        pdt = dgate_ptr.dtype.element_ty
        tl.store(p, total.to(pdt), mask=cmask)
        is_dz = (slot == S_DZL) | (slot == S_DZG)
        tl.store(dgate_ptr + (row - 1) * C + cs, gsum.to(pdt), mask=cmask & is_dz)
