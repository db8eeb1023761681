"""The training loop: phases, freezing, validation, best checkpoint, early stopping, exact resume."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from txkit.datasets.base import TxDataset
from txkit.errors import TxkitError
from txkit.network import TxNet
from txkit.plugins import create
from txkit.strategies import Strategy
from txkit.training import checkpoint as ckpt
from txkit.training import runs
from txkit.training.build import build_network, build_strategy, resolved_weights
from txkit.training.config import TrainConfig
from txkit.training.data import TensorSplit, check_nonempty, fraction_indices, make_loader
from txkit.training.metrics import compute_metrics, probabilities
from txkit.training.optim import make_optimizer, make_scheduler, param_groups, phase_settings


class NonFiniteLoss(TxkitError):
    pass


@dataclass
class LoopState:
    """Everything besides tensors that a resumed run needs, saved in checkpoint.json each epoch."""

    epoch: int = 0  # epochs finished
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    trainable: list[str] = field(default_factory=list)
    unfreezing: bool = True
    phase: int = -1  # index of the phase whose optimiser is live


def validate_names(cfg: TrainConfig) -> None:
    """Unknown names fail before any data is read or a run directory is made."""
    from txkit.plugins import registry

    for kind, name in (("dataset", cfg.dataset), ("backbone", cfg.backbone), ("strategy", cfg.strategy),
                       ("colorizer", cfg.colorizer)):
        if name is not None:
            registry(kind).get(name)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TxkitError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def load_dataset(cfg: TrainConfig) -> TxDataset:
    options = dict(cfg.data_options)
    if cfg.skip_bad_images:
        options["skip_bad_images"] = True
    dataset = create("dataset", cfg.dataset, root=cfg.data_root, **options)
    dataset.check_labels()
    return dataset


def epoch_plan(strategy: Strategy, epochs: int) -> list[int]:
    """The phase index of every epoch."""
    if epochs < len(strategy.phases):
        raise TxkitError(f"strategy {strategy.name!r} has {len(strategy.phases)} phases: use --epochs "
                         f"{len(strategy.phases)} or more")
    counts = [max(1, round(p.epochs_share * epochs)) for p in strategy.phases]
    counts[-1] = epochs - sum(counts[:-1])
    return [i for i, n in enumerate(counts) for _ in range(n)]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, console=None):
        self.cfg, self.run_dir, self.console = cfg, Path(run_dir), console
        validate_names(cfg)
        self.device = resolve_device(cfg.device)
        self.amp = self.device.type == "cuda" and cfg.amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)  # a pass-through on CPU
        self.strategy = build_strategy(cfg)
        self.dataset = load_dataset(cfg)
        check_nonempty(self.dataset)
        self.task = self.dataset.task
        self.state = LoopState()
        self.plan = epoch_plan(self.strategy, cfg.epochs)

    # --- setup ------------------------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.net = build_network(cfg, self.dataset.num_classes, self.strategy, load_weights=not resume)
        self.net.to(self.device)
        self.size = image_size(cfg, self.dataset, self.net)
        train = self.dataset.split("train")
        keep = fraction_indices(train, cfg.fraction, cfg.seed, self.task)
        self.train_data = TensorSplit(train.subset(keep), self.size, self.task)
        self.val_data = TensorSplit(self.dataset.split("val"), self.size, self.task)
        self.steps_per_epoch = math.ceil(len(self.train_data) / cfg.batch_size)
        self.loss_fn = masked_bce if self.task == "multilabel" else nn.CrossEntropyLoss()

    def start_phase(self, index: int) -> None:
        phase = self.strategy.phases[index]
        if phase.reinit_head and index > 0:
            self.net.reset_head()
        trainable = self.strategy.trainable(phase, self.net.stage_names(), not self.cfg.freeze_colorizer)
        self.state.trainable = [s for s in self.net.stage_names() if s in trainable]
        self.state.phase = index
        self.state.unfreezing = True
        self._make_optimizer(index)

    def _make_optimizer(self, index: int) -> None:
        self.net.set_trainable(set(self.state.trainable))
        lr, opt_name, sched_name = phase_settings(self.cfg, self.strategy.phases[index])
        self.optimizer = make_optimizer(opt_name, param_groups(self.net, self.strategy, lr, self.cfg.weight_decay),
                                        self.cfg)
        self.schedule_name = sched_name
        self.scheduler = make_scheduler(sched_name, self.optimizer, self.cfg, self.plan.count(index),
                                        self.steps_per_epoch)

    # --- loop -------------------------------------------------------------------------------------------
    def fit(self, progress) -> str:
        """Train the remaining epochs; returns the final status."""
        total = len(self.plan)
        task = progress.add_task("train", total=self.steps_per_epoch, epoch=f"{self.state.epoch + 1}/{total}",
                                 loss=float("nan"), val="-")
        while self.state.epoch < total:
            epoch = self.state.epoch
            phase = self.plan[epoch]
            torch.manual_seed(epoch_seed(self.cfg.seed, epoch))
            if phase != self.state.phase:
                self.start_phase(phase)
            progress.reset(task, total=self.steps_per_epoch, epoch=f"{epoch + 1}/{total}", loss=float("nan"),
                           val=progress.tasks[task].fields.get("val", "-"))
            started = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch, progress, task)
            val = self.evaluate(self.val_data)
            line = self.record(epoch, train_loss, train_acc, val, time.perf_counter() - started)
            progress.update(task, val=f"{self.cfg.monitor} {line['val_' + self.cfg.monitor]:.4f}")
            stop = self.after_epoch(val)
            self.state.epoch += 1
            self.save_checkpoint()
            if stop:
                return "early-stopped"
        return "completed"

    def train_epoch(self, epoch: int, progress, task) -> tuple[float, float]:
        self.net.train()
        loader = make_loader(self.train_data, self.cfg.batch_size, True, self.cfg.seed, epoch, self.cfg.num_workers)
        total_loss, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(loader):
            x, y = x.to(self.device), y.to(self.device)
            if self.cfg.augment:
                x = horizontal_flip(x)
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = self.net(x)
                loss = self.loss_fn(logits, y)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; the last "
                                    f"good checkpoint is kept in {self.run_dir}; lower --lr and resume or retrain")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.schedule_name == "onecycle":
                self.scheduler.step()
            total_loss += loss.item() * len(x)
            seen += len(x)
            if self.task == "multiclass":
                correct += (logits.argmax(1) == y).sum().item()
            progress.update(task, advance=1, loss=total_loss / seen)
        return total_loss / seen, (correct / seen if self.task == "multiclass" else float("nan"))

    @torch.no_grad()
    def predict(self, data: TensorSplit) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        logits, labels = [], []
        for x, y in make_loader(data, self.cfg.batch_size * 2, False, num_workers=self.cfg.num_workers):
            logits.append(self.net(x.to(self.device)).float().cpu())
            labels.append(y)
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

    def evaluate(self, data: TensorSplit) -> dict:
        logits, labels = self.predict(data)
        metrics = compute_metrics(labels, probabilities(logits, self.task), self.dataset.classes, self.task)
        metrics["loss"] = float(self.loss_fn(torch.from_numpy(logits), torch.from_numpy(labels)))
        return metrics

    def record(self, epoch: int, train_loss: float, train_acc: float, val: dict, seconds: float) -> dict:
        line = {"epoch": epoch + 1, "phase": self.strategy.phases[self.plan[epoch]].name,
                "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss, "train_accuracy": train_acc,
                **{f"val_{k}": val[k] for k in ("loss", "accuracy", "precision", "recall", "f1", "auc")},
                "trainable": list(self.state.trainable), "seconds": round(seconds, 3)}
        ckpt.append_jsonl(self.run_dir / runs.METRICS, line)
        return line

    def after_epoch(self, val: dict) -> bool:
        """Best checkpoint, schedules, gradual unfreezing and early stopping; True means stop."""
        value = val[self.cfg.monitor]
        improved = value == value and (self.state.best is None or value > self.state.best)
        if improved:
            self.state.best, self.state.best_epoch, self.state.bad_epochs = value, self.state.epoch + 1, 0
            ckpt.save_tensors(self.run_dir / runs.WEIGHTS, self.net.state_dict())
        else:
            self.state.bad_epochs += 1
        if self.schedule_name == "exponential":
            self.scheduler.step()
        elif self.schedule_name == "plateau":
            self.scheduler.step(value if value == value else 0.0)
        if self.strategy.unfreeze_while_improving and self.state.unfreezing:
            self.gradual_unfreeze(improved)
        return self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience

    def gradual_unfreeze(self, improved: bool) -> None:
        if not improved:
            self.state.unfreezing = False
            return
        grown = self.strategy.next_unfrozen(set(self.state.trainable), self.net.stage_names())
        self.state.trainable = [s for s in self.net.stage_names() if s in grown]
        self.net.set_trainable(grown)

    # --- checkpoints ------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        optimizer = ckpt.split_tensors(self.optimizer.state_dict(), "optimizer", tensors)
        scheduler = ckpt.split_tensors(self.scheduler.state_dict(), "scheduler", tensors) if self.scheduler else None
        ckpt.save_tensors(self.run_dir / runs.CHECKPOINT, tensors)
        ckpt.write_json(self.run_dir / runs.CHECKPOINT_STATE,
                        {"loop": self.state.__dict__, "optimizer": optimizer, "scheduler": scheduler,
                         "grad_scaler": self.scaler.state_dict()})

    def load_checkpoint(self) -> None:
        state_path = self.run_dir / runs.CHECKPOINT_STATE
        if not state_path.exists():
            return  # interrupted during the first epoch: start over
        saved = ckpt.restore_floats(ckpt.read_json(state_path))
        tensors = ckpt.load_tensors(self.run_dir / runs.CHECKPOINT)
        self.state = LoopState(**saved["loop"])
        self.net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self._make_optimizer(self.state.phase)
        self.optimizer.load_state_dict(ckpt.join_tensors(saved["optimizer"], tensors))
        if self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt.join_tensors(saved["scheduler"], tensors))
        if saved.get("grad_scaler"):
            self.scaler.load_state_dict(saved["grad_scaler"])

    def test_metrics(self) -> dict | None:
        if "test" not in self.dataset.splits or not (self.run_dir / runs.WEIGHTS).exists():
            return None
        self.net.load_state_dict(ckpt.load_tensors(self.run_dir / runs.WEIGHTS))
        return self.evaluate(TensorSplit(self.dataset.split("test"), self.size, self.task))


def image_size(cfg: TrainConfig, dataset: TxDataset, net: TxNet) -> int:
    size = cfg.image_size or dataset.info.get("image_size") or 224
    if net.colorizer is not None and size % 8:
        raise TxkitError(f"image size {size} is not divisible by 8, which colorizers need; pass --image-size")
    return int(size)


def horizontal_flip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits that ignores NaN targets (CheXpert's U-Ignore)."""
    known = ~torch.isnan(target)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(target), reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


def engine_summary(trainer: Trainer, status: str, elapsed: float, test: dict | None) -> dict:
    return {"status": status, "monitor": trainer.cfg.monitor, "best_val": trainer.state.best,
            "best_epoch": trainer.state.best_epoch, "epochs_run": trainer.state.epoch,
            "weights": resolved_weights(trainer.cfg, trainer.strategy), "image_size": trainer.size,
            "train_images": len(trainer.train_data), "elapsed_s": round(elapsed, 2), "test": test}
