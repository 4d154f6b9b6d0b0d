"""2D encoders for the `2d` and `2to3d` topologies: our U-Net encoder and timm adapters."""
