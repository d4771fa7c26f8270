"""The faces comparison: suites of trained models (no methods), pair variants, model options, early stopping, the
classification report, the paired bootstrap, the models report and model tuning, on tiny generated faces."""

import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import WRITERS
from torch.utils.data import TensorDataset

from bench.cli import main
from bench.plan import plan
from bench.suite import SuiteError, load_suite
from datasets import training
from datasets.models import build_model, check_model_options, model_option_defaults
from datasets.pairs import PAIRS, Recipe
from reports.data import SuiteData
from reports.tables import model_leaderboard, paired_bootstrap, paired_comparisons

pytestmark = pytest.mark.usefixtures("private_cache", "quiet_mlflow")


def _suite(tmp_path: Path, **changes) -> Path:
    suite = {
        "name": "tinyfaces",
        "pairs": [
            {"name": "ng-tiny", "pair": "neurogame-utkface", "dataset_options": {"image_size": 16}},
            {"name": "cnn-tiny", "pair": "face-cnn-utkface", "dataset_options": {"image_size": 16}},
            {"name": "mlp-tiny", "pair": "face-mlp-utkface", "dataset_options": {"image_size": 16}},
        ],
        "seeds": [0, 1],
        "recipe": {"epochs": 2, "batch_size": 8},
    }
    suite.update(changes)
    path = tmp_path / "tinyfaces.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# -- models and their options -----------------------------------------------------------------------------------


def test_model_options_are_checked_by_name_and_value():
    with pytest.raises(ValueError, match="no option 'top_q'. Did you mean 'top_p'"):
        check_model_options("neurogame", {"top_q": 0.5})
    for options, message in (({"top_p": 1.5}, r"top_p must be in \(0, 1\]"), ({"coalition_size": 1}, "n must be"),
                             ({"temperature": 0}, "temperature T must be > 0")):
        with pytest.raises(ValueError, match=message):
            check_model_options("neurogame", options)
    with pytest.raises(ValueError, match="does not fit"):  # a patch larger than the game layer's 1x1 maps
        build_model("neurogame", input_shape=(3, 4, 4), num_classes=2, coalition_size=3)
    model = build_model("neurogame", input_shape=(3, 16, 16), num_classes=2, top_p=0.8)
    assert model.game1.config.top_p == 0.8
    assert model_option_defaults("neurogame-3x3")["coalition_size"] == 3
    with pytest.raises(ValueError, match="no option"):
        build_model("face-cnn", input_shape=(3, 16, 16), num_classes=2, p=0.5)


def test_dropout_control_drops_where_the_game_layer_sits():
    model = build_model("face-cnn-dropout", input_shape=(3, 16, 16), num_classes=2)
    names = [name for name, _ in model.named_children()]
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 1 and drops[0].p == 0.55
    assert names.index("drop3") == names.index("flatten") - 1  # on the last conv block's pooled maps


def test_face_pairs_cover_every_model_and_task():
    for suffix in ("utkface", "utkface-age", "utkface128g", "celeba"):
        tasks = {PAIRS.get(f"{model}-{suffix}").task for model in
                 ("neurogame", "face-cnn", "face-cnn-dropout", "face-mlp")}
        assert len(tasks) == 1
    assert PAIRS.get("neurogame-utkface-age").dataset_options["target"] == "age"
    assert PAIRS.get("face-mlp-utkface128g").dataset_options == {"target": "gender", "image_size": 128,
                                                                 "grayscale": True}
    assert PAIRS.get("neurogame-celeba").gpu_sized


def test_cache_key_moves_with_model_options_and_patience_only_when_set():
    pair = PAIRS.get("neurogame-utkface")
    key = training.cache_key(pair, seed=0, val_fraction=0.1, split_seed=0)
    import dataclasses

    assert training.cache_key(dataclasses.replace(pair, model_options={"top_p": 0.8}), seed=0, val_fraction=0.1,
                              split_seed=0) != key
    assert training.cache_key(pair.with_recipe(patience=2), seed=0, val_fraction=0.1, split_seed=0) != key
    assert "patience" not in training._recipe_key(pair.recipe)  # the default leaves older keys as they were


