"""Fixtures for the core tests; plain helpers live in helpers.py."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def site(tmp_path):
    """A directory to hold fake plugin distributions; pass ``env=pythonpath(site)`` to run_txkit."""
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def tiny_cfg():
    """A training config that runs in seconds on CPU: tiny synthetic set, resnet18 at 32 px, no downloads."""
    from txkit.training.config import TrainConfig

    def make(**overrides):
        base = dict(dataset="synthetic-dld", data_options={"per_class": "6", "size": "32"}, backbone="resnet18",
                    weights="none", strategy="full", epochs=3, batch_size=16, seed=0, device="cpu")
        base.update(overrides)
        return TrainConfig(**base)
    return make
