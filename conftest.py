"""Fixtures for every test under tests/ and plugins/."""

import os
import shutil

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


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """``tmp_path_factory.mktemp`` for module fixtures, removed when the module's tests all passed.

    Trained runs hold checkpoints of 100–700 MB; kept for the whole session they filled CI's disk.
    """
    made = []
    failed_before = request.session.testsfailed

    def mktemp(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
