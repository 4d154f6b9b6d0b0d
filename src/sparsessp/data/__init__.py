"""Data: microscopy I/O, manifests, preparation, the training dataset and SynthCell-12."""
