"""The library behind ``sparsessp predict``: time-lapses of any size, block by block, into OME-TIFF or OME-Zarr.

- :mod:`~sparsessp.predict.options`: :class:`PredictOptions` and the ``--timepoints`` syntax;
- :mod:`~sparsessp.predict.plan`: every check before any work (inputs, choices, metadata, outputs);
- :mod:`~sparsessp.predict.run`: block-wise prediction of each (file, timepoint), sharing over processes;
- :mod:`~sparsessp.predict.writers`: partial stores, OME-Zarr pyramids and OME-TIFF, written as blocks finish.

``predict_file(path, model, structures, out, **options)`` is the one-call entry; ``predict_files`` takes
several inputs and a :class:`PredictOptions`.
"""

from sparsessp.predict.options import PredictOptions, parse_timepoints
from sparsessp.predict.run import PredictResult, Progress, predict_file, predict_files

__all__ = ["PredictOptions", "PredictResult", "Progress", "parse_timepoints", "predict_file", "predict_files"]