# -- training ---------------------------------------------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch(monkeypatch):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    data = TensorDataset(x, y)
    model = build_model("lenet300", input_shape=(8,), num_classes=2)
    losses = iter([1.0, 0.5, 0.7, 0.6, 0.4, 0.3])  # best at epoch 2; epochs 3 and 4 do not beat it
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: (next(losses), 0.5))
    snapshots = []

    def on_epoch(record):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    history = training.fit(model, data, Recipe(epochs=6, batch_size=16, patience=2), seed=0,
                           device=torch.device("cpu"), val=data, progress=False, on_epoch=on_epoch)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]  # stopped after 2 epochs without a lower loss
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][name])
    assert training.best_epoch(history, Recipe(epochs=6, patience=2)) == 2
    assert training.best_epoch(history, Recipe(epochs=6)) == 4
    with pytest.raises(ValueError, match="patience"):
        Recipe(epochs=2, patience=-1)


def test_classification_report_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 0, 1, 0, 1])
    records, confusion = training.classification_report(labels, predictions, ("a", "b", "c"))
    assert confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    a, b, c = records
    assert (a["precision"], a["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert a["f1"] == pytest.approx(2 / 3)
    assert (b["precision"], b["recall"], b["support"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2), 2)
    assert b["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert math.isnan(c["precision"]) and c["recall"] == 0 and c["f1"] == 0  # never predicted: it counts as 0


def test_macro_f1_counts_a_class_the_network_never_predicts():
    """A network that answers one class for everything has the macro F1 of that one class over all present ones,
    as scikit-learn's; a class neither present nor predicted is left out."""
    labels = np.array([0, 0, 1, 2])
    records, _ = training.classification_report(labels, np.zeros(4, int), ("a", "b", "c", "absent"))
    f1 = [r["f1"] for r in records]
    assert f1[:3] == [pytest.approx(2 * 2 / (2 + 4)), 0, 0] and math.isnan(f1[3])
    assert np.nanmean(f1) == pytest.approx((2 / 3) / 3)


# -- the paired bootstrap ---------------------------------------------------------------------------------------


def test_paired_bootstrap_is_exact_at_the_extremes_and_calibrated_between():
    rng = np.random.default_rng(0)
    always = np.ones((3, 500))
    never = np.zeros((3, 500))
    assert np.all(paired_bootstrap(always, always, resamples=50, rng=rng) == 0)
    assert np.all(paired_bootstrap(always, never, resamples=50, rng=rng) == 1)
    # one seed, independent errors: the bootstrap sd of the difference is the binomial standard error
    a = (rng.random((1, 4000)) < 0.8).astype(float)
    b = (rng.random((1, 4000)) < 0.7).astype(float)
    stats = paired_bootstrap(a, b, resamples=2000, rng=rng)
    diff = a - b
    assert stats.mean() == pytest.approx(diff.mean(), abs=0.003)
    assert stats.std() == pytest.approx(diff.std() / math.sqrt(4000), rel=0.1)
    # seeds that disagree widen the interval beyond the example noise alone
    seeds = np.stack([np.ones(4000), np.zeros(4000), np.ones(4000)])
    wide = paired_bootstrap(seeds, np.full((3, 4000), 0.5) > 1, resamples=500, rng=rng)
    assert wide.std() > 0.2


def _data_with(predictions: dict[str, list[list[int]]], labels: list[int]) -> SuiteData:
    models, rows = [], []
    for pair, per_seed in predictions.items():
        for seed, predicted in enumerate(per_seed):
            accuracy = float(np.mean(np.array(predicted) == np.array(labels)))
            models.append({"run_id": f"{pair}{seed}", "pair": pair, "seed": seed, "model": pair, "task": "t",
                           "test_accuracy": accuracy, "test_macro_f1": accuracy, "trained_val_accuracy": accuracy,
                           "n_parameters": 10, "seconds_per_epoch": 1.0, "train_seconds": 2.0, "epochs_trained": 2,
                           "best_epoch": 2})
            rows += [{"pair": pair, "seed": seed, "index": i, "label": label, "prediction": p}
                     for i, (label, p) in enumerate(zip(labels, predicted, strict=True))]
    return SuiteData(suite="s", profile="default", parent_run_id=None, fractions=[], models=pd.DataFrame(models),
                     predictions=pd.DataFrame(rows))


def test_paired_comparisons_rank_and_judge():
    labels = [0, 1] * 200
    good = [labels, labels, labels]
    noisy = [[1 - v if i % 3 == 0 else v for i, v in enumerate(labels)]] * 3
    data = _data_with({"weak": noisy, "strong": good}, labels)
    board = model_leaderboard(data)
    assert list(board["pair"]) == ["strong", "weak"]
    comparisons = paired_comparisons(data, resamples=500)
    row = comparisons.iloc[0]
    assert (row["a"], row["b"]) == ("strong", "weak")
    assert row["diff"] == pytest.approx(134 / 400)
    assert row["beyond_noise"] and row["ci_low"] > 0.25
    same = _data_with({"x": good, "y": good}, labels)
    assert not paired_comparisons(same, resamples=200).iloc[0]["beyond_noise"]


# -- suites of trained models -----------------------------------------------------------------------------------


def test_faces_suite_loads_with_variants_and_no_methods():
    suite = load_suite("faces")
    assert suite.methods == () and suite.fractions == ()
    assert len(suite.seeds) >= 3
    assert {suite.pair(p).model for p in suite.pairs} == {"neurogame", "face-cnn", "face-cnn-dropout", "face-mlp"}
    assert [s.kind for s in plan(suite)] == ["train"] * 12
    ablation = load_suite("faces", profile="ablation")
    options = {name: ablation.pair(name).model_options for name in ablation.pairs}
    assert options["neurogame-n3-utkface"] == {"coalition_size": 3}
    assert options["neurogame-random-filter-utkface"] == {"filter": "random"}
    assert ablation.pair("neurogame-p08-utkface").recipe.epochs == 3  # the suite's recipe applies to variants


@pytest.mark.parametrize("pairs, message", [
    ([{"name": "x", "pair": "neurogame-utkface", "model_options": {"top_p": 1.5}}], r"pairs\[0\] \(x\): top_p"),
    ([{"name": "x", "pair": "neurogame-utkface", "model_options": {"temperature": 0}}], "temperature T"),
    ([{"name": "x", "pair": "neurogame-utkface", "model_options": {"coalition_size": 1}}], "coalition_size n"),
    ([{"name": "x", "pair": "neurogame-utkface", "model_options": {"topp": 0.5}}], "Did you mean 'top_p'"),
    ([{"name": "face-cnn-utkface", "pair": "neurogame-utkface"}], "already a registered pair"),
    ([{"pair": "neurogame-utkface"}], "needs 'name' and 'pair'"),
    (["face-cnn-utkface", "face-cnn-utkface"], "twice"),
])
def test_bad_pair_variants_stop_at_load_with_one_line(tmp_path, pairs, message):
    with pytest.raises(SuiteError, match=message) as error:
        load_suite(_suite(tmp_path, pairs=pairs))
    assert "\n" not in str(error.value)


def test_methods_need_fractions(tmp_path):
    with pytest.raises(SuiteError, match="fractions"):
        load_suite(_suite(tmp_path, methods=[{"method": "random"}]))


def test_a_patch_larger_than_the_map_stops_before_anything_is_written(tmp_path, capsys):
    WRITERS["utkface"](tmp_path / "data")
    path = _suite(tmp_path, pairs=[{"name": "ng-4px", "pair": "neurogame-utkface",
                                    "dataset_options": {"image_size": 4}, "model_options": {"coalition_size": 3}}])
    code = main(["run", "--suite", str(path), "--data-dir", str(tmp_path / "data"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'store.db'}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "ng-4px" in err[0]
    assert not (tmp_path / "store.db").exists()


@pytest.mark.slow
def test_faces_suite_end_to_end_logs_the_models_and_reports_them(tmp_path, monkeypatch, capsys):
    WRITERS["utkface"](tmp_path / "data", n=40, n_test=12)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    out = tmp_path / "report"
    code = main(["run", "--suite", str(_suite(tmp_path)), "--data-dir", str(tmp_path / "data"), "--tracking-uri",
                 uri, "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with sqlite3.connect(tmp_path / "store.db") as con:
        metrics = dict(con.execute(
            "SELECT t.value || ':' || m.key, m.value FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE t.key = 'pair'").fetchall())
        tags = {k for (k,) in con.execute("SELECT DISTINCT key FROM tags")}
    assert {"model", "task"} <= tags
    for pair in ("ng-tiny", "cnn-tiny", "mlp-tiny"):
        # (precision and F1 of a class the tiny network never predicts are NaN, which is not logged)
        for name in ("test_accuracy", "test/recall/male", "test/recall/female", "seconds_per_epoch",
                     "n_parameters", "train/loss", "val/loss", "val/accuracy"):
            assert f"{pair}:{name}" in metrics, (pair, name)
    assert 0 < metrics["ng-tiny:neurogame/pass_fraction/game1"] <= 1
    report = (out / "report.md").read_text()
    assert "Trained models by task" in report and "UTKFace gender, 64x64x3" in report  # the variant keeps the task
    assert "Paired comparisons" in report and report.count("beyond noise") + report.count("within noise") >= 3
    assert "(CelebA gender: a different dataset)" in report
    glass = sorted(out.glob("glass_box_ng-tiny_s0_game1.png"))
    assert glass and glass[0].read_bytes()[:4] == b"\x89PNG"
    assert list(out.glob("task_curves_*.png"))
    # same seed, same numbers: a second store gives the same test accuracies
    again = tmp_path / "again.db"
    main(["run", "--suite", str(_suite(tmp_path)), "--data-dir", str(tmp_path / "data"), "--tracking-uri",
          f"sqlite:///{again}", "--no-progress", "--no-report"])
    with sqlite3.connect(again) as con:
        repeat = dict(con.execute(
            "SELECT t.value || ':' || m.key, m.value FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE t.key = 'pair' AND m.key = 'test_accuracy'").fetchall())
    assert repeat == {k: v for k, v in metrics.items() if k.endswith(":test_accuracy")}


def test_tune_a_model_of_a_faces_suite(tmp_path, monkeypatch, capsys):
    WRITERS["utkface"](tmp_path / "data", n=40, n_test=12)
    monkeypatch.chdir(tmp_path)
    path = _suite(tmp_path, pairs=[{"name": "ng-tiny", "pair": "neurogame-utkface",
                                    "dataset_options": {"image_size": 16}}],
                  tuning={"neurogame": {"top_p": {"type": "float", "low": 0.3, "high": 0.9},
                                        "coalition_size": {"type": "categorical", "choices": [2]}}})
    code = main(["tune", "--suite", str(path), "--method", "neurogame", "--trials", "2", "--storage", "memory",
                 "--data-dir", str(tmp_path / "data"), "--tracking-uri", f"sqlite:///{tmp_path / 'tune.db'}",
                 "--no-progress"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "best validation accuracy" in output.out
    assert "the pair's own options {'top_p': 0.5, 'coalition_size': 2, 'schedule': 'warmup'" in output.out  # trial 0
    code = main(["tune", "--suite", str(path), "--method", "face-cnn", "--trials", "1", "--storage", "memory",
                 "--data-dir", str(tmp_path / "data"), "--no-progress"])
    assert code == 2  # no face-cnn pair in this suite and no such method entry
    capsys.readouterr()
    # --tuned trains the pair with the study's best options: a new training run whose params carry them
    code = main(["run", "--suite", str(path), "--tuned", "--data-dir", str(tmp_path / "data"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'tune.db'}", "--no-progress", "--no-report"])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "tuned: ng-tiny neurogame {'top_p'" in output.err
    with sqlite3.connect(tmp_path / "tune.db") as con:
        logged = dict(con.execute("SELECT key, value FROM params WHERE key LIKE 'model_options.%'").fetchall())
    assert "model_options.top_p" in logged


def test_celeba_pairs_train_and_report_through_torchvisions_loader(tmp_path, monkeypatch, capsys):
    """CelebA is not staged here: the real loader (torchvision's CelebA) runs on tiny generated files."""
    WRITERS["celeba"](tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    options = {"image_size": 16, "grayscale": True, "verify_checksums": False}
    path = _suite(tmp_path, pairs=[{"name": "ng-celeba", "pair": "neurogame-celeba", "dataset_options": options},
                                   {"name": "mlp-celeba", "pair": "face-mlp-celeba", "dataset_options": options}],
                  seeds=[0], recipe={"epochs": 1, "batch_size": 4})
    out = tmp_path / "report"
    code = main(["run", "--suite", str(path), "--data-dir", str(tmp_path / "data"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'store.db'}", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "CelebA gender, 64x64x3" in report and "ng-celeba" in report and "mlp-celeba" in report
    assert "0.8826" in report and "a different dataset" not in report.split("ng-celeba")[1].split("\n")[0]
