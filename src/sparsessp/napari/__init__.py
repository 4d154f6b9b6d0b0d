"""napari plugin (``pip install "sparsessp[napari]"``): a prediction dock widget, sample data and a reader.

The manifest is ``napari.yaml`` (npe2). :mod:`.layers` holds the logic (prediction into layers of a
viewer, testable with ``napari.components.ViewerModel`` and no display); :mod:`.widget` is the Qt dock
widget that runs it in a worker thread; :mod:`.sample` and :mod:`.reader` are the other contributions.
"""
