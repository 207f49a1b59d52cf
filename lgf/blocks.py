"""The Local-Global Fusion block family (docs/design.md §4).

- `LGF`: the fused block. Its hot part (depthwise 3x3, two sigmoid gates, residual) is one call
  of `lgf_ops.lgf_fused`; only the tiny global branch (GAP -> 1x1 -> GN -> SiLU on an (N, C, 1, 1)
  map) runs as ordinary PyTorch.
- `LGFPaper`: the published block, in plain PyTorch, as a control.
- `SE`, `CBAM`: the standard attention controls.

Every block maps (N, C, H, W) to (N, C, H, W) and keeps the input's dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import lgf_ops

__all__ = ["LGF", "LGFPaper", "SE", "CBAM", "GATES", "group_norm_groups"]

GATES = ("sigmoid", "sum", "softmax")

# gate="sum" feeds this constant bias to both gates: sigmoid(40) rounds to exactly 1.0 in fp32
# and fp64 (exp(-40) = 4e-18 is below half an ulp of 1), and exp(40) = 2e17 does not overflow fp32,
# so either way a kernel writes its sigmoid, both gates are exactly 1 and their gradient is 0.
SUM_GATE_BIAS = 40.0


def _check_channels(name: str, channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{name}: channels must be a positive int, got {channels!r}")


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """GroupNorm group count: `max_groups` when it divides `channels` into groups of >= 2.

    Otherwise the largest divisor of `channels` not above `max_groups` that still leaves at least
    two channels per group (a one-channel group on a 1x1 map normalises to a constant), or 1.
    """
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise ValueError(f"gn_groups must be a positive int, got {max_groups!r}")
    for groups in range(min(max_groups, channels // 2), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def _global_branch(channels: int, groups: int) -> nn.Sequential:
    """GAP -> 1x1 conv (no bias) -> GroupNorm -> SiLU, giving an (N, C, 1, 1) context."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.GroupNorm(groups, channels),
        nn.SiLU(),
    )


