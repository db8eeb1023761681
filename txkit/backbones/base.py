"""The backbone contract: a network plus the metadata transfer strategies and visualizers need."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class InputSpec:
    """What the backbone's weights expect: channel count, normalisation and native size."""

    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    size: int = 224


@dataclass
class Backbone:
    """A classification network with its ordered stages and its head.

    ``stages`` lists (stage name, module paths) from input to output; the last stage holds ``head``,
    the final ``nn.Linear`` (its module path). ``first_conv`` is the module path of the first convolution
    (for grayscale adaptation). ``pretrained`` says where the weights came from (None = random).
    """

    model: nn.Module
    stages: list[tuple[str, list[str]]]
    head: str
    first_conv: str
    input: InputSpec = field(default_factory=InputSpec)
    pretrained: str | None = None

    def stage_names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def head_module(self) -> nn.Linear:
        return self.model.get_submodule(self.head)

    def replace_head(self, num_classes: int) -> None:
        old = self.head_module()
        set_submodule(self.model, self.head, nn.Linear(old.in_features, num_classes))


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, attr, module)


def sequential_stages(prefix: str, seq: nn.Sequential, names: list[str], boundary) -> list[tuple[str, list[str]]]:
    """Split ``seq`` into named stages; a new stage starts after each child for which ``boundary`` is true."""
    stages, current = [], []
    for index, child in enumerate(seq):
        current.append(f"{prefix}.{index}")
        if boundary(child) and len(stages) < len(names) - 1:
            stages.append(current)
            current = []
    if current:
        stages.append(current)
    if len(stages) != len(names):
        raise ValueError(f"expected {len(names)} stages in {prefix}, found {len(stages)}")
    return list(zip(names, stages))


def load_state_by_position(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose key names differ but whose order and shapes match the model's."""
    from txkit.errors import WeightsError

    target = model.state_dict()
    tensors = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(tensors) != len(keys):
        raise WeightsError(f"{source}: {len(tensors)} tensors, the model expects {len(keys)}; wrong file?")
    for key, tensor in zip(keys, tensors):
        if target[key].shape != tensor.shape:
            raise WeightsError(f"{source}: tensor for {key} has shape {tuple(tensor.shape)}, "
                               f"expected {tuple(target[key].shape)}; wrong file?")
    model.load_state_dict(dict(zip(keys, tensors)), strict=False)
