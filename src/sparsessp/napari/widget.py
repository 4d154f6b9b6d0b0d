"""The dock widget: choose a TL layer, a checkpoint, structures, the z-step and a device; predict in a thread.

Built from magicgui widgets; the work is :func:`sparsessp.napari.layers.predict_layers`, run by napari's
``thread_worker`` so the viewer stays responsive. Each finished structure is added as a layer at once
and advances the progress bar; errors (a bad checkpoint, an unknown structure, a z-step sparser than the
model's) are shown as one line in the widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    create_widget,
)

from sparsessp.napari.layers import (
    Request,
    add_layer,
    default_checkpoint,
    load_model,
    predict_layers,
    request_from_layer,
    z_step_from_scale,
)
from sparsessp.structures import TARGET_VOXEL_UM

if TYPE_CHECKING:
    import napari


def _devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


class PredictWidget(Container):
    """Predict fluorescence of chosen structures from the selected TL layer, one new layer per structure."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        import napari

        super().__init__(labels=True)
        self.viewer = viewer
        self.model: Any = None
        self.worker: Any = None
        self.tl_layer = create_widget(annotation=napari.layers.Image, label="TL layer")
        self.checkpoint = FileEdit(label="checkpoint", filter="*.ckpt", value=default_checkpoint() or "")
        self.structures = Select(label="structures", choices=[])
        self.z_step = FloatSpinBox(label="z-step (um)", min=0.01, max=100.0, step=0.01, value=4 * TARGET_VOXEL_UM)
        self.device = ComboBox(label="device", choices=_devices())
        self.run_button = PushButton(text="Predict")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.extend([self.tl_layer, self.checkpoint, self.structures, self.z_step, self.device, self.run_button,
                     self.progress, self.status])
        self.tl_layer.changed.connect(self._layer_changed)
        self.checkpoint.changed.connect(self._checkpoint_changed)
        self.run_button.changed.connect(self.start)
        if default_checkpoint() is not None:
            self._checkpoint_changed()
        self._layer_changed()

    def _layer_changed(self, *_: Any) -> None:
        layer = self.tl_layer.value
        step = z_step_from_scale(layer.scale) if layer is not None else None
        if step is not None:
            self.z_step.value = step

    def _checkpoint_changed(self, *_: Any) -> None:
        from sparsessp.errors import UserError

        path = Path(self.checkpoint.value)
        if not path.is_file():
            return
        try:
            self.model = load_model(path)
        except UserError as exc:
            self.model = None
            self.structures.choices = []
            self.status.value = f"error: {exc}"
            return
        self.structures.choices = list(self.model.structures)
        self.structures.value = list(self.model.structures[:1])
        layer = self.tl_layer.value
        if layer is None or z_step_from_scale(layer.scale) is None:  # nothing better known: the model's own step
            self.z_step.value = self.model.sparse_ratio * TARGET_VOXEL_UM
        self.status.value = f"model: {len(self.model.structures)} structures, sparse ratio {self.model.sparse_ratio}"

    def request(self) -> Request:
        """What the controls ask for; a one-line UserError when something is missing."""
        from sparsessp.errors import UserError

        if self.tl_layer.value is None:
            raise UserError("choose a TL image layer")
        if self.model is None:
            raise UserError("choose a sparsessp checkpoint (.ckpt)")
        if not self.structures.value:
            raise UserError("choose at least one structure")
        return request_from_layer(self.tl_layer.value, list(self.structures.value), self.z_step.value,
                                  self.device.value)

    def start(self, *_: Any) -> Any:
        """Start the prediction in a worker thread; returns the worker (None when the request is refused)."""
        from napari.qt.threading import thread_worker

        from sparsessp.errors import UserError

        try:
            request = self.request()
        except UserError as exc:
            self.status.value = f"error: {exc}"
            return None
        self.progress.max = len(request.structures)
        self.progress.value = 0
        self.run_button.enabled = False
        self.status.value = f"predicting {', '.join(request.structures)} ..."
        self.worker = thread_worker(predict_layers)(self.model, request)
        self.worker.yielded.connect(self._add)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.worker.start()
        return self.worker

    def _add(self, layer_data: Any) -> None:
        add_layer(self.viewer, layer_data)
        self.progress.value = self.progress.value + 1

    def _failed(self, exc: Exception) -> None:
        self.status.value = f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    def _finished(self) -> None:
        self.run_button.enabled = True
        if not self.status.value.startswith("error"):
            self.status.value = f"done: {self.progress.value} layer(s) added"
