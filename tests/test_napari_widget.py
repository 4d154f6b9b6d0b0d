"""The napari dock widget in a real Qt viewer: needs a display (an X server or Xvfb), skipped otherwise."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

_MISSING = [name for name in ("napari", "pytestqt", "qtpy") if importlib.util.find_spec(name) is None]
_NO_DISPLAY = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

pytestmark = [
    pytest.mark.skipif(bool(_MISSING), reason=f"the napari test extra is not installed (missing: {_MISSING}); "
                                              "pip install 'sparsessp[napari-dev]'"),
    pytest.mark.skipif(_NO_DISPLAY, reason="no display: the Qt widget test needs an X server; install Xvfb "
                                           "(Debian: xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1) and "
                                           "pytest-xvfb starts one; the widget's logic is tested in test_napari.py"),
]

QUICKSTART = Path(__file__).resolve().parents[1] / "src" / "sparsessp" / "configs" / "quickstart.yaml"


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from sparsessp.config import load_config
    from sparsessp.engine.checkpoint import base_state, save_checkpoint
    from sparsessp.models.registry import build_model

    cfg = load_config(QUICKSTART, ["data.structures=[dna,lamin_b1]", "data.patch=[32,64,64]", "model.channels=[4,8]",
                                   "model.embed_dim=8"])
    path = tmp_path / "small.ckpt"
    save_checkpoint(path, base_state(cfg, build_model(cfg).state_dict()))
    return path


def test_widget_predicts_in_a_worker_and_adds_scaled_layers(make_napari_viewer, qtbot, checkpoint: Path) -> None:
    from sparsessp.napari.widget import PredictWidget

    viewer = make_napari_viewer()
    tl = viewer.add_image(np.random.default_rng(0).normal(size=(8, 64, 64)).astype(np.float32), name="TL",
                          scale=(1.16, 0.29, 0.29))
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reset_choices()
    widget.tl_layer.value = tl
    assert widget.z_step.value == pytest.approx(1.16)  # filled from the layer's scale
    widget.checkpoint.value = checkpoint
    assert widget.structures.choices == ("dna", "lamin_b1")
    widget.structures.value = ["dna", "lamin_b1"]
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)
    assert widget.status.value == "done: 2 layer(s) added", widget.status.value
    assert widget.progress.value == widget.progress.max == 2
    assert [layer.name for layer in viewer.layers] == ["TL", "dna (sparsessp)", "lamin_b1 (sparsessp)"]
    for layer in list(viewer.layers)[1:]:
        np.testing.assert_allclose(layer.scale, (0.29, 0.29, 0.29))
        assert layer.blending == "additive" and layer.data.shape == (32, 64, 64)


def test_widget_reports_a_bad_checkpoint_in_one_line(make_napari_viewer, tmp_path: Path) -> None:
    from sparsessp.napari.widget import PredictWidget

    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    widget.checkpoint.value = bad
    assert widget.status.value.startswith("error: ") and "\n" not in widget.status.value
    assert widget.start() is None and widget.status.value.startswith("error: ")
