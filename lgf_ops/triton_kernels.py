"""Triton kernels of the fused LGF op (DESIGN.md section 2) and their Python launchers.

Tiling. Both kernels run on a 1-D grid; program `pid` decomposes into (n, channel block, pixel
block), pixel block fastest. A program owns a [BLOCK_C, BLOCK_P] tile: BLOCK_C channels of image n
times BLOCK_P consecutive pixels of the flattened H*W plane (p = h*W + w; channel and pixel tails
are masked). The tile is long along x's unit-stride dimension (pixels for NCHW, channels for
channels_last); one fixed config per shape, no autotuning. Every tensor is addressed through its
strides, so NCHW, channels_last and any other layout (a stride-0 upstream gradient included) are
read in place; Triton specialises integer arguments equal to 1, so the compiler knows which stride
is the unit one. All offsets are int64.

Forward (`_lgf_fwd_kernel`): the program loads the 3x3 window of shifted x tiles (zero outside the
image), forms l = dwconv3x3(x) + bias and stores y = x + gamma * (s_l*l + s_g*g). Nothing else is
written.

Backward (`_lgf_bwd_kernel`): the program loads the 5x5 window of shifted x tiles once, then for
each of the 9 neighbours q of its pixels recomputes l(q) and, from dy(q), dl(q) (zero outside the
image), and accumulates dx = dy + sum_q weight[rot180] * dl(q); only dx is written at full size.
For the pixel itself it also reduces the per-(n, c) partial sums of the parameter-gradient
quantities over the tile's pixels and stores them in a workspace ws[n, pixel block, slot, c] (the
16 slots of csrc/lgf_math.h). `_finish_grads` then sums the workspace in a fixed order in plain
PyTorch. No atomics: the gradients are bitwise reproducible run to run.

Accumulation is fp32 for fp16/bf16/fp32 inputs and fp64 for fp64 inputs (constexpr ACC).
"""

import contextlib
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError as e:  # lgf_ops treats this ImportError as "triton backend unavailable"
    raise ImportError(f"lgf_ops.triton_kernels needs the 'triton' package: {e}") from e

from ._fake import output_memory_format

# Slots of the partial sums (same numbering as csrc/lgf_math.h PartialSlot).
S_MIX, S_TSG, S_DZL, S_DZG, S_DZL_L, S_DZG_L, S_DL, S_DW0, NUM_SLOTS = 0, 1, 2, 3, 4, 5, 6, 7, 16

_FWD_TILE = 1024  # elements per forward tile (8 warps: 4 per thread)
_BWD_TILE = 256  # backward (4 warps: 2 per thread); it keeps the 5x5 window of x live


