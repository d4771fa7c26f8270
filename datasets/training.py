"""Seeded training of a pair, with trained weights cached on disk: the project's one training loop.

The cache key is a hash of everything that determines the weights: the pair's model, dataset and options, the
recipe, the training family, the seed and the validation carve. Suites reuse cached models; a changed recipe or
family changes the key and retrains.

A **training family** is the seam for models that train differently (NEUROGAME's game layers, ...): it supplies the
loss of a batch, what the model does at the start of each epoch (a schedule) and extra per-epoch metrics. The loop
itself (optimizer, schedule, batches, seeding, per-epoch train and validation loss and accuracy) is :func:`fit`, for
every family and for fine-tuning pruned networks (``methods.pruning.curves``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from datasets.data import Splits, as_tensors, load_dataset
from datasets.data.images import UInt8Images
from datasets.errors import DataError, UsageError, one_line
from datasets.models import build_model
from datasets.pairs import Pair, Recipe, get_pair
from datasets.paths import cache_dir, cache_lock
from datasets.registry import Registry
from datasets.sites import resolve_sites

# Bump when training code changes in a way that changes the weights or what a checkpoint holds, so stale
# checkpoints are not reused. 2: checkpoints hold the per-epoch learning curves. 3: decoded-image splits (UTKFace)
# are batched from their uint8 tensor instead of a DataLoader, which draws a different batch order; conv nets train
# in channels-last layout.
CACHE_VERSION = 3
# Examples per batch when evaluating. Larger batches are slower on a CPU once activations outgrow the caches: a
# 64x64 face CNN predicts 2,800 images in 6.8 s at 2,048 per batch and 3.9 s at 256.
EVAL_BATCH = 256


class TrainingFamily(Protocol):
    """How a family of models trains: the seam of :func:`fit`.

    Attributes:
        name: the registry name (part of the checkpoint cache key).
    """

    name: str

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of a batch and the logits (for accuracy)."""
        ...

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based), e.g. to advance a schedule inside the model."""
        ...

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        """Extra metrics recorded after each epoch (e.g. the fraction of units a game layer passed)."""
        ...


FAMILIES: Registry[TrainingFamily] = Registry("training family")  # NEUROGAME's is added by methods/neurogame/


@dataclass(frozen=True)
class PlainFamily:
    """Softmax cross-entropy on the logits, nothing per epoch: every model of the zoo but NEUROGAME."""

    name: str = "plain"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        return None

    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        return {}


FAMILIES.add("plain", PlainFamily())


@dataclass
class TrainedPair:
    """A trained model with the data it was trained on.

    Attributes:
        pair: the pair definition.
        model: the trained network, in eval mode, on ``device``.
        splits: train / validation / test data.
        seed: the training seed.
        metrics: val_accuracy, test_accuracy, train_seconds, epochs, device, cache_key, family, and history: one
            record per epoch (epoch, train_loss, train_accuracy, val_loss, val_accuracy, seconds, and the family's
            own metrics).
        path: the checkpoint file.
    """

    pair: Pair
    model: nn.Sequential
    splits: Splits
    seed: int
    metrics: dict[str, Any]
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when there is a GPU, else the CPU; anything else is passed to torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no GPU")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code that uses the legacy global state
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def cache_key(pair: Pair, *, seed: int, val_fraction: float, split_seed: int) -> str:
    material = {
        "version": CACHE_VERSION,
        "model": pair.model,
        "dataset": pair.dataset,
        "dataset_options": pair.dataset_options,
        "recipe": _recipe_key(pair.recipe),
        "family": pair.family,
        "seed": seed,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
    }
    if pair.model_options:  # absent when empty, so the keys of existing checkpoints stay as they were
        material["model_options"] = pair.model_options
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _recipe_key(recipe: Recipe) -> dict[str, Any]:
    """The recipe as it enters the cache key; fields added later are left out at their default (patience 0), so
    existing checkpoints keep their keys."""
    fields = dataclasses.asdict(recipe)
    if not fields["patience"]:
        del fields["patience"]
    return fields


def checkpoint_path(pair: Pair, key: str) -> Path:
    return cache_dir() / "models" / f"{pair.checkpoint or pair.name}-{key}.pt"


def load_splits(pair: Pair, *, data_dir: str | Path | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                download: bool = False) -> Splits:
    return load_dataset(pair.dataset, data_dir=data_dir, val_fraction=val_fraction, split_seed=split_seed,
                        download=download, **pair.dataset_options)


def train_pair(
    pair: Pair | str,
    *,
    seed: int,
    data_dir: str | Path | None = None,
    device: str | torch.device | None = "auto",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
    force: bool = False,
    progress: bool = True,
) -> TrainedPair:
    """Returns the trained model of a pair, from the cache when it is there, else by training it.

    Args:
        pair: a Pair or a registered pair name.
        seed: the training seed (initialisation and batch order).
        data_dir: data root (see ``datasets.paths.resolve_data_root``).
        device: "auto", "cpu", "cuda", ...
        val_fraction: fraction of the training data carved off as the validation split.
        split_seed: seed of that carve (kept fixed across training seeds).
        download: let torchvision download missing data (needs internet).
        force: retrain even if a checkpoint exists.
        progress: show progress bars.

    Returns:
        The trained pair; ``metrics`` holds the validation and test accuracy and the training time.
    """
    pair = get_pair(pair) if isinstance(pair, str) else pair
    device = resolve_device(device)
    splits = load_splits(pair, data_dir=data_dir, val_fraction=val_fraction, split_seed=split_seed,
                         download=download)
    key = cache_key(pair, seed=seed, val_fraction=val_fraction, split_seed=split_seed)
    path = checkpoint_path(pair, key)
    model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                        **pair.model_options)
    resolve_sites(model, pair.units, splits.input_shape, owner=f"pair {pair.name!r}")  # a bad unit site stops here
    check = getattr(model, "check_inputs", None)  # a model of token ids: are they ids it embeds?
    if check is not None:
        for name in ("train", "val", "test"):
            try:
                check(as_tensors(getattr(splits, name))[0])
            except ValueError as error:
                raise UsageError(f"pair {pair.name!r}, {name} split: {error}") from None
    # Pairs that share a checkpoint (a transformer's heads and MLP pairs) may be trained at once by two workers:
    # the second waits for the first and loads its checkpoint.
    with cache_lock(path):
        return _load_or_train(pair, model, splits, key, path, seed=seed, device=device, force=force,
                              progress=progress)


def _load_or_train(pair: Pair, model: nn.Module, splits: Splits, key: str, path: Path, *, seed: int,
                   device: torch.device, force: bool, progress: bool) -> TrainedPair:
    """``train_pair`` once its checkpoint's entry is locked: load the checkpoint, or train and save it."""
    damaged = False
    if path.exists() and not force:
        try:
            metrics = load_checkpoint(path, model)
        except DamagedCheckpoint as error:
            # Our own cache file: retrain it (seeded, so to the same weights) rather than fail on every run.
            tqdm.write(f"warning: checkpoint {path} is damaged ({error}); retraining it", file=sys.stderr)
            damaged = True
        else:
            model.to(device).eval()
            return TrainedPair(pair=pair, model=model, splits=splits, seed=seed, metrics=metrics, path=path)

    family = FAMILIES.get(pair.family)
    seed_everything(seed)
    model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
                        **pair.model_options)
    model.to(device)
    start = time.perf_counter()
    history = fit(model, splits.train, pair.recipe, seed=seed, device=device, family=family, val=splits.val,
                  progress=progress, desc=pair.name)
    train_seconds = time.perf_counter() - start
    model.eval()
    metrics = {
        "val_accuracy": accuracy(model, splits.val, device=device),
        "test_accuracy": accuracy(model, splits.test, device=device),
        "train_seconds": round(train_seconds, 2),
        "epochs": len(history),
        "best_epoch": best_epoch(history, pair.recipe),
        "device": str(device),
        "cache_key": key,
        "family": pair.family,
        "seed": seed,
        "history": history,
    }
    if damaged:
        _replace_damaged_checkpoint(path, model, metrics)
    else:
        save_checkpoint(path, model, metrics)
    return TrainedPair(pair=pair, model=model, splits=splits, seed=seed, metrics=metrics, path=path)


