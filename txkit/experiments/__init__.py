"""Experiments: a TOML file declares earlier stages, a target task and a grid over strategies, colorizers,
backbones, seeds and training fractions; `run_experiment` trains every run of the grid and `build_report`
turns the run directories into tables, statistics and plots."""

from txkit.experiments.spec import Experiment, ExperimentFileError, load_experiment

__all__ = ["Experiment", "ExperimentFileError", "load_experiment"]
