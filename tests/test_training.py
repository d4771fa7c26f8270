"""Pairs, seeded training, the checkpoint cache and the CLI, on tiny generated data."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import OPTIONS, WRITERS, tiny_pair

from bench.cli import main
from datasets import training
from datasets.data import as_tensors, load_dataset
from datasets.models import MODELS, build_model, unit_counts
from datasets.pairs import PAIRS
from datasets.training import train_pair
from methods.games import GraphGame
from methods.scorers import PruningProblem

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture()
def mnist_root(tmp_path):
    WRITERS["mnist"](tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", PAIRS.names())
def test_pair_contract(name, tmp_path):
    """Every registered pair builds on its dataset, its units exist, and a neuron game can be played on it."""
    pair = PAIRS.get(name)
    WRITERS[pair.dataset](tmp_path)
    options = {**pair.dataset_options, **OPTIONS.get(pair.dataset, {})}
    if pair.dataset == "utkface":
        options["image_size"] = 32 if pair.model == "alexnet" else 16  # AlexNet's smallest input
    splits = load_dataset(pair.dataset, data_dir=tmp_path, **options)
    model = build_model(pair.model, input_shape=splits.input_shape, num_classes=splits.num_classes).eval()
    sizes = unit_counts(model, pair.units, splits.input_shape)
    assert all(size > 0 for size in sizes.values())
    x = torch.stack([splits.val[i][0] for i in range(min(4, len(splits.val)))])
    y = torch.as_tensor([int(splits.val[i][1]) for i in range(len(x))])
    assert model(x).shape == (len(x), splits.num_classes)
    problem = PruningProblem.build(model, pair.units, x, y)
    assert problem.n_units == sum(sizes.values())
    assert problem.game(np.ones((1, problem.n_units), bool)).shape == (1,)
    if isinstance(problem.game, GraphGame):  # torch.fx traces it: the coalition-free part is cached
        assert problem.game.traced
    # The pair trains with a registered family, and its recipe and family both enter the cache key.
    assert training.FAMILIES.get(pair.family).name == pair.family
    key = training.cache_key(pair, seed=0, val_fraction=0.1, split_seed=0)
    assert key != training.cache_key(pair.with_recipe(epochs=pair.recipe.epochs + 1), seed=0, val_fraction=0.1,
                                     split_seed=0)
    assert key != training.cache_key(dataclasses.replace(pair, family="other"), seed=0, val_fraction=0.1,
                                     split_seed=0)


def test_models_registry_is_loud():
    assert {"lenet300", "lenet5", "ffn", "alexnet", "face-mlp", "face-cnn"} <= set(MODELS.names())
    with pytest.raises(KeyError, match="Did you mean 'lenet5'"):
        MODELS.get("lenet-5")
    with pytest.raises(ValueError, match="already registered"):
        MODELS.add("lenet5", lambda **_: None)


def test_alexnet_says_its_smallest_input():
    with pytest.raises(ValueError, match="at least 32x32 pixels.*got 16x16"):
        build_model("alexnet", input_shape=(3, 16, 16), num_classes=8)


def test_lenet_geometry_matches_the_paper():
    lenet5 = build_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    sizes = unit_counts(lenet5, ("flatten", "relu3", "relu4"), (1, 28, 28))
    assert sizes == {"flatten": 400, "relu3": 120, "relu4": 84}
    lenet300 = build_model("lenet300", input_shape=(1, 28, 28), num_classes=10)
    assert sum(p.numel() for p in lenet300.parameters()) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    alexnet = build_model("alexnet", input_shape=(3, 64, 64), num_classes=200)
    assert alexnet(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_training_is_seeded_and_cached(mnist_root, monkeypatch):
    pair = tiny_pair()
    first = train_pair(pair, seed=3, data_dir=mnist_root, device="cpu", progress=False)
    assert first.path.exists() and 0 <= first.metrics["test_accuracy"] <= 1
    assert first.metrics["cache_key"] in first.path.name

    def no_training(*args, **kwargs):
        raise AssertionError("a cached pair must not be retrained")

    monkeypatch.setattr(training, "fit", no_training)
    cached = train_pair(pair, seed=3, data_dir=mnist_root, device="cpu", progress=False)
    assert cached.path == first.path and cached.metrics == first.metrics
    for a, b in zip(first.model.state_dict().values(), cached.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    monkeypatch.undo()

    again = train_pair(pair, seed=3, data_dir=mnist_root, device="cpu", progress=False, force=True)
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), "same seed, same weights"
    other_seed = train_pair(pair, seed=4, data_dir=mnist_root, device="cpu", progress=False)
    assert other_seed.path != first.path
    changed = train_pair(tiny_pair(lr=3e-3), seed=3, data_dir=mnist_root, device="cpu", progress=False)
    assert changed.path != first.path, "a changed recipe must retrain"


def test_training_records_learning_curves_per_epoch(mnist_root):
    pair = tiny_pair(epochs=3)
    trained = train_pair(pair, seed=0, data_dir=mnist_root, device="cpu", progress=False)
    history = trained.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for record in history:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(record)
        assert 0 <= record["train_accuracy"] <= 1 and record["train_loss"] > 0
    # The last epoch's validation accuracy is the trained network's, measured the same way.
    assert history[-1]["val_accuracy"] == pytest.approx(trained.metrics["val_accuracy"])
    x_val, y_val = as_tensors(trained.splits.val)
    loss = torch.nn.functional.cross_entropy(trained.model(x_val), y_val).item()
    assert history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)


@dataclasses.dataclass(frozen=True)
class _LabelSmoothing:
    """A training family for the test: another loss, a per-epoch hook and a per-epoch metric."""

    name: str = "smooth"
    calls: list = dataclasses.field(default_factory=list)

    def loss(self, model, x, y):
        logits = model(x)
        return torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.5), logits

    def on_epoch_start(self, model, epoch, epochs):
        self.calls.append((epoch, epochs))

    def epoch_metrics(self, model):
        return {"first_weight_norm": float(next(model.parameters()).detach().norm())}


def test_a_training_family_changes_the_loss_and_the_cache_key(mnist_root, register):
    family = _LabelSmoothing()
    register(training.FAMILIES, "smooth", family)
    plain = train_pair(tiny_pair(epochs=2), seed=1, data_dir=mnist_root, device="cpu", progress=False)
    smooth = train_pair(dataclasses.replace(tiny_pair(epochs=2), family="smooth"), seed=1, data_dir=mnist_root,
                        device="cpu", progress=False)
    assert family.calls == [(0, 2), (1, 2)]
    assert smooth.path != plain.path and smooth.metrics["family"] == "smooth"
    assert all("first_weight_norm" in record for record in smooth.metrics["history"])
    # The same seed and data, another loss: other weights (so a family checkpoint can never pass for a plain one).
    first = next(iter(plain.model.state_dict()))
    assert not torch.equal(plain.model.state_dict()[first], smooth.model.state_dict()[first])
    with pytest.raises(KeyError, match="unknown training family 'smoth'"):
        train_pair(dataclasses.replace(tiny_pair(), family="smoth"), seed=1, data_dir=mnist_root, device="cpu",
                   progress=False)


def test_initial_model_is_where_training_starts(mnist_root, monkeypatch):
    pair = tiny_pair()
    started = {}

    def record_start(model, *args, **kwargs):
        started.update({k: v.clone() for k, v in model.state_dict().items()})
        return []

    monkeypatch.setattr(training, "fit", record_start)
    trained = train_pair(pair, seed=7, data_dir=mnist_root, device="cpu", progress=False, force=True)
    initial = training.initial_model(pair, seed=7, input_shape=trained.splits.input_shape,
                                     num_classes=trained.splits.num_classes)
    for name, value in initial.state_dict().items():
        assert torch.equal(value, started[name]), name


def test_no_half_written_checkpoint(mnist_root, monkeypatch):
    pair = tiny_pair(epochs=2)

    def broken_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        train_pair(pair, seed=0, data_dir=mnist_root, device="cpu", progress=False)
    key = training.cache_key(pair, seed=0, val_fraction=0.1, split_seed=0)
    path = training.checkpoint_path(pair, key)
    assert not path.exists() and not list(path.parent.glob("*.tmp"))


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet300-mnist", "lenet5-mnist", "lenet5-mnist01", "ffn-emotion", "ffn-twitter-topic",
                 "alexnet-tiny-imagenet", "mnist", "gtap", "wmp"):
        assert name in out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["train", "lenet300-mnsit"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'lenet300-mnist'" in err.lower()
    assert main(["train", "lenet300-mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train-images-idx3-ubyte.gz" in err and str(tmp_path) in err


def test_cli_train(mnist_root, capsys, register):
    register(PAIRS, "tiny-lenet300", tiny_pair())
    assert main(["train", "tiny-lenet300", "--seed", "1", "--data-dir", str(mnist_root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "checkpoint:" in out


def test_cli_prune_prints_a_curve(mnist_root, capsys, register):
    register(PAIRS, "tiny-lenet300", tiny_pair())
    argv = ["prune", "tiny-lenet300", "--data-dir", str(mnist_root), "--method", "gtap", "--param", "index=beta",
            "--param", "budget=60", "--strategy", "iterated-building", "--step", "0.25", "--fractions", "d,0.5,1.0",
            "--mcue-samples", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MCUE: t* =" in out and "AUC (units)" in out
    assert len([line for line in out.splitlines() if line.strip() and line.split()[0].replace(".", "").isdigit()]) == 3


def test_cli_prune_rejects_bad_method_parameters(mnist_root, capsys, register):
    register(PAIRS, "tiny-lenet300", tiny_pair())
    assert main(["prune", "tiny-lenet300", "--data-dir", str(mnist_root), "--method", "wmp", "--param", "frm=x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid: form" in err


def test_cli_prune_with_fine_tuning(mnist_root, capsys, monkeypatch, register):
    from methods.pruning import curves

    register(PAIRS, "tiny-lenet300", tiny_pair())
    calls = []
    real = curves.fine_tune

    def counting(*args, **kwargs):
        calls.append(kwargs["epochs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(curves, "fine_tune", counting)
    argv = ["prune", "tiny-lenet300", "--data-dir", str(mnist_root), "--method", "wmp", "--fractions", "0.1,0.5",
            "--fine-tune-epochs", "2"]
    assert main(argv) == 0
    assert calls == [2, 2]  # each pruned network was fine-tuned before its test accuracy was measured
    assert "AUC (units)" in capsys.readouterr().out


@pytest.mark.slow
def test_python_m_bench_from_a_folder_holding_reports_out(tmp_path):
    """`bench run` writes ./reports/out/; a later `python -m bench` there must still import our reports package."""
    import subprocess
    import sys

    from bench.tracking import Tracker

    (tmp_path / "reports" / "out" / "lenet").mkdir(parents=True)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    Tracker(uri, "lenet")  # an experiment without runs: `bench report` imports reports.build_report, then says so
    done = subprocess.run([sys.executable, "-m", "bench", "report", "--suite", "lenet", "--tracking-uri", uri],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: no runs of suite 'lenet'") and "Traceback" not in done.stderr
