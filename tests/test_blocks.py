"""Tests of the block family in lgf/blocks.py: LGF (fused), LGFPaper, SE, CBAM, and the FLOP
formula."""

import math

import pytest
import torch
import torch.nn.functional as F
from op_utils import backends_for_cpu_tensors
from torch.utils.flop_counter import FlopCounterMode

import lgf_ops
from lgf import CBAM, LGF, SE, LGFPaper
from lgf.blocks import group_norm_groups

# "triton" runs CPU tensors only under Triton's interpreter (see op_utils)
CPU_BACKENDS = ["auto", "reference"] + backends_for_cpu_tensors()


def _randomize_lgf(block, seed=0):
    """Non-trivial gate coefficients and gamma, so the formula checks can fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if block.gate is not None:
            block.gate.copy_(torch.randn(block.gate.shape, generator=gen) * 0.7)
        block.gamma.copy_(torch.rand(block.gamma.shape, generator=gen) + 0.5)
    return block


def _lgf_formula(block, x):
    """y = x + gamma * (s_l*l + s_g*g), written out from the block's parameters."""
    C = x.shape[1]
    l = F.conv2d(x, block.weight, block.bias, padding=1, groups=C)
    pooled = x.mean(dim=(2, 3), keepdim=True)
    conv, gn = block.global_branch[1], block.global_branch[2]
    g = F.silu(
        F.group_norm(F.conv2d(pooled, conv.weight), gn.num_groups, gn.weight, gn.bias, gn.eps)
    )
    if block.gate_mode == "sigmoid":
        coef = block.gate
    elif block.gate_mode == "softmax":
        coef = torch.cat([block.gate, -block.gate])
    else:
        coef = None
    if coef is None:
        s_l = s_g = torch.ones_like(l)
    else:
        a_l, b_l, c_l, a_g, b_g, c_g = (r.view(1, C, 1, 1) for r in coef)
        s_l = torch.sigmoid(a_l * l + b_l * g + c_l)
        s_g = torch.sigmoid(a_g * l + b_g * g + c_g)
    return x + block.gamma.view(1, C, 1, 1) * (s_l * l + s_g * g)


# ---------------------------------------------------------------- LGF


def test_lgf_initialisation():
    torch.manual_seed(0)
    block = LGF(64)
    assert block.weight.shape == (64, 1, 3, 3) and block.bias.shape == (64,)
    assert block.gate.shape == (6, 64) and torch.count_nonzero(block.gate) == 0
    assert torch.equal(block.gamma, torch.full((64,), 0.1))
    # nn.Conv2d's default init: both uniform in +-1/sqrt(fan_in) = +-1/3 for a depthwise 3x3.
    bound = 1.0 / 3.0
    assert block.weight.abs().max() <= bound and block.bias.abs().max() <= bound
    assert block.weight.std() > 0.5 * bound / math.sqrt(3)  # not all zero / constant
    conv, gn = block.global_branch[1], block.global_branch[2]
    assert conv.bias is None and conv.kernel_size == (1, 1) and gn.num_groups == 32
    s_l, s_g = block.gate_maps(torch.randn(2, 64, 5, 7))
    assert s_l.shape == (2, 1, 5, 7)
    assert torch.allclose(s_l, torch.full_like(s_l, 0.5)) and torch.allclose(
        s_g, torch.full_like(s_g, 0.5)
    )


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("gate", ["sigmoid", "softmax", "sum"])
def test_lgf_matches_formula(gate, backend):
    torch.manual_seed(1)
    block = _randomize_lgf(LGF(16, gn_groups=4, gate=gate, backend=backend))
    x = torch.randn(2, 16, 9, 7)
    y = block(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, _lgf_formula(block, x), rtol=1e-5, atol=1e-5)