class LGF(nn.Module):
    """Local-Global Fusion, computed by the fused op `lgf_ops.lgf_fused`.

        l   = depthwise_conv3x3(x) + bias                      (local branch)
        g   = SiLU(GN(conv1x1(GAP(x))))                        (global branch, (N, C))
        s_l = sigmoid(a_l*l + b_l*g + c_l)   s_g = sigmoid(a_g*l + b_g*g + c_g)
        y   = x + gamma * (s_l*l + s_g*g)

    Args:
        channels: C, the number of input (and output) channels.
        gn_groups: GroupNorm groups of the global branch (see `group_norm_groups` for small C).
        gate: "sigmoid" (learnable per-channel coefficients, `gate` Parameter (6, C) with rows
            a_l, b_l, c_l, a_g, b_g, c_g, zero-initialised so both gates start at 0.5);
            "sum" (both gates fixed at 1: no gate parameter, the op is fed a constant (6, C)
            buffer with a = b = 0 and c = +40); "softmax" (z_g = -z_l so s_l + s_g = 1: `gate`
            Parameter (3, C) with rows a_l, b_l, c_l, fed to the op as [a, b, c, -a, -b, -c]).
        backend: backend of `lgf_ops.lgf_fused` ("auto", "cpp", "cuda", "triton", "reference",
            or None for $LGF_BACKEND).

    AMP: under autocast x may be float16/bfloat16 while the parameters stay float32; the op
    accepts that and returns x's dtype.
    """

    def __init__(
        self,
        channels: int,
        gn_groups: int = 32,
        gate: str = "sigmoid",
        backend: str | None = "auto",
    ):
        super().__init__()
        _check_channels("LGF", channels)
        if gate not in GATES:
            raise ValueError(f"LGF: gate must be one of {GATES}, got {gate!r}")
        if backend is not None and backend not in lgf_ops.BACKENDS:
            raise ValueError(
                f"LGF: backend must be one of {lgf_ops.BACKENDS} or None, got {backend!r}"
            )
        self.channels = channels
        self.gate_mode = gate
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(channels, 1, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels))
        self.global_branch = _global_branch(channels, group_norm_groups(channels, gn_groups))
        if gate == "sigmoid":
            self.gate = nn.Parameter(torch.zeros(6, channels))
        elif gate == "softmax":
            self.gate = nn.Parameter(torch.zeros(3, channels))
        else:
            self.register_parameter("gate", None)
            fixed = torch.zeros(6, channels)
            fixed[2] = SUM_GATE_BIAS
            fixed[5] = SUM_GATE_BIAS
            self.register_buffer("fixed_gate", fixed, persistent=False)
        self.gamma = nn.Parameter(torch.full((channels,), 0.1))
        self.reset_conv_parameters()

    def reset_conv_parameters(self) -> None:
        """Initialise the depthwise weight and bias exactly as nn.Conv2d does by default."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = self.weight[0].numel()  # 1 * 3 * 3
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.bias, -bound, bound)

    def effective_gate(self) -> torch.Tensor:
        """The (6, C) coefficient matrix fed to the op (rows a_l, b_l, c_l, a_g, b_g, c_g)."""
        # Tested on `gate`, not on gate_mode, so that TorchScript compiles only the branch this
        # block has (a "sum" block has no `gate`, the others no `fixed_gate`).
        gate = self.gate
        if gate is None:
            return self.fixed_gate.to(self.weight.dtype)
        if gate.shape[0] == 3:  # "softmax"
            return torch.cat([gate, -gate], dim=0)
        return gate

    def global_context(self, x: torch.Tensor) -> torch.Tensor:
        """g of shape (N, C), in x's dtype (the op requires g to match x)."""
        return self.global_branch(x).flatten(1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            shape = ", ".join([str(n) for n in x.shape])
            raise ValueError(f"LGF: expected input (N, {self.channels}, H, W), got ({shape})")
        g = self.global_context(x)
        gate = self.effective_gate()
        if torch.jit.is_scripting():
            backend = "auto" if self.backend is None else self.backend
            return lgf_ops.lgf_fused_script(
                x, self.weight, self.bias, g, gate, self.gamma, backend=backend
            )
        return self._fused(x, g, gate)

    @torch.jit.unused
    def _fused(self, x: torch.Tensor, g: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return lgf_ops.lgf_fused(
            x, self.weight, self.bias, g, gate, self.gamma, backend=self.backend
        )

    def gate_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_l, s_g), each (N, 1, H, W) float32: the two gates averaged over channels.

        Plain PyTorch from the same parameters (for visualisation; wrap it in torch.no_grad()).
        """
        x32 = x.float()
        l = F.conv2d(x32, self.weight.float(), self.bias.float(), padding=1, groups=self.channels)
        g = self.global_context(x).float()[:, :, None, None]
        a_l, b_l, c_l, a_g, b_g, c_g = (
            row.float().view(1, -1, 1, 1) for row in self.effective_gate().unbind(0)
        )
        s_l = torch.sigmoid(a_l * l + b_l * g + c_l)
        s_g = torch.sigmoid(a_g * l + b_g * g + c_g)
        return s_l.mean(1, keepdim=True), s_g.mean(1, keepdim=True)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, gate={self.gate_mode!r}, backend={self.backend!r}"


class LGFPaper(nn.Module):
    """The published LGF block (its spatially gated variant), faithfully, in plain PyTorch.

        L   = ReLU(GN(conv1x1(dwconv3x3(x))))                  (N, C, H, W)
        G   = SiLU(GN(conv1x1(GAP(x))))                        (N, C, 1, 1)
        z   = GN(conv1x1_{C/4 -> 2C}(ReLU(conv1x1_{C -> C/4}(x))))   (N, 2C, H, W)
        w   = sigmoid(clamp(z, -15, 15) / (softplus(t) + 1e-3))      in fp32
        w_L, w_G = w[:, :C], w[:, C:]
        out = x + gamma * (w_L * L + w_G * G)

    Details the design (docs/design.md §4) leaves open, as the published code has them: the gate
    reads the block input x (per pixel); the C -> C/4 conv has no bias; the C/4 -> 2C conv has a
    bias and both its weight and bias start at zero (so z = 0 and both gates start at 0.5); the
    2C GroupNorm has 32 groups like the others; the temperature t starts at 1.0; the first C gate
    channels are w_L. The depthwise and 1x1 convs followed by GroupNorm have no bias. gamma is one
    scalar, 0.1. For C not divisible by 32 the GroupNorms use `group_norm_groups` (the paper only
    used C >= 512).
    """

    def __init__(
        self,
        channels: int,
        gn_groups: int = 32,
        reduction: int = 4,
        clamp: float = 15.0,
        temperature: float = 1.0,
    ):
        super().__init__()
        _check_channels("LGFPaper", channels)
        self.channels = channels
        self.clamp = float(clamp)
        hidden = max(channels // reduction, 1)
        groups = group_norm_groups(channels, gn_groups)
        self.local = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.GroupNorm(groups, channels),
            nn.ReLU(),
        )
        self.global_branch = _global_branch(channels, groups)
        self.gate_reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.gate_expand = nn.Conv2d(hidden, 2 * channels, 1, bias=True)
        self.gate_norm = nn.GroupNorm(group_norm_groups(2 * channels, gn_groups), 2 * channels)
        nn.init.zeros_(self.gate_expand.weight)
        nn.init.zeros_(self.gate_expand.bias)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.gamma = nn.Parameter(torch.tensor(0.1))

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_L, w_G), each (N, C, H, W) float32."""
        z = self.gate_norm(self.gate_expand(F.relu(self.gate_reduce(x))))
        with torch.autocast(device_type=x.device.type, enabled=False):
            tau = F.softplus(self.temperature.float()) + 1e-3
            w = torch.sigmoid(z.float().clamp(-self.clamp, self.clamp) / tau)
        return w[:, : self.channels], w[:, self.channels :]

    def gate_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_L, w_G) averaged over channels, each (N, 1, H, W) float32."""
        w_l, w_g = self.gates(x)
        return w_l.mean(1, keepdim=True), w_g.mean(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        glob = self.global_branch(x)
        w_l, w_g = self.gates(x)
        fused = w_l.to(x.dtype) * local + w_g.to(x.dtype) * glob
        return (x + self.gamma * fused).to(x.dtype)


class SE(nn.Module):
    """Squeeze-and-Excitation: x * sigmoid(W2 ReLU(W1 GAP(x))), W1: C -> C/r, W2: C/r -> C.

    The two 1x1 layers have no bias, as in the common PyTorch implementations and the published
    controls. Parameters: 2 * C * (C // r).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        _check_channels("SE", channels)
        hidden = max(channels // reduction, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (channel then spatial attention).

        x' = x  * sigmoid(MLP(AvgPool(x)) + MLP(MaxPool(x)))              (shared MLP C -> C/r -> C)
        y  = x' * sigmoid(conv_kxk([mean_c(x'), max_c(x')]))              (2 -> 1 channels)

    MLP and spatial conv without bias (parameters: 2 * C * (C // r) + 2 * k * k).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        _check_channels("CBAM", channels)
        if kernel_size % 2 != 1:
            raise ValueError(f"CBAM: kernel_size must be odd, got {kernel_size}")
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = F.adaptive_avg_pool2d(x, 1)
        mx = F.adaptive_max_pool2d(x, 1)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(desc))
