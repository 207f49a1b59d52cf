"""Per-pixel math of the fused LGF op as Triton device functions (docs/design.md §2).

Shared by the forward and both backward kernels, with the split of a program id into its tile.
`ACC` is the accumulation dtype: fp32 for fp16/bf16/fp32 inputs, fp64 for fp64 inputs.

Saturated gates. The backward needs the slope of each gate; with E = exp(-|z|) <= 1 and
r = 1 / (1 + E):

    sigmoid(z)           = r  (z >= 0)   or   E * r  (z < 0)
    sigmoid'(z) = s(1-s) = E * r * r     (no 1 - s: an s one ulp below 1 would give ~6e-8
                                          instead of ~0, times a large l)

so exp never overflows and a saturated gate has a slope of exactly 0 (E underflows). The
forward only needs s = 1 / (1 + exp(-z)): there exp(-z) may overflow to inf, which gives
exactly 0. Products are grouped so that large activations do not overflow before a small
factor is applied: t * l * s'(z) as t * (l * s'(z)); the forward's gamma multiplies the mix.
"""

import triton
import triton.language as tl

# Slots of the per-program partial sums (the numbering of csrc/lgf_math.h PartialSlot), as
# constexprs so that the kernels can read them (int(S_DL) in Python).
S_MIX, S_TSG, S_DZL, S_DZG = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2), tl.constexpr(3)
S_DZL_L, S_DZG_L, S_DL, S_DW0 = tl.constexpr(4), tl.constexpr(5), tl.constexpr(6), tl.constexpr(7)
NUM_SLOTS = tl.constexpr(16)  # S_DW0 + the 9 taps of dweight


@triton.jit
def sigmoid(z, ACC: tl.constexpr):
    """1 / (1 + exp(-z)) for the forward: exp may overflow to inf, giving exactly 0."""
    e = tl.exp(-z)
    if ACC == tl.float64:
        return 1.0 / (1.0 + e)
    else:  # 1 / d as rsqrt(d)^2: two instructions and a few ulp (IEEE division: five)
        r = tl.math.rsqrt(1.0 + e)
        return r * r


@triton.jit
def sigmoid_and_slope(z, ACC: tl.constexpr):
    """(sigmoid(z), sigmoid'(z)), stable for saturated gates (module docstring)."""
    e = tl.exp(-tl.abs(z))
    if ACC == tl.float64:  # exact in fp64 (gradcheck)
        r = 1.0 / (1.0 + e)
    else:
        r = tl.math.rsqrt(1.0 + e)
        r = r * r
    er = e * r
    return tl.where(z >= 0, r, er), er * r


@triton.jit
def conv3x3(wt, xw, bias):
    """l = bias + sum_k weight_k * x_k over the 9 taps (tuples in row-major order)."""
    l = bias
    for k in tl.static_range(9):
        l += wt[k] * xw[k]
    return l


@triton.jit
def fused_output(xw, wt, bias, a_l, kl, a_g, kg, gamma, gv, ACC: tl.constexpr):
    """y at the centre of the 3x3 window xw: x + gamma * (s_l * l + s_g * g), in that grouping
    (the mix is bounded by |l| + |g|, and an infinite gamma gives the reference's signed inf,
    where gamma distributed over the two terms would give inf - inf)."""
    l = conv3x3(wt, xw, bias)
    s_l = sigmoid(a_l * l + kl, ACC)
    s_g = sigmoid(a_g * l + kg, ACC)
    return xw[4] + gamma * (s_l * l + s_g * gv)


@triton.jit
def pixel_grads(l, dy, a_l, kl, a_g, kg, gamma, gv, ACC: tl.constexpr):
    """dl and the per-pixel terms of the parameter gradients: (dl, dz_l, dz_g, s_l, s_g, t)."""
    s_l, d_l = sigmoid_and_slope(a_l * l + kl, ACC)
    s_g, d_g = sigmoid_and_slope(a_g * l + kg, ACC)
    t = dy * gamma
    dzl = t * (l * d_l)
    dzg = t * (gv * d_g)
    dl = t * s_l + a_l * dzl + a_g * dzg
    return dl, dzl, dzg, s_l, s_g, t


@triton.jit
def accumulate(acc, xw, l, dy, dl, dzl, dzg, s_l, s_g, t, gv):
    """acc (a tuple of NUM_SLOTS running sums) plus this pixel's terms, in slot order."""
    out = (
        acc[0] + dy * (s_l * l + s_g * gv),
        acc[1] + t * s_g,
        acc[2] + dzl,
        acc[3] + dzg,
        acc[4] + dzl * l,
        acc[5] + dzg * l,
        acc[6] + dl,
    )
    for k in tl.static_range(9):
        out = out + (acc[7 + k] + dl * xw[k],)
    return out


@triton.jit
def load_channel_params(
    w_ptr, b_ptr, g_ptr, gate_ptr, gamma_ptr, n, cs, cmask, C, ACC: tl.constexpr
):
    """Per-(n, c) values, shaped like cs: the 9 taps, then bias, a_l, kl = b_l*g + c_l, a_g,
    kg = b_g*g + c_g, gamma, g."""
    gv = tl.load(g_ptr + n * C + cs, mask=cmask, other=0.0).to(ACC)
    rows = ()
    for k in tl.static_range(6):
        rows = rows + (tl.load(gate_ptr + k * C + cs, mask=cmask, other=0.0).to(ACC),)
    wt = ()
    for k in tl.static_range(9):
        wt = wt + (tl.load(w_ptr + cs * 9 + k, mask=cmask, other=0.0).to(ACC),)
    bias = tl.load(b_ptr + cs, mask=cmask, other=0.0).to(ACC)
    gamma = tl.load(gamma_ptr + cs, mask=cmask, other=0.0).to(ACC)
    kl = rows[1] * gv + rows[2]
    kg = rows[4] * gv + rows[5]
    return wt, bias, rows[0], kl, rows[3], kg, gamma, gv


@triton.jit
def repeat(v, N: tl.constexpr):
    """(v, v, ..., v), N times: the starting value of a tuple of running sums."""
    out = ()
    for _ in tl.static_range(N):
        out = out + (v,)
    return out


@triton.jit
def split_program_id(n_wblocks, n_strips, n_cblocks):
    """(n, channel block, row strip, column block) of this program; column block fastest, so
    the programs of one strip run side by side and share their halo rows in L2."""
    pid = tl.program_id(0)
    wb = pid % n_wblocks
    rest = pid // n_wblocks
    rs = rest % n_strips
    rest = rest // n_strips
    return rest // n_cblocks, rest % n_cblocks, rs, wb


@triton.jit
def i64(v):
    """v as an int64 scalar; v may be a stride that Triton specialised to the constant 1."""
    return tl.full([], 1, tl.int64) * v
