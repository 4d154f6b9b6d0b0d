"""Importers of released weights (SparseSSP, RepMode, pytorch_fnet)."""
