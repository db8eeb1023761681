"""Fixtures for every test under tests/ and plugins/."""

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _image_cache_dir(tmp_path_factory):
    """Tests never write image caches into the user's ~/.cache/txkit (subprocesses inherit the variable)."""
    previous = os.environ.get("TXKIT_CACHE_DIR")
    os.environ["TXKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("txkit-cache"))
    yield
    if previous is None:
        os.environ.pop("TXKIT_CACHE_DIR", None)
    else:
        os.environ["TXKIT_CACHE_DIR"] = previous
