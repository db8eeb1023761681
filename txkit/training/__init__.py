"""Training engine: config, data, network building, the loop, checkpoints and metrics."""
