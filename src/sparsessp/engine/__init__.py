"""Training engine: the Fabric training loop, checkpoints, RNG seeding and the run folder."""
