"""Multi-head conditioning: each sample is read out by its own task's head, on 2D and 3D decoders."""

from __future__ import annotations

import pytest
import torch

from sparsessp.config import load_config
from sparsessp.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["model.conditioning=multihead", "model.channels=[8,8,8]", "model.embed_dim=16", "data.patch=[8,16,16]",
        "data.sparse_ratio=2", "data.structures=[dna,tom20,zo1]"]


@pytest.mark.parametrize("topology", ["3d", "3to2d"])
def test_each_sample_uses_its_own_head(topology: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(None, [*TINY, f"model.topology={topology}"])).eval()
    x = torch.randn(1, 1, 4, 16, 16).expand(3, -1, -1, -1, -1).contiguous()
    tasks = torch.tensor([0, 1, 2])
    with torch.no_grad():
        y = model(x, tasks)
        alone = torch.cat([model(x[:1], torch.tensor([t])) for t in range(3)])
    assert y.shape == (3, 1, 8, 16, 16)
    torch.testing.assert_close(y, alone)
    assert not torch.allclose(y[0], y[1])


def test_gradient_reaches_only_the_used_heads() -> None:
    model = build_model(load_config(None, [*TINY, "model.topology=3d"]))
    model(torch.randn(2, 1, 4, 16, 16), torch.tensor([0, 2])).square().mean().backward()
    grad = model.head.conv.weight.grad.flatten(1).abs().sum(1)
    assert grad[0] > 0 and grad[2] > 0 and grad[1] == 0