def test_lgf_gradients_match_formula():
    torch.manual_seed(2)
    block = _randomize_lgf(LGF(8, gn_groups=4))
    x = torch.randn(2, 8, 6, 5, requires_grad=True)
    params = [x] + list(block.parameters())
    got = torch.autograd.grad(block(x).square().sum(), params)
    want = torch.autograd.grad(_lgf_formula(block, x).square().sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lgf_gate_sum_fixes_gates_at_one():
    torch.manual_seed(3)
    block = LGF(16, gn_groups=4, gate="sum")
    assert block.gate is None
    assert not any("gate" in name for name, _ in block.named_parameters())
    x = torch.randn(2, 16, 6, 6)
    s_l, s_g = block.gate_maps(x)
    assert torch.equal(s_l, torch.ones_like(s_l)) and torch.equal(s_g, torch.ones_like(s_g))
    # y = x + gamma * (l + g) exactly, through the fused op
    l = F.conv2d(x, block.weight, block.bias, padding=1, groups=16)
    g = block.global_context(x)[:, :, None, None]
    torch.testing.assert_close(block(x), x + 0.1 * (l + g), rtol=1e-5, atol=1e-6)


def test_lgf_gate_softmax_sums_to_one():
    torch.manual_seed(4)
    block = _randomize_lgf(LGF(16, gn_groups=4, gate="softmax"))
    assert block.gate.shape == (3, 16)
    coef = block.effective_gate()
    assert torch.equal(coef[3:], -coef[:3])
    x = torch.randn(2, 16, 6, 6)
    s_l, s_g = block.gate_maps(x)
    assert s_l.std() > 1e-3  # the randomized gate is not constant
    torch.testing.assert_close(s_l + s_g, torch.ones_like(s_l), rtol=0, atol=1e-6)


def test_lgf_gate_maps_are_channel_means_of_the_gates():
    torch.manual_seed(5)
    block = _randomize_lgf(LGF(8, gn_groups=4))
    x = torch.randn(1, 8, 5, 5)
    l = F.conv2d(x, block.weight, block.bias, padding=1, groups=8)
    g = block.global_context(x)[:, :, None, None]
    a_l, b_l, c_l, a_g, b_g, c_g = (r.view(1, 8, 1, 1) for r in block.gate)
    s_l, s_g = block.gate_maps(x)
    torch.testing.assert_close(s_l, torch.sigmoid(a_l * l + b_l * g + c_l).mean(1, keepdim=True))
    torch.testing.assert_close(s_g, torch.sigmoid(a_g * l + b_g * g + c_g).mean(1, keepdim=True))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_lgf_autocast_bf16(backend):
    torch.manual_seed(6)
    block = _randomize_lgf(LGF(16, gn_groups=4, backend=backend))
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.to(torch.bfloat16)
        y = block(xb)
    assert y.dtype == torch.bfloat16
    assert block.weight.dtype == torch.float32
    torch.testing.assert_close(y.float(), _lgf_formula(block, xb.float()), rtol=3e-2, atol=3e-2)
    y.float().sum().backward()
    assert block.weight.grad is not None and block.weight.grad.dtype == torch.float32
    assert torch.isfinite(block.gate.grad).all() and block.gate.grad.abs().sum() > 0


def test_lgf_torch_compile_inductor_fullgraph():
    torch.manual_seed(7)
    block = _randomize_lgf(LGF(16, gn_groups=4))
    x = torch.randn(2, 16, 12, 10, requires_grad=True)
    compiled = torch.compile(block, fullgraph=True)
    y = compiled(x)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    y_ref = block(x)
    (gx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gate", ["softmax", "sum"])
def test_lgf_gate_modes_trace_fullgraph(gate):
    block = _randomize_lgf(LGF(8, gn_groups=4, gate=gate))
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    y = torch.compile(block, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(y, block(x))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_lgf_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        LGF(0)
    with pytest.raises(ValueError, match="gate must be one of"):
        LGF(8, gate="tanh")
    with pytest.raises(ValueError, match="backend must be one of"):
        LGF(8, backend="metal")
    with pytest.raises(ValueError, match=r"expected input \(N, 8, H, W\)"):
        LGF(8, gn_groups=4)(torch.randn(1, 4, 5, 5))


def test_group_norm_groups_for_small_channel_counts():
    assert (
        group_norm_groups(512) == 32
        and group_norm_groups(1024) == 32
        and group_norm_groups(64) == 32
    )
    assert group_norm_groups(16) == 8  # never one channel per group
    assert group_norm_groups(48) == 24
    assert group_norm_groups(3) == 1 and group_norm_groups(1) == 1
    with pytest.raises(ValueError, match="gn_groups"):
        group_norm_groups(64, 0)


# ---------------------------------------------------------------- LGFPaper, SE, CBAM


def test_lgf_paper_matches_published_formula():
    torch.manual_seed(8)
    C = 64
    block = LGFPaper(C)
    with torch.no_grad():  # leave the zero init so the gates actually vary
        block.gate_expand.weight.normal_(0, 0.5)
        block.gate_expand.bias.normal_(0, 0.5)
        block.temperature.fill_(0.3)
    x = torch.randn(2, C, 6, 5)
    dw, pw, gn_l = block.local[0], block.local[1], block.local[2]
    local = F.relu(
        F.group_norm(
            F.conv2d(F.conv2d(x, dw.weight, padding=1, groups=C), pw.weight),
            32,
            gn_l.weight,
            gn_l.bias,
        )
    )
    conv_g, gn_g = block.global_branch[1], block.global_branch[2]
    glob = F.silu(
        F.group_norm(
            F.conv2d(x.mean((2, 3), keepdim=True), conv_g.weight), 32, gn_g.weight, gn_g.bias
        )
    )
    hidden = F.relu(F.conv2d(x, block.gate_reduce.weight))
    z = F.group_norm(
        F.conv2d(hidden, block.gate_expand.weight, block.gate_expand.bias),
        32,
        block.gate_norm.weight,
        block.gate_norm.bias,
    )
    w = torch.sigmoid(z.clamp(-15, 15) / (F.softplus(torch.tensor(0.3)) + 1e-3))
    want = x + 0.1 * (w[:, :C] * local + w[:, C:] * glob)
    torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)


def test_lgf_paper_initial_gates_are_one_half():
    torch.manual_seed(9)
    block = LGFPaper(32)
    assert torch.count_nonzero(block.gate_expand.weight) == 0 and block.gamma.shape == ()
    w_l, w_g = block.gate_maps(torch.randn(1, 32, 4, 4))
    assert torch.equal(w_l, torch.full_like(w_l, 0.5)) and torch.equal(
        w_g, torch.full_like(w_g, 0.5)
    )


def test_lgf_paper_autocast_keeps_dtype():
    block = LGFPaper(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(torch.randn(1, 32, 6, 6, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_se_matches_standard_definition():
    torch.manual_seed(10)
    block = SE(64, reduction=16)
    x = torch.randn(2, 64, 5, 5)
    fc1, fc2 = block.fc[0].weight.flatten(1), block.fc[2].weight.flatten(1)
    scale = torch.sigmoid(F.relu(x.mean((2, 3)) @ fc1.t()) @ fc2.t())
    torch.testing.assert_close(block(x), x * scale[:, :, None, None])


def test_cbam_matches_standard_definition():
    torch.manual_seed(11)
    block = CBAM(64, reduction=16, kernel_size=7)
    x = torch.randn(2, 64, 9, 9)
    fc1, fc2 = block.mlp[0].weight.flatten(1), block.mlp[2].weight.flatten(1)

    def mlp(v):
        return F.relu(v @ fc1.t()) @ fc2.t()

    ca = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    x1 = x * ca[:, :, None, None]
    desc = torch.cat([x1.mean(1, keepdim=True), x1.amax(1, keepdim=True)], 1)
    want = x1 * torch.sigmoid(F.conv2d(desc, block.spatial.weight, padding=3))
    torch.testing.assert_close(block(x), want)
    with pytest.raises(ValueError, match="kernel_size"):
        CBAM(64, kernel_size=4)


# ---------------------------------------------------------------- parameter counts


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("C", [512, 1024])
def test_parameter_counts(C):
    # LGF: dw weight 9C + bias C + global 1x1 C^2 + GN 2C + gate 6C + gamma C
    assert _n_params(LGF(C)) == C * C + 19 * C
    assert _n_params(LGF(C, gate="softmax")) == C * C + 16 * C
    assert _n_params(LGF(C, gate="sum")) == C * C + 13 * C
    # LGFPaper: dw 9C + 1x1 C^2 + GN 2C | global 1x1 C^2 + GN 2C
    #           | gate C*C/4 + (C/4)*2C + 2C + GN 4C | t, gamma
    assert (
        _n_params(LGFPaper(C))
        == (C * C + 11 * C) + (C * C + 2 * C) + (C * C // 4 + C * C // 2 + 6 * C) + 2
    )
    # SE: C -> C/16 -> C without bias
    assert _n_params(SE(C)) == 2 * C * (C // 16)
    # CBAM: same MLP + a 2 -> 1 7x7 conv
    assert _n_params(CBAM(C)) == 2 * C * (C // 16) + 2 * 7 * 7


# ---------------------------------------------------------------- FLOP formula

FUSED_OPS = {"cpp": ("lgf", "fused_forward"), "triton": ("lgf_triton", "fused_forward")}


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_flop_counter_counts_the_fused_op(backend):
    if backend not in backends_for_cpu_tensors():
        pytest.skip(
            f"the {backend} backend cannot run CPU tensors here "
            f"(available: {lgf_ops.available_backends()}; Triton needs its interpreter on CPU)"
        )
    from lgf_ops import flops

    flops.register_flop_formulas()  # the Triton op registers itself on first import
    namespace, name = FUSED_OPS[backend]
    fwd = getattr(getattr(torch.ops, namespace), name)
    bwd = getattr(getattr(torch.ops, namespace), "fused_backward")
    N, C, H, W = 2, 8, 6, 5
    block = LGF(C, gn_groups=4, backend=backend)
    x = torch.randn(N, C, H, W, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        block(x).sum().backward()
    counts = counter.get_flop_counts()["Global"]
    numel = N * C * H * W
    assert counts[fwd] == flops.FORWARD_FLOPS_PER_ELEMENT * numel == 40 * numel
    assert counts[bwd] == flops.BACKWARD_FLOPS_PER_ELEMENT * numel == 108 * numel
    # plus the global branch's 1x1 conv on the pooled map (forward, and backward for input and
    # weight)
    assert counter.get_total_flops() == (40 + 108) * numel + 3 * 2 * N * C * C
