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
    """``helpers.tiny_config``: a training config that runs in seconds on CPU."""
    from helpers import tiny_config

    return tiny_config