def initial_model(pair: Pair | str, *, seed: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The pair's network exactly as :func:`train_pair` initialises it for ``seed``, before any training.

    The control for analyses of trained weights. The caller's random state is left as it was.
    """
    pair = get_pair(pair) if isinstance(pair, str) else pair
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(pair.model, input_shape=input_shape, num_classes=num_classes,
                           **pair.model_options).eval()


class DamagedCheckpoint(Exception):
    """A cached checkpoint that cannot be loaded (unreadable, truncated, a wrong checksum, missing keys); the
    message is the one-line reason."""


def _checkpoint_sha256(state_dict: dict[str, torch.Tensor], metrics: str) -> str:
    """The sha256 of a checkpoint's contents: every tensor's name, dtype, shape and bytes, and the metrics."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    digest.update(metrics.encode())
    return digest.hexdigest()


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict and the metrics (JSON) of a checkpoint file, their checksum verified when it has one
    (checkpoints written before checksums have none, and are read as they are).

    Raises:
        DamagedCheckpoint: the file cannot be read or does not hold what :func:`save_checkpoint` writes.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # our own cache file: anything torch cannot read in it is damage
        detail = one_line(error, 100)
        raise DamagedCheckpoint(f"torch cannot read it: {type(error).__name__}"
                                + (f": {detail}" if detail else "")) from error
    try:
        state_dict, metrics = state["state_dict"], state["metrics"]
        expected = state.get("sha256")
        if expected is not None and _checkpoint_sha256(state_dict, metrics) != expected:
            raise DamagedCheckpoint("its contents do not match its sha256 checksum")
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as error:
        raise DamagedCheckpoint(f"not a checkpoint of this project: {type(error).__name__}: "
                                f"{one_line(error, 100)}") from error
    return state_dict, metrics


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Loads a checkpoint's weights into ``model`` and returns its metrics.

    Raises:
        DamagedCheckpoint: see :func:`read_checkpoint`; also weights that do not fit ``model`` and metrics that
            are not JSON.
    """
    state_dict, metrics = read_checkpoint(path)
    try:
        model.load_state_dict(state_dict)
        return json.loads(metrics)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DamagedCheckpoint(f"not a checkpoint of this model: {type(error).__name__}: "
                                f"{one_line(error, 100)}") from error


def _replace_damaged_checkpoint(path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
    """Writes the retrained checkpoint over the damaged one and reads it back; a failure is a DataError."""
    fix = "delete it, or point COALITION_BENCH_CACHE at a writable folder"
    try:
        save_checkpoint(path, model, metrics)
    except OSError as error:
        raise DataError(f"checkpoint {path} was damaged, and retraining could not replace it "
                        f"({error.strerror or one_line(error)}); {fix}") from error
    try:
        read_checkpoint(path)
    except DamagedCheckpoint as error:
        raise DataError(f"checkpoint {path} was damaged, and is again once retrained ({error}); {fix}") from error


def save_checkpoint(path: Path, model: nn.Module, metrics: dict[str, Any]) -> None:
    """Writes atomically: a killed run never leaves a half-written checkpoint that a later run would trust.

    The file holds the state dict, the metrics (JSON) and the sha256 of both (see :func:`read_checkpoint`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    metrics_json = json.dumps(metrics)
    state = {"state_dict": state_dict, "metrics": metrics_json, "sha256": _checkpoint_sha256(state_dict, metrics_json)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _uint8_rows(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(uint8 images, targets) of a split of decoded images (UTKFace), or None for any other dataset."""
    if isinstance(dataset, UInt8Images):
        return dataset.images[dataset.indices], dataset.targets[dataset.indices]
    return None


def _is_in_memory(dataset: Dataset) -> bool:
    from torch.utils.data import Subset, TensorDataset

    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, TensorDataset)


def batches(dataset: Dataset, *, batch_size: int, shuffle: bool, generator: torch.Generator | None,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches on ``device``; in-memory datasets are sliced directly, which is far faster than a DataLoader."""
    if _is_in_memory(dataset):
        x, y = as_tensors(dataset)
        x, y = x.to(device), y.to(device)
        n = len(y)
        order = torch.randperm(n, generator=generator).to(device) if shuffle else torch.arange(n, device=device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
        return
    rows = _uint8_rows(dataset)
    if rows is not None:  # kept as uint8 on the device (a quarter of float32) and scaled per batch, as items are
        images, targets = rows[0].to(device), rows[1].to(device)
        n = len(targets)
        order = torch.randperm(n, generator=generator).to(device) if shuffle else torch.arange(n, device=device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield images[idx].to(torch.float32) / 255.0, targets[idx]
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                        num_workers=min(4, os.cpu_count() or 1), pin_memory=device.type == "cuda")
    for x, y in loader:
        yield x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)


def fit(model: nn.Module, dataset: Dataset, recipe: Recipe, *, seed: int, device: torch.device,
        family: TrainingFamily | None = None, val: Dataset | None = None, progress: bool = True,
        desc: str = "train", on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Trains ``model`` in place under ``recipe``; deterministic for a given seed.

    Args:
        model: the network (left in eval mode).
        dataset: the training data.
        recipe: optimizer, learning rate, schedule, epochs, batch size.
        seed: seeds the batch order (the caller seeds initialisation).
        device: where to train.
        family: the loss and per-epoch behaviour (default: plain cross-entropy).
        val: if given, its loss and accuracy are measured after every epoch (eval mode, no gradient, the global
            random state untouched, so measuring never changes the trained weights). With ``recipe.patience`` it
            also stops training early: after ``patience`` epochs without a new lowest validation loss, and the
            weights (and buffers) of the best epoch are restored.
        progress: show a progress bar.
        desc: the progress bar's label.
        on_epoch: called with each epoch's record as soon as it is complete (a tuner reports it; an exception it
            raises, such as a pruned trial, stops training and propagates).

    Returns:
        One record per epoch: epoch (1-based), train_loss and train_accuracy (running means over the epoch),
        val_loss and val_accuracy (when ``val`` is given), seconds, and the family's ``epoch_metrics``.
    """
    family = family or FAMILIES.get("plain")
    generator = torch.Generator().manual_seed(seed)
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                    weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(dataset) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    history: list[dict[str, float]] = []
    # Convolutions train about 20 % faster in channels-last layout on the CPU (and use tensor cores better on a GPU);
    # the model goes back to the standard layout when training ends.
    channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    early_stopping = bool(recipe.patience) and val is not None
    best_loss, best_state, since_best = math.inf, None, 0
    model.train()
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for epoch in range(recipe.epochs):
            began = time.perf_counter()
            family.on_epoch_start(model, epoch, recipe.epochs)
            running, correct, seen = 0.0, 0, 0
            for x, y in batches(dataset, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                                device=device):
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                loss, logits = family.loss(model, x, y)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += loss.item() * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(y)
                bar.update(1)
            record = {"epoch": epoch + 1, "train_loss": running / max(seen, 1),
                      "train_accuracy": correct / max(seen, 1)}
            if val is not None:
                record["val_loss"], record["val_accuracy"] = evaluate(model, val, device=device, family=family)
                model.train()
            record["seconds"] = time.perf_counter() - began
            record.update(family.epoch_metrics(model))
            history.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.4f}")
            if on_epoch is not None:
                on_epoch(record)
            if early_stopping:
                if record["val_loss"] < best_loss:
                    best_loss, since_best = record["val_loss"], 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    since_best += 1
                    if since_best >= recipe.patience:
                        break
    if best_state is not None:
        model.load_state_dict(best_state)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def best_epoch(history: list[dict[str, float]], recipe: Recipe) -> int:
    """The epoch (1-based) whose weights :func:`fit` kept: the lowest validation loss under early stopping, else
    the last."""
    if not history:
        return 0
    if recipe.patience and all("val_loss" in record for record in history):
        return int(min(history, key=lambda record: record["val_loss"])["epoch"])
    return int(history[-1]["epoch"])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, device: torch.device, family: TrainingFamily | None = None,
             batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean loss (the family's) and top-1 accuracy of ``model`` on ``dataset``, in eval mode.

    The global random state is restored afterwards (a DataLoader draws a seed from it), so evaluating between
    epochs never changes what training draws next.
    """
    family = family or FAMILIES.get("plain")
    model.eval()
    devices = [device] if device.type == "cuda" else []
    total_loss, correct, total = 0.0, 0, 0
    with torch.random.fork_rng(devices=devices):
        for x, y in batches(dataset, batch_size=batch_size, shuffle=False, generator=None, device=device):
            loss, logits = family.loss(model, x, y)
            total_loss += float(loss) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
    return total_loss / max(total, 1), correct / max(total, 1)


def accuracy(model: nn.Module, dataset: Dataset, *, device: torch.device, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``."""
    return evaluate(model, dataset, device=device, batch_size=batch_size)[1]


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, *, device: torch.device,
            batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """The labels of ``dataset`` and ``model``'s top-1 predictions, in dataset order (eval mode, random state kept).

    Returns:
        (labels, predictions), two int64 arrays.
    """
    model.eval()
    labels, predictions = [], []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for x, y in batches(dataset, batch_size=batch_size, shuffle=False, generator=None, device=device):
            labels.append(y.cpu())
            predictions.append(model(x).argmax(1).cpu())
    return torch.cat(labels).numpy().astype(np.int64), torch.cat(predictions).numpy().astype(np.int64)


def classification_report(labels: np.ndarray, predictions: np.ndarray,
                          classes: tuple[str, ...]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Per-class precision, recall and F1, and the confusion matrix.

    Args:
        labels, predictions: class indices.
        classes: the class names (their count is the number of classes).

    Returns:
        One record per class (class, index, support, precision, recall, f1) and the confusion matrix
        C[true, predicted] (counts). Precision is NaN for a class never predicted and recall for a class absent from
        ``labels``. F1 is 0 for a class with no true positive, predicted or not (what scikit-learn's macro F1
        counts, so a network that never predicts a class is not excused from it), and NaN only for a class that is
        neither present nor predicted, which a macro average leaves out.
    """
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    records = []
    for i, name in enumerate(classes):
        tp, predicted, support = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        precision = tp / predicted if predicted else math.nan
        recall = tp / support if support else math.nan
        f1 = 2 * tp / (support + predicted) if support + predicted else math.nan
        records.append({"class": name, "index": i, "support": int(support), "precision": float(precision),
                        "recall": float(recall), "f1": float(f1)})
    return records, confusion