@triton.jit
def _tile_coords(C, H, W, n_cblocks, n_pblocks, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's image n, channels (1-D and [BLOCK_C, 1]), channel mask, pixel rows and
    columns h, w ([1, BLOCK_P]), pixel mask and pixel-block index; all int64."""
    pid = tl.program_id(0).to(tl.int64)
    pid_p = pid % n_pblocks
    rest = pid // n_pblocks
    pid_c = rest % n_cblocks
    n = rest // n_cblocks
    cs1 = pid_c * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    cs = cs1[:, None]
    ps = (pid_p * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64))[None, :]
    h = ps // W
    w = ps % W
    return n, cs1, cs, cs < C, h, w, h < H, pid_p


@triton.jit
def _shift_masks(h, w, pvalid, H, W, R: tl.constexpr):
    """Tuples over d = -R..R of [1, BLOCK_P] masks: pixel valid and row h+d (resp. column w+d) inside."""
    rok = ()
    cok = ()
    for k in tl.static_range(2 * R + 1):
        rok = rok + (pvalid & (h + (k - R) >= 0) & (h + (k - R) < H),)
        cok = cok + ((w + (k - R) >= 0) & (w + (k - R) < W),)
    return rok, cok


@triton.jit
def _load_window(xc, cmask, rok, cok, sxh, sxw, R: tl.constexpr, ACC: tl.constexpr):
    """Tuple of the (2R+1)^2 shifted tiles x[h+di, w+dj] (row-major in di, dj = -R..R) as ACC,
    zero outside the image; xc points at x[n, c, h, w]."""
    sxh = tl.full([], 1, tl.int64) * sxh  # int64 shift offsets
    sxw = tl.full([], 1, tl.int64) * sxw
    xs = ()
    for di in tl.static_range(2 * R + 1):
        for dj in tl.static_range(2 * R + 1):
            ok = cmask & (rok[di] & cok[dj])
            v = tl.load(xc + ((di - R) * sxh + (dj - R) * sxw), mask=ok, other=0.0)
            xs = xs + (v.to(ACC),)
    return xs


@triton.jit
def _load_weights(w_ptr, cs, cmask, ACC: tl.constexpr):
    """Tuple of the 9 depthwise taps weight[c, i, j] (k = 3i + j) as [BLOCK_C, 1]."""
    wt = ()
    for k in tl.static_range(9):
        wt = wt + (tl.load(w_ptr + cs * 9 + k, mask=cmask, other=0.0).to(ACC),)
    return wt


@triton.jit
def _channel_coefs(b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC: tl.constexpr):
    """Per-(n, c) values as [BLOCK_C, 1]: bias, a_l, kl = b_l*g + c_l, a_g, kg = b_g*g + c_g, gamma, g."""
    bias = tl.load(b_ptr + cs, mask=cmask, other=0.0).to(ACC)
    gv = tl.load(g_ptr + n * C + cs, mask=cmask, other=0.0).to(ACC)
    a_l = tl.load(gate_ptr + 0 * C + cs, mask=cmask, other=0.0).to(ACC)
    b_l = tl.load(gate_ptr + 1 * C + cs, mask=cmask, other=0.0).to(ACC)
    c_l = tl.load(gate_ptr + 2 * C + cs, mask=cmask, other=0.0).to(ACC)
    a_g = tl.load(gate_ptr + 3 * C + cs, mask=cmask, other=0.0).to(ACC)
    b_g = tl.load(gate_ptr + 4 * C + cs, mask=cmask, other=0.0).to(ACC)
    c_g = tl.load(gate_ptr + 5 * C + cs, mask=cmask, other=0.0).to(ACC)
    gamma = tl.load(gamma_ptr + cs, mask=cmask, other=0.0).to(ACC)
    return bias, a_l, b_l * gv + c_l, a_g, b_g * gv + c_g, gamma, gv


@triton.jit
def _lgf_fwd_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    g_ptr,
    gate_ptr,
    gamma_ptr,
    y_ptr,
    C,
    H,
    W,
    sxn,
    sxc,
    sxh,
    sxw,
    syn,
    syc,
    syh,
    syw,
    n_cblocks,
    n_pblocks,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    n, cs1, cs, cmask, h, w, pvalid, pid_p = _tile_coords(
        C, H, W, n_cblocks, n_pblocks, BLOCK_C, BLOCK_P
    )
    bias, a_l, kl, a_g, kg, gamma, gv = _channel_coefs(
        b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC
    )
    rok, cok = _shift_masks(h, w, pvalid, H, W, 1)
    xs = _load_window(
        x_ptr + (n * sxn + cs * sxc + h * sxh + w * sxw), cmask, rok, cok, sxh, sxw, 1, ACC
    )
    l = bias
    for k in tl.static_range(9):
        l += tl.load(w_ptr + cs * 9 + k, mask=cmask, other=0.0).to(ACC) * xs[k]
    s_l = 1.0 / (1.0 + tl.exp(-(a_l * l + kl)))
    s_g = 1.0 / (1.0 + tl.exp(-(a_g * l + kg)))
    y = xs[4] + gamma * (s_l * l + s_g * gv)
    tl.store(
        y_ptr + (n * syn + cs * syc + h * syh + w * syw),
        y.to(y_ptr.dtype.element_ty),
        mask=cmask & pvalid,
    )


@triton.jit
def _lgf_bwd_kernel(
    dy_ptr,
    x_ptr,
    w_ptr,
    b_ptr,
    g_ptr,
    gate_ptr,
    gamma_ptr,
    dx_ptr,
    ws_ptr,
    C,
    H,
    W,
    sdyn,
    sdyc,
    sdyh,
    sdyw,
    sxn,
    sxc,
    sxh,
    sxw,
    sdxn,
    sdxc,
    sdxh,
    sdxw,
    n_cblocks,
    n_pblocks,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    NUM_SLOTS: tl.constexpr,
):
    n, cs1, cs, cmask, h, w, pvalid, pid_p = _tile_coords(
        C, H, W, n_cblocks, n_pblocks, BLOCK_C, BLOCK_P
    )
    bias, a_l, kl, a_g, kg, gamma, gv = _channel_coefs(
        b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC
    )
    mask = cmask & pvalid
    rok, cok = _shift_masks(h, w, pvalid, H, W, 2)
    # The 5x5 window of x: l at the 3x3 neighbours q of each pixel needs x at q + 3x3.
    xs = _load_window(
        x_ptr + (n * sxn + cs * sxc + h * sxh + w * sxw), cmask, rok, cok, sxh, sxw, 2, ACC
    )
    wt = _load_weights(w_ptr, cs, cmask, ACC)
    dyc = dy_ptr + (n * sdyn + cs * sdyc + h * sdyh + w * sdyw)
    sdyh = tl.full([], 1, tl.int64) * sdyh  # int64 shift offsets
    sdyw = tl.full([], 1, tl.int64) * sdyw
    cmask1 = cs1 < C
    wsp = ws_ptr + ((n * n_pblocks + pid_p) * NUM_SLOTS * C + cs1)  # ws[n, pid_p, slot, c]

    dx = tl.load(dyc, mask=mask, other=0.0).to(ACC)
    for qi in tl.static_range(3):
        for qj in tl.static_range(3):
            # neighbour q = (h + qi - 1, w + qj - 1); it uses x at window offsets (qi + i, qj + j)
            l = bias
            for i in tl.static_range(3):
                for j in tl.static_range(3):
                    l += wt[i * 3 + j] * xs[(qi + i) * 5 + (qj + j)]
            okq = cmask & (rok[qi + 1] & cok[qj + 1])
            dy = tl.load(dyc + ((qi - 1) * sdyh + (qj - 1) * sdyw), mask=okq, other=0.0).to(ACC)
            s_l = 1.0 / (1.0 + tl.exp(-(a_l * l + kl)))
            s_g = 1.0 / (1.0 + tl.exp(-(a_g * l + kg)))
            t = dy * gamma
            dzl = t * l * s_l * (1.0 - s_l)
            dzg = t * gv * s_g * (1.0 - s_g)
            dl = tl.where(okq, t * s_l + a_l * dzl + a_g * dzg, 0.0)
            # dx[h, w] += weight[c, i, j] * dl[h-i+1, w-j+1], here (h-i+1, w-j+1) = q
            dx += wt[(2 - qi) * 3 + (2 - qj)] * dl
            if qi == 1 and qj == 1:  # the pixel itself: partial sums of the parameter gradients
                zero = tl.zeros_like(dl)
                mix = tl.where(mask, dy * (s_l * l + s_g * gv), zero)
                tsg = tl.where(mask, t * s_g, zero)
                dzl = tl.where(mask, dzl, zero)
                dzg = tl.where(mask, dzg, zero)
                tl.store(wsp + 0 * C, tl.sum(mix, axis=1), mask=cmask1)
                tl.store(wsp + 1 * C, tl.sum(tsg, axis=1), mask=cmask1)
                tl.store(wsp + 2 * C, tl.sum(dzl, axis=1), mask=cmask1)
                tl.store(wsp + 3 * C, tl.sum(dzg, axis=1), mask=cmask1)
                tl.store(wsp + 4 * C, tl.sum(dzl * l, axis=1), mask=cmask1)
                tl.store(wsp + 5 * C, tl.sum(dzg * l, axis=1), mask=cmask1)
                tl.store(wsp + 6 * C, tl.sum(dl, axis=1), mask=cmask1)
                for i in tl.static_range(3):
                    for j in tl.static_range(3):
                        xv = xs[(i + 1) * 5 + (j + 1)]
                        tl.store(wsp + (7 + i * 3 + j) * C, tl.sum(dl * xv, axis=1), mask=cmask1)
    tl.store(
        dx_ptr + (n * sdxn + cs * sdxc + h * sdxh + w * sdxw),
        dx.to(dx_ptr.dtype.element_ty),
        mask=mask,
    )


# ----------------------------------------------------------------------------- launchers


def _interpreting():
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_device(x):
    if x.device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"lgf_fused (triton backend): x is on {x.device}; Triton kernels need CUDA tensors "
            "(or TRITON_INTERPRET=1 set before triton is imported, to run them on the CPU)"
        )


def _on_device(x):
    """Launch on x's GPU (Triton launches on the current CUDA device)."""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def _acc_dtypes(x):
    if x.dtype == torch.float64:
        return torch.float64, tl.float64
    return torch.float32, tl.float32


def _pow2(v, name):
    if v is None:
        return None
    if v < 1 or v & (v - 1):
        raise ValueError(f"lgf triton launcher: {name} must be a power of two >= 1, got {v}")
    return v


def _block_sizes(x, tile, block_c=None, block_p=None):
    """One fixed config from the shape: long side of the tile along x's unit-stride dimension."""
    _, C, H, W = x.shape
    np2_c, np2_p = triton.next_power_of_2(C), triton.next_power_of_2(H * W)
    if x.stride(1) == 1 and C > 1:  # channels_last-like: channels are contiguous
        bc = min(np2_c, 32)
        bp = min(np2_p, max(1, tile // bc))
    else:
        bp = min(np2_p, 256)
        bc = min(np2_c, max(1, tile // bp))
    return _pow2(block_c, "block_c") or bc, _pow2(block_p, "block_p") or bp


def _grid(x, bc, bp):
    N, C, H, W = x.shape
    n_cblocks, n_pblocks = triton.cdiv(C, bc), triton.cdiv(H * W, bp)
    return n_cblocks, n_pblocks, (N * n_cblocks * n_pblocks,)


def _params(weight, bias, g, gate, gamma):
    # Per-channel tensors (and g, N*C values) are tiny: make them contiguous so the kernel can
    # index them as flat arrays. x, dy, y and dx are addressed through their strides instead.
    return (
        weight.contiguous(),
        bias.contiguous(),
        g.contiguous(),
        gate.contiguous(),
        gamma.contiguous(),
    )


def lgf_forward(x, weight, bias, g, gate, gamma, *, block_c=None, block_p=None):
    """y = x + gamma * (s_l*l + s_g*g) with one Triton pass over x; y in x's memory format.

    block_c / block_p override the tile (powers of two); None picks them from the shape.
    """
    _check_device(x)
    y = torch.empty_like(x, memory_format=output_memory_format(x))
    if y.numel() == 0:
        return y
    _, ACC = _acc_dtypes(x)
    weight, bias, g, gate, gamma = _params(weight, bias, g, gate, gamma)
    bc, bp = _block_sizes(x, _FWD_TILE, block_c, block_p)
    n_cblocks, n_pblocks, grid = _grid(x, bc, bp)
    _, C, H, W = x.shape
    with _on_device(x):
        _lgf_fwd_kernel[grid](
            x,
            weight,
            bias,
            g,
            gate,
            gamma,
            y,
            C,
            H,
            W,
            *x.stride(),
            *y.stride(),
            n_cblocks,
            n_pblocks,
            ACC=ACC,
            BLOCK_C=bc,
            BLOCK_P=bp,
            num_warps=8,
        )
    return y


def _finish_grads(ws, g, weight, gate, acc):
    """Fixed-order reduction of the workspace ws[N, pixel blocks, slot, C] into the parameter grads."""
    C = weight.shape[0]
    per_nc = ws.sum(dim=1)  # (N, NUM_SLOTS, C)
    tot = per_nc.sum(dim=0)  # (NUM_SLOTS, C)
    g_acc = g.to(acc)
    gate_acc = gate.to(acc)
    dg = per_nc[:, S_TSG] + gate_acc[1] * per_nc[:, S_DZL] + gate_acc[4] * per_nc[:, S_DZG]
    dgate = torch.stack(
        [
            tot[S_DZL_L],
            (g_acc * per_nc[:, S_DZL]).sum(0),
            tot[S_DZL],
            tot[S_DZG_L],
            (g_acc * per_nc[:, S_DZG]).sum(0),
            tot[S_DZG],
        ]
    )
    dweight = tot[S_DW0 : S_DW0 + 9].t().reshape(C, 1, 3, 3)
    pdt = weight.dtype

    def out(t, dtype):  # a fresh contiguous tensor: custom-op outputs must not alias each other
        return t.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)

    return (
        out(dweight, pdt),
        out(tot[S_DL], pdt),
        out(dg, g.dtype),
        out(dgate, pdt),
        out(tot[S_MIX], pdt),
    )


def lgf_backward(dy, x, weight, bias, g, gate, gamma, *, block_c=None, block_p=None):
    """(dx, dweight, dbias, dg, dgate, dgamma); dx in x's memory format, parameter grads in the
    parameter dtype, dg in g's dtype. dy may have any strides (stride 0 included: it is only read)."""
    _check_device(x)
    if dy.shape != x.shape or dy.device != x.device:
        raise ValueError(
            f"lgf_fused backward: dy must have x's shape {tuple(x.shape)} on {x.device}, "
            f"got {tuple(dy.shape)} on {dy.device}"
        )
    N, C, H, W = x.shape
    dx = torch.empty_like(x, memory_format=output_memory_format(x))
    acc, ACC = _acc_dtypes(x)
    if x.numel() == 0:
        pz = dict(dtype=weight.dtype, device=x.device)
        return (
            dx,
            torch.zeros(weight.shape, **pz),
            torch.zeros(bias.shape, **pz),
            torch.zeros(g.shape, dtype=g.dtype, device=x.device),
            torch.zeros(gate.shape, **pz),
            torch.zeros(gamma.shape, **pz),
        )
    weight, bias, g, gate, gamma = _params(weight, bias, g, gate, gamma)
    bc, bp = _block_sizes(x, _BWD_TILE, block_c, block_p)
    n_cblocks, n_pblocks, grid = _grid(x, bc, bp)
    ws = torch.empty((N, n_pblocks, NUM_SLOTS, C), dtype=acc, device=x.device)
    with _on_device(x):
        _lgf_bwd_kernel[grid](
            dy,
            x,
            weight,
            bias,
            g,
            gate,
            gamma,
            dx,
            ws,
            C,
            H,
            W,
            *dy.stride(),
            *x.stride(),
            *dx.stride(),
            n_cblocks,
            n_pblocks,
            ACC=ACC,
            BLOCK_C=bc,
            BLOCK_P=bp,
            NUM_SLOTS=NUM_SLOTS,
            num_warps=4,
        )
    return (dx,) + _finish_grads(ws, g, weight, gate, acc)
