"""The frozen-prefix feature cache: the same metrics and weights as the uncached path, for each strategy that
freezes a prefix; refused (with the reason) where a frozen prefix is not deterministic; memory-mapped spill."""

import json

import pytest
import torch
import torch._dynamo.exc
from safetensors.torch import load_file
from torch import nn

from txkit.backbones.base import Backbone
from txkit.training import feature_cache as features
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.training import session
from txkit.training.runtime import Runtime
from txkit.training.engine import Trainer

COMPARED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_auc", "lr")


def cfg_for(tiny_cfg, **overrides):
    base = dict(data_options={"per_class": "3", "size": "32"}, epochs=2, batch_size=8, image_cache=False)
    return tiny_cfg(**{**base, **overrides})


def train_both(tiny_cfg, tmp_path, **overrides):
    cfg = cfg_for(tiny_cfg, **overrides)
    on_dir, on = session.train(cfg, tmp_path / "on")
    off_dir, off = session.train(cfg.replace(feature_cache=False), tmp_path / "off")
    return (on_dir, on), (off_dir, off)


def assert_same_run(on_dir, off_dir):
    lines = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (on_dir, off_dir)]
    assert len(lines[0]) == len(lines[1])
    for a, b in zip(*lines):
        assert a["trainable"] == b["trainable"]
        for key in COMPARED:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5, nan_ok=True), (a["epoch"], key)
    wa, wb = load_file(str(on_dir / "checkpoint.safetensors")), load_file(str(off_dir / "checkpoint.safetensors"))
    for key in (k for k in wa if k.startswith("model.")):  # gradients (momentum) are compared through them
        assert torch.allclose(wa[key].float(), wb[key].float(), rtol=1e-4, atol=1e-5), key


@pytest.mark.parametrize("strategy, boundary, extra", [
    ("last-layer", "backbone.fc", {}),
    ("finetune-from:layer4", "backbone.layer4", {"augment": False, "sampler": "balanced"}),
])
def test_cached_run_equals_uncached_run(tiny_cfg, tmp_path, strategy, boundary, extra):
    (on_dir, on), (off_dir, off) = train_both(tiny_cfg, tmp_path, strategy=strategy, **extra)
    assert_same_run(on_dir, off_dir)
    phase = on["feature_cache"]["phases"][0]
    assert on["feature_cache"]["used"] and phase["used"] and phase["boundary"] == boundary
    assert phase["prefix"][0] == "stem" and phase["epochs"] == [1, 2]
    assert phase["orientations"] == (1 if extra.get("augment") is False else 2)
    assert phase["served"] > phase["prefix_forwards"]  # the second epoch reuses the first one's features
    assert "saved_s" in on["feature_cache"] and on["feature_cache"]["estimate"]
    assert not off["feature_cache"]["used"] and "`feature_cache`" in off["feature_cache"]["note"]


def test_gradual_unfreeze_recomputes_when_the_boundary_moves(tiny_cfg, tmp_path, monkeypatch):
    original = Trainer.gradual_unfreeze

    def always_improving(self, improved):  # make the boundary move after every epoch, in both runs
        return original(self, True)
    monkeypatch.setattr(Trainer, "gradual_unfreeze", always_improving)
    (on_dir, on), (off_dir, _) = train_both(tiny_cfg, tmp_path, strategy="gradual-unfreeze", epochs=3)
    assert_same_run(on_dir, off_dir)
    phases = on["feature_cache"]["phases"]
    assert [p["boundary"] for p in phases] == ["backbone.fc", "backbone.layer4", "backbone.layer3"]
    assert [p["epochs"] for p in phases] == [[1], [2], [3]]
    # while the boundary may move, only the orientation each image is drawn in is computed (never both)
    assert all(p["prefix_forwards"] == p["served"] for p in phases)


def test_spilled_cache_is_memory_mapped_and_removed(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "RAM_LIMIT_BYTES", 0)
    seen = []
    original = features.FeatureStore.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.path)
    monkeypatch.setattr(features.FeatureStore, "__init__", recording)
    (on_dir, on), (off_dir, _) = train_both(tiny_cfg, tmp_path, strategy="last-layer")
    assert on["feature_cache"]["phases"][0]["storage"] == "memmap"
    assert seen and all(path is not None and path.parent == on_dir for path in seen)
    assert not any(path.exists() for path in seen)
    assert_same_run(on_dir, off_dir)


