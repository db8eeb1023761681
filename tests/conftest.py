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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The suite's one finished run, trained once per session: ``tiny_config(epochs=1, image_size=32)``
    (resnet18 from scratch, strategy full, on 7 x 6 synthetic images per split), with its best weights and its
    stored test predictions. Read-only: a test that writes into a run takes ``finished_run_copy``."""
    from helpers import tiny_config
    from txkit.training import session

    run_dir, _ = session.train(tiny_config(epochs=1, image_size=32), tmp_path_factory.mktemp("finished") / "run")
    return run_dir


@pytest.fixture
def finished_run_copy(finished_run, tmp_path):
    """A copy of ``finished_run`` that a test may change."""
    import shutil

    return shutil.copytree(finished_run, tmp_path / "run")


@pytest.fixture(scope="session")
def interrupted_run(tmp_path_factory):
    """``tiny_config(epochs=3)`` interrupted (Ctrl-C) after its first epoch, made once per session: resumable.
    Read-only: tests copy it."""
    from helpers import tiny_config
    from txkit.training import session
    from txkit.training.engine import Trainer
    from txkit.training.session import RunInterrupted

    run = tmp_path_factory.mktemp("interrupted") / "run"
    original = Trainer.train_epoch

    def train_epoch(self, epoch, progress, task):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, progress, task)
    Trainer.train_epoch = train_epoch
    try:
        with pytest.raises(RunInterrupted):
            session.train(tiny_config(epochs=3), run)
    finally:
        Trainer.train_epoch = original
    return run
