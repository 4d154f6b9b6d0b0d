"""Task-conditioning mechanisms: one module per mechanism, registered in :mod:`sparsessp.models.registry`."""
