"""Building blocks shared by every topology, in 2D and 3D (``dims``), conditioned through a factory."""

from __future__ import annotations

from torch import Tensor, nn

from sparsessp.models.conditioning.base import (
    Conditioning,
    CondModule,
    Plain,
    Role,
    TaskContext,
    conv_nd,
    conv_transpose_nd,
    norm_nd,
)


class ResBlock(CondModule):
    """Residual block (paper: residual-style UNet layers): conv-norm-act-conv-norm (+ gate) + shortcut, act.

    The shortcut is a 1x1 conv + norm when the channel count changes. ``block_output`` runs last, so a
    mechanism such as CondNet sees every block's output.
    """

    def __init__(self, cond: Conditioning, dims: int, cin: int, cout: int, *, role: Role) -> None:
        super().__init__()
        self.conv1 = cond.conv(dims, cin, cout, 3, role=role)
        self.norm1 = cond.norm(dims, cout, role=role)
        self.conv2 = cond.conv(dims, cout, cout, 3, role=role)
        self.norm2 = cond.norm(dims, cout, role=role)
        self.gate = cond.residual_gate(dims, cout, role=role)
        self.shortcut: CondModule | None = None
        if cin != cout:
            self.shortcut = Plain(
                nn.Sequential(conv_nd(dims)(cin, cout, 1, bias=False), norm_nd(cond.norm_kind, dims, cout))
            )
        self.act = nn.ReLU(inplace=True)
        self.out = cond.block_output(dims, cout, role=role)

    def forward(self, x: Tensor, ctx: TaskContext) -> Tensor:
        h = self.act(self.norm1(self.conv1(x, ctx), ctx))
        h = self.gate(self.norm2(self.conv2(h, ctx), ctx), ctx)
        skip = x if self.shortcut is None else self.shortcut(x, ctx)
        return self.out(self.act(h + skip), ctx)


class Down(nn.Sequential):
    """Stride-2 convolution + norm + ReLU (the paper's UNet down-sampling). ``stride`` may be anisotropic."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int | tuple[int, ...], norm: str) -> None:
        super().__init__(
            conv_nd(dims)(cin, cout, stride, stride=stride, bias=False),
            norm_nd(norm, dims, cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Sequential):
    """Stride-2 transposed convolution + norm + ReLU. ``stride`` may be anisotropic."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int | tuple[int, ...], norm: str) -> None:
        super().__init__(
            conv_transpose_nd(dims)(cin, cout, stride, stride=stride, bias=False),
            norm_nd(norm, dims, cout),
            nn.ReLU(inplace=True),
        )
