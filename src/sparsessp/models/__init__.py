"""The SparseSSP model family: interpolation x topology x projection x conditioning x backbone."""
