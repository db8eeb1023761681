"""The training loop: phases, freezing, validation, best checkpoint, early stopping, exact resume."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from txkit.datasets.base import TxDataset
from txkit.datasets.files import check_images
from txkit.errors import TxkitError
from txkit.training.feature_cache import FeatureCache
from txkit.plugins import create
from txkit.strategies import Strategy
from txkit.training import checkpoint as ckpt
from txkit.training import commit, ddp, distributed
from txkit.training.build import build_network, build_strategy, resolved_weights
from txkit.config import TrainConfig
from txkit.training.commit import RESUME_FIX, CheckpointError
from txkit.data.loader import TensorSplit, cache_settings, input_rule, train_batches
from txkit.data.splits import FoldParts, check_nonempty, fold_parts, fraction_indices, label_strata
from txkit.training.imbalance import SAMPLERS, BalancedBatches, class_weights, loss_function, sample_weights
from txkit.training.input_size import check_input_size, image_size
from txkit.training.logs import EpochLogs
from txkit.training.metrics import compute_metrics_from_logits
from txkit.data.splits import resampling_groups
from txkit.rundir import save_predictions
from txkit.training.runtime import Runtime
from txkit.training.optim import make_optimizer, make_scheduler, param_groups, phase_settings
from txkit.rundir import RunDir


class NonFiniteLoss(TxkitError):
    """The loss, a gradient or a prediction stopped being finite; the run keeps its last committed epoch."""


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


def load_dataset(cfg: TrainConfig) -> TxDataset:
    options = dict(cfg.data_options)
    if cfg.skip_bad_images:
        options["skip_bad_images"] = True
    dataset = create("dataset", cfg.dataset, root=cfg.data_root, **options)
    dataset.check_labels()
    dataset.check_splits()
    return dataset


def epoch_plan(strategy: Strategy, epochs: int) -> list[int]:
    """The phase index of every epoch."""
    if epochs < len(strategy.phases):
        raise TxkitError(f"strategy {strategy.name!r} has {len(strategy.phases)} phases: use `epochs` "
                         f"{len(strategy.phases)} or more")
    counts = [max(1, round(p.epochs_share * epochs)) for p in strategy.phases]
    counts[-1] = epochs - sum(counts[:-1])
    return [i for i, n in enumerate(counts) for _ in range(n)]


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


class Trainer:
    """Everything a run needs, built and checked before a run directory exists.

    ``load_weights=False`` builds the network without its initial weights, for a resume that loads a
    checkpoint instead.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, load_weights: bool = True):
        self.cfg, self.run_dir = cfg, Path(run_dir) if run_dir else None
        validate_names(cfg)
        if cfg.sampler not in SAMPLERS:
            raise TxkitError(f"`sampler` must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
        self.logs = EpochLogs(cfg.log if ddp.writes_run_files() else "none")  # checks that the logger is installed
        self.runtime = Runtime.for_training(cfg)  # device, AMP, memory format, compile, workers
        self.scaler = self.runtime.grad_scaler()
        self.strategy = build_strategy(cfg)
        self.plan = epoch_plan(self.strategy, cfg.epochs)
        self.dataset = load_dataset(cfg)
        # every image of every split opens (the test split's is otherwise first read after the last epoch)
        check_images(self.dataset, skip=cfg.skip_bad_images)
        # with `folds` the validation images come from the training folds: the dataset's val split may be empty
        check_nonempty(self.dataset, ("train",) if cfg.folds is not None else ("train", "val"))
        self.task = self.dataset.task
        self.state = LoopState()
        torch.manual_seed(cfg.seed)
        self.net = build_network(cfg, self.dataset.num_classes, self.strategy, load_weights=load_weights)
        self.net = ddp.adapt(self.net, cfg, self.runtime.device)  # under torchrun: SyncBatchNorm, batch-wide dropout
        self.model = self.runtime.place(self.net)  # the net itself, or its torch.compile'd form
        self._check_phases()
        self.size = image_size(cfg, self.dataset, self.net)
        check_input_size(self.net, self.size, cfg.backbone, self.runtime.device)
        self._build_splits()
        self._build_imbalance()
        self.feature_cache = FeatureCache(
            net=self.net, strategy=self.strategy, state=self.state, runtime=self.runtime, train_data=self.train_data,
            val_data=self.val_data, task=self.task, batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
            enabled=cfg.feature_cache)

    def _check_phases(self) -> None:
        """Every phase's stage rule and optimiser settings resolve (fails before anything trains)."""
        stages = self.net.stage_names()
        for phase in self.strategy.phases:
            self.strategy.trainable(phase, stages, not self.cfg.freeze_colorizer)
            phase_settings(self.cfg, phase)

    def _build_splits(self) -> None:
        self.folds: FoldParts | None = None
        if self.cfg.folds is not None:
            self._build_fold_splits()
        else:
            train = self.dataset.split("train")
            keep = fraction_indices(train, self.cfg.fraction, self.cfg.seed, self.task)
            self.rule, self.cache = input_rule(self.cfg, self.dataset), cache_settings(self.cfg)
            self.train_data = TensorSplit(train, self.size, self.task, self.rule, self.cache, indices=keep,
                                          label=f"{self.dataset.name} train")
            self.val_data = TensorSplit(self.dataset.split("val"), self.size, self.task, self.rule, self.cache,
                                        label=f"{self.dataset.name} val")
        self.loaders = self.runtime.loaders(self.cfg.batch_size, self.cfg.seed)
        ddp.check(self.cfg, len(self.train_data))
        self.steps_per_epoch = len(train_batches(len(self.train_data), self.cfg.batch_size))

    def _build_fold_splits(self) -> None:
        """Fold `fold` of the pooled train+val images (txkit.data.splits): train on the other folds less their
        validation slice (then `fraction`), validate on that slice, predict the fold itself at the end. The three
        TensorSplits index one pooled split, so the folds and cells share one disk image cache (under a
        `percentile` rule, whose bounds are fitted per fold, one per fold)."""
        cfg = self.cfg
        self.folds = parts = fold_parts(self.dataset, cfg.folds, cfg.fold, cfg.fold_repeat, cfg.fold_seed)
        pool, name = parts.pool, self.dataset.name
        keep = parts.train[fraction_indices(pool.subset(parts.train), cfg.fraction, cfg.seed, self.task)]
        # the intensity rule is fitted on the fold's training images, as a run without folds fits it on train
        self.rule = input_rule(cfg, self.dataset, fitted_on=pool.subset(parts.train))
        self.cache = cache_settings(cfg)
        label = f"{name} fold {cfg.fold}/{cfg.folds}"
        self.train_data = TensorSplit(pool, self.size, self.task, self.rule, self.cache, indices=keep,
                                      label=f"{label} train")
        self.val_data = TensorSplit(pool, self.size, self.task, self.rule, self.cache, indices=parts.val,
                                    label=f"{label} val")

    def _build_imbalance(self) -> None:
        """Loss weights and sampling weights from the training labels (see txkit.training.imbalance)."""
        labels = self.train_data.split.labels
        self.class_weights = class_weights(self.cfg.class_weights, labels, self.dataset.classes, self.task)
        self.loss_fn = loss_function(self.task, self.class_weights).to(self.runtime.device)
        self.cpu_loss_fn = loss_function(self.task, self.class_weights)  # for validation logits on the CPU
        strata = labels if self.task == "multiclass" else label_strata(labels)
        self.sample_weights = sample_weights(strata) if self.cfg.sampler == "balanced" else None

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
        self.logs.open(self.run_dir, self.state.epoch)
        self.feature_cache.spill_to(self.run_dir, warn=lambda text: progress.console.print(
            f"warning: {text}", style="yellow", markup=False, highlight=False, soft_wrap=True))  # one line
        try:
            return self._fit(progress)
        finally:
            self.logs.close()
            self.feature_cache.close()

    def training_done(self) -> str | None:
        """The status a resumed run whose training had ended already has ("completed", "early-stopped"; its
        test evaluation is what failed), or None while epochs remain."""
        if self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience:
            return "early-stopped"
        return "completed" if self.state.epoch >= len(self.plan) else None

    def _fit(self, progress) -> str:
        total = len(self.plan)
        done = self.training_done()
        if done:  # no progress bar at "epoch 4/3", and no epoch past an early stop
            return done
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
            val = self.evaluate(self.val_data, epoch)
            line = self.metrics_line(epoch, train_loss, train_acc, val, time.perf_counter() - started)
            progress.update(task, val=f"{self.cfg.monitor} {line['val_' + self.cfg.monitor]:.4f}")
            improved, stop = self.after_epoch(val)
            self.commit_epoch(line, improved)
            self.logs.epoch(line)
            if stop:
                return "early-stopped"
        return "completed"

    def commit_epoch(self, line: dict, improved: bool) -> None:
        """Commit the epoch (txkit.training.commit): its metrics line, then its checkpoint, the commit point,
        then the best weights; ``state.epoch`` counts it once its checkpoint is in place."""
        if not distributed.is_main():  # under torchrun only process 0 writes the run directory
            self.state.epoch += 1
            return
        epoch = self.state.epoch + 1
        tensors, state = self.checkpoint_state(epoch)
        commit.commit(self.run_dir, epoch, line, tensors, state, self.net.state_dict() if improved else None,
                      self.state.best_epoch, metrics_table=self.logs.metrics_table,
                      on_checkpoint=self._count_epoch)

    def _count_epoch(self) -> None:
        self.state.epoch += 1

    def save_best(self) -> None:
        commit.write_best(self.run_dir, self.net.state_dict(), self.state.best_epoch)

    def train_epoch(self, epoch: int, progress, task) -> tuple[float, float]:
        self.net.train()
        sampler = None
        if self.sample_weights is not None:
            sampler = BalancedBatches(self.sample_weights, self.cfg.batch_size, self.cfg.seed, epoch)
        cached = self.feature_cache.prepare(epoch)  # frozen-prefix features instead of images (txkit.training.feature_cache)
        if cached:
            loader = self.feature_cache.train_batches(epoch, sampler)
        else:
            loader = self.loaders.train(self.train_data, epoch, sampler)
        # under torchrun: this process's share of every global batch (txkit.training.ddp)
        steps = ddp.ShardedSteps(self, loader) if distributed.active() and not cached else None
        total_loss, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(loader if steps is None else steps):
            x, y = self.runtime.to_input(x), y.to(self.runtime.device)
            if self.cfg.augment and not cached:
                x = horizontal_flip(x) if steps is None else steps.flip(x)
            if not cached:
                self.logs.images(x)
            with self.runtime.autocast():
                logits = self._forward_train(x, None if steps is None else steps.model)
                loss = self.loss_fn(logits, y) if steps is None else steps.loss(logits, y)
            if not torch.isfinite(loss):
                raise self.non_finite(f"the training loss became {loss.item()}", epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if not self.runtime.amp:  # with AMP the scaler skips steps whose gradients overflow
                self._check_gradients(epoch, step)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.schedule_name == "onecycle":
                self.scheduler.step()
            total_loss += loss.item() * len(x)
            seen += len(x)
            if self.task == "multiclass":
                correct += (logits.argmax(1) == y).sum().item()
            progress.update(task, advance=1, loss=total_loss / seen)
        if steps is not None:
            return steps.epoch_result(correct)
        return total_loss / seen, (correct / seen if self.task == "multiclass" else float("nan"))

    def _forward_train(self, x: torch.Tensor, model=None) -> torch.Tensor:
        try:
            if self.feature_cache.active:
                return self.feature_cache.forward(x)
            return (self.model if model is None else model)(x)  # model: the DDP wrapper under torchrun
        except ValueError as exc:
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise TxkitError(f"batch-norm in {self.cfg.backbone} needs more than one value per channel, but a "
                             f"batch of {len(x)} image(s) at {self.size} px has one; use a larger `batch_size` "
                             f"or `image_size`") from None

    def _check_gradients(self, epoch: int, step: int) -> None:
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            raise self.non_finite("the gradient norm became non-finite", epoch, step)

    def non_finite(self, what: str, epoch: int, step: int | None = None) -> NonFiniteLoss:
        where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
        if self.state.epoch:
            kept = f"the run keeps its last good checkpoint (epoch {self.state.epoch}) in {self.run_dir}"
        else:
            kept = "no epoch had finished, so the run has no checkpoint"
        return NonFiniteLoss(f"{what} at {where}; {kept}; train again with a lower learning rate (`lr`)")

    @torch.no_grad()
    def predict(self, data: TensorSplit) -> tuple[np.ndarray, np.ndarray]:
        if self.feature_cache.serves(data):
            return self.feature_cache.predict(data)
        self.net.eval()
        ddp.sync_buffers(self.net)  # under torchrun every process evaluates process 0's model
        logits, labels = [], []
        for x, y in self.loaders.evaluation(ddp.shard(data), self.cfg.batch_size * 2):
            logits.append(self.model(self.runtime.to_input(x)).float().cpu())
            labels.append(y)
        return ddp.gather_predictions(logits, labels)  # the whole split, in order, on every process

    def evaluate(self, data: TensorSplit, epoch: int | None = None) -> dict:
        return self.evaluate_with_logits(data, epoch)[0]

    def evaluate_with_logits(self, data: TensorSplit, epoch: int | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
        logits, labels = self.predict(data)
        if not np.isfinite(logits).all():
            if epoch is None:
                raise NonFiniteLoss(f"the best checkpoint in {self.run_dir} predicts non-finite values")
            raise self.non_finite("the validation predictions became non-finite", epoch)
        metrics = compute_metrics_from_logits(labels, logits, self.dataset.classes, self.task)
        metrics["loss"] = float(self.cpu_loss_fn(torch.from_numpy(logits), torch.from_numpy(labels)))
        return metrics, logits, labels

    def metrics_line(self, epoch: int, train_loss: float, train_acc: float, val: dict, seconds: float) -> dict:
        return {"epoch": epoch + 1, "phase": self.strategy.phases[self.plan[epoch]].name,
                "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss, "train_accuracy": train_acc,
                **{f"val_{k}": val[k] for k in ("loss", "accuracy", "precision", "recall", "f1", "auc")},
                "trainable": list(self.state.trainable), "seconds": round(seconds, 3)}

    def after_epoch(self, val: dict) -> tuple[bool, bool]:
        """Best value, schedules, gradual unfreezing and early stopping: (improved, stop)."""
        value = val[self.cfg.monitor]
        improved = value == value and (self.state.best is None or value > self.state.best)
        if improved:
            self.state.best, self.state.best_epoch, self.state.bad_epochs = value, self.state.epoch + 1, 0
        else:
            self.state.bad_epochs += 1
        if self.schedule_name == "exponential":
            self.scheduler.step()
        elif self.schedule_name == "plateau":
            self.scheduler.step(value if value == value else 0.0)
        if self.strategy.unfreeze_while_improving and self.state.unfreezing:
            self.gradual_unfreeze(improved)
        return improved, self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience

    def gradual_unfreeze(self, improved: bool) -> None:
        if not improved:
            self.state.unfreezing = False
            return
        grown = self.strategy.next_unfrozen(set(self.state.trainable), self.net.stage_names())
        self.state.trainable = [s for s in self.net.stage_names() if s in grown]
        self.net.set_trainable(grown)

    # --- checkpoints ------------------------------------------------------------------------------------
    def checkpoint_state(self, epoch: int) -> tuple[dict[str, torch.Tensor], dict]:
        """The tensors and checkpoint.json state that resume this run after ``epoch`` epochs."""
        tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        optimizer = ckpt.split_tensors(self.optimizer.state_dict(), "optimizer", tensors)
        scheduler = ckpt.split_tensors(self.scheduler.state_dict(), "scheduler", tensors) if self.scheduler else None
        return tensors, {"loop": {**self.state.__dict__, "epoch": epoch}, "optimizer": optimizer,
                         "scheduler": scheduler, "grad_scaler": self.scaler.state_dict()}

    def load_checkpoint(self, saved: commit.Committed) -> None:
        """Restore the committed state ``commit.read`` returned, then (process 0) repair what a crash left."""
        try:
            # in place: the feature cache (and anything else given the loop's state) holds this object
            vars(self.state).update(vars(LoopState(**saved.state["loop"])))
            self.net.load_state_dict({k[6:]: v for k, v in saved.tensors.items() if k.startswith("model.")})
            self._make_optimizer(self.state.phase)
            self.optimizer.load_state_dict(ckpt.join_tensors(saved.state["optimizer"], saved.tensors))
            if self.scheduler is not None and saved.state["scheduler"] is not None:
                self.scheduler.load_state_dict(ckpt.join_tensors(saved.state["scheduler"], saved.tensors))
            if saved.state.get("grad_scaler"):
                self.scaler.load_state_dict(saved.state["grad_scaler"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"{self.run_dir / RunDir.CHECKPOINT_STATE}: does not match this run's model or "
                                  f"optimizer ({type(exc).__name__}); {RESUME_FIX}") from None
        if distributed.is_main():  # under torchrun process 0 repairs the files, before the others read them
            commit.repair(self.run_dir, self.state.epoch, self.state.best_epoch, self.save_best,
                          metrics_table=self.logs.metrics_table)

    def test_metrics(self) -> dict | None:
        distributed.barrier()  # under torchrun: process 0 has written the best weights
        if "test" not in self.dataset.splits or not (self.run_dir / RunDir.WEIGHTS).exists():
            return None
        self.net.load_state_dict(ckpt.load_tensors(self.run_dir / RunDir.WEIGHTS))
        split = self.dataset.split("test")
        data = TensorSplit(split, self.size, self.task, self.rule, self.cache, label=f"{self.dataset.name} test")
        metrics, logits, labels = self.evaluate_with_logits(data)
        # stored so that reports and statistics need no model (txkit evaluate, experiment report)
        if distributed.is_main():
            save_predictions(self.run_dir, "test", labels, logits, split.ids, resampling_groups(split))
        return metrics

    def oof_metrics(self) -> dict | None:
        """With `folds`: the held-out fold's metrics with the best weights, its predictions stored as
        predictions_oof.npz (ids and patients with them) for the experiment report's pooled statistics."""
        distributed.barrier()  # under torchrun: process 0 has written the best weights
        if self.folds is None or not (self.run_dir / RunDir.WEIGHTS).exists():
            return None
        self.net.load_state_dict(ckpt.load_tensors(self.run_dir / RunDir.WEIGHTS))
        parts = self.folds
        data = TensorSplit(parts.pool, self.size, self.task, self.rule, self.cache, indices=parts.oof,
                           label=f"{self.dataset.name} fold {self.cfg.fold}/{self.cfg.folds} out-of-fold")
        metrics, logits, labels = self.evaluate_with_logits(data)
        if distributed.is_main():
            split = data.split
            save_predictions(self.run_dir, "oof", labels, logits, split.ids, resampling_groups(split))
        return metrics


def horizontal_flip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def engine_summary(trainer: Trainer, status: str, elapsed: float, test: dict | None,
                   oof: dict | None = None) -> dict:
    summary = {"status": status, "monitor": trainer.cfg.monitor, "best_val": trainer.state.best,
               "best_epoch": trainer.state.best_epoch, "epochs_run": trainer.state.epoch,
               "weights": resolved_weights(trainer.cfg, trainer.strategy), "image_size": trainer.size,
               "train_images": len(trainer.train_data), "elapsed_s": round(elapsed, 2), "test": test,
               "image_cache": {"train": trainer.train_data.cache_status, "val": trainer.val_data.cache_status},
               "feature_cache": trainer.feature_cache.summary()}
    if trainer.folds is not None:
        summary["oof"] = oof  # the held-out fold's metrics (None when the run did not finish)
    return summary