class Toy(nn.Module):
    """stem -> block -> head, optionally with dropout in the stem or a skip connection around the block."""

    def __init__(self, dropout=False, skip=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Dropout(0.5) if dropout else nn.Identity())
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        self.skip = skip

    def forward(self, x):
        x = self.stem(x)
        y = self.block(x)
        return self.fc(torch.flatten(self.pool(y + x if self.skip else y), 1))


def toy_split(**kwargs):
    torch.manual_seed(0)
    model = Toy(**kwargs)
    net = TxNet(Backbone(model, [("stem", ["stem"]), ("block", ["block"]), ("head", ["fc"])], head="fc",
                         first_conv="stem.0"))
    net.set_trainable({"block", "head"})
    x = torch.rand(4, 1, 8, 8)
    split = features.trace_split(net.eval(), x, ["backbone.block", "backbone.fc"])
    return split, x


def test_split_of_a_plain_prefix_gives_the_whole_networks_logits():
    split, x = toy_split()
    assert split.boundary == "backbone.block"
    assert features.verify_split(split, x, lambda: torch.autocast("cpu", enabled=False), 1e-5) is None
    with torch.no_grad():
        assert torch.allclose(split.suffix(split.prefix(x)), split.net(x))
    assert "forward" not in split.net.backbone.stem.__dict__  # the short-circuit is undone after each call


@pytest.mark.parametrize("kind, reason", [("dropout", "train mode"), ("skip", "eval-mode output differs")])
def test_split_is_refused_where_the_prefix_is_not_cacheable(kind, reason):
    split, x = toy_split(**{kind: True})
    state = {k: v.clone() for k, v in split.net.state_dict().items()}
    rng = torch.get_rng_state()
    assert reason in features.verify_split(split, x, lambda: torch.autocast("cpu", enabled=False), 1e-5)
    assert torch.equal(torch.get_rng_state(), rng)  # the probe leaves the random stream alone
    assert all(torch.equal(v, state[k]) for k, v in split.net.state_dict().items())


def test_a_training_colorizer_means_no_cache(tiny_cfg):
    trainer = Trainer(cfg_for(tiny_cfg, strategy="colorizer", colorizer="conv1x1", image_size=32))
    trainer.start_phase(0)
    assert not trainer.feature_cache.prepare(0)
    assert "first stage trains" in trainer.feature_cache.summary()["phases"][0]["reason"]


def test_distributed_runs_switch_the_cache_off(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert features.distributed()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not features.distributed()


def test_channels_last_only_on_cuda_and_compile_failure_is_one_line(tiny_cfg, tmp_path, monkeypatch):
    trainer_cfg = cfg_for(tiny_cfg, strategy="full", compile=True, epochs=1)
    net = TxNet(Backbone(Toy(), [("stem", ["stem"]), ("block", ["block"]), ("head", ["fc"])], head="fc",
                         first_conv="stem.0"))
    runtime = Runtime.for_training(trainer_cfg.replace(device="cpu"))
    model = runtime.place(net)
    assert runtime.memory_format == torch.contiguous_format and model is not net

    def broken_compile(module, **_):
        def call(x):
            raise torch._dynamo.exc.Unsupported("data-dependent branch\nmore detail")
        return call
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(TxkitError) as err:
        session.train(trainer_cfg, tmp_path / "run")
    message = str(err.value)
    assert "`compile`" in message and "data-dependent branch" in message and "\n" not in message


def test_a_resumed_run_caches_features_as_the_uninterrupted_run_does(tiny_cfg, tmp_path):
    """The cache is given the loop's state by name: a resume restores that object in place, so the cache sees
    the restored phase and trainable stages (not an empty state that says nothing trains)."""
    from txkit.training import commit

    cfg = cfg_for(tiny_cfg, strategy="last-layer", epochs=1)
    run_dir, summary = session.train(cfg, tmp_path / "run")
    assert summary["feature_cache"]["phases"][0]["used"]
    trainer = Trainer(cfg.replace(epochs=2), load_weights=False)
    trainer.run_dir = run_dir
    trainer.load_checkpoint(commit.read(run_dir))
    assert trainer.feature_cache.state is trainer.state and trainer.state.epoch == 1
    assert trainer.feature_cache.prepare(1)  # the resumed epoch trains from cached features
    assert trainer.feature_cache.summary()["phases"][0]["trainable"] == ["fc"]
