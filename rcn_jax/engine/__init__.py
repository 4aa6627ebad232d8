"""The training engine: per-model steps, execution strategies over a device mesh, processes, checkpoints."""
