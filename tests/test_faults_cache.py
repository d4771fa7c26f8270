"""Faults in the files a run reads: a damaged checkpoint in the cache is retrained once, an unreadable data file is
one DataError line."""

import pytest
import torch
from helpers import OPTIONS, TINY_PAIR, WRITERS

from bench.cli import main
from datasets import training
from datasets.data import load_dataset
from datasets.errors import DataError
from datasets.training import train_pair

pytestmark = pytest.mark.usefixtures("private_cache")


def _train(data_dir):
    return train_pair(TINY_PAIR, seed=0, data_dir=data_dir, device="cpu", progress=False)


def _weights(trained):
    return {name: value.detach().clone() for name, value in trained.model.state_dict().items()}


def _assert_same_weights(trained, weights):
    state = trained.model.state_dict()
    assert list(state) == list(weights)
    for name, value in weights.items():
        assert torch.equal(state[name], value), name


def _no_training(*args, **kwargs):
    raise AssertionError("an intact cached checkpoint must not be retrained")


def _assert_heals(data_dir, path, weights, capsys):
    """``train_pair`` retrains the damaged checkpoint once, says so in one line naming it, and writes it back."""
    capsys.readouterr()
    healed = _train(data_dir)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "retraining" in err, err
    assert healed.path == path
    _assert_same_weights(healed, weights)
    return healed, err


@pytest.mark.parametrize("damage", ["half", "empty"])
def test_a_damaged_checkpoint_is_retrained_once_to_the_same_weights(tiny_mnist, capsys, monkeypatch, damage):
    first = _train(tiny_mnist)
    weights = _weights(first)
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2] if damage == "half" else b"")

    healed, _ = _assert_heals(tiny_mnist, first.path, weights, capsys)
    for key in ("val_accuracy", "test_accuracy", "cache_key", "epochs", "seed"):
        assert healed.metrics[key] == first.metrics[key], key
    # The retrained checkpoint replaced the damaged one: the next run loads it without training, silently.
    assert first.path.stat().st_size > 0 and not list(first.path.parent.glob("*.tmp"))
    monkeypatch.setattr(training, "fit", _no_training)
    cached = _train(tiny_mnist)
    assert capsys.readouterr().err == ""
    _assert_same_weights(cached, weights)
    assert cached.metrics == healed.metrics


def test_a_checkpoint_whose_weights_changed_fails_its_checksum(tiny_mnist, capsys):
    """A checkpoint torch can still read but whose tensors are not the ones written is caught by its checksum."""
    first = _train(tiny_mnist)
    weights = _weights(first)
    state = torch.load(first.path, map_location="cpu", weights_only=True)
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = state["state_dict"][name] + 1.0
    torch.save(state, first.path)

    _, err = _assert_heals(tiny_mnist, first.path, weights, capsys)
    assert "checksum" in err


def test_a_checkpoint_written_without_a_checksum_loads_as_before(tiny_mnist, capsys, monkeypatch):
    """Checkpoints written before checksums existed hold only state_dict and metrics: they load, untrained."""
    first = _train(tiny_mnist)
    weights = _weights(first)
    state = torch.load(first.path, map_location="cpu", weights_only=True)
    torch.save({"state_dict": state["state_dict"], "metrics": state["metrics"]}, first.path)

    monkeypatch.setattr(training, "fit", _no_training)
    capsys.readouterr()
    cached = _train(tiny_mnist)
    assert capsys.readouterr().err == ""
    _assert_same_weights(cached, weights)
    assert cached.metrics == first.metrics


def test_a_damaged_checkpoint_that_cannot_be_rewritten_is_a_data_error(tiny_mnist, monkeypatch):
    first = _train(tiny_mnist)
    first.path.write_bytes(b"")

    def full_disk(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DataError) as caught:
        _train(tiny_mnist)
    message = str(caught.value)
    assert "\n" not in message and str(first.path) in message and "No space left on device" in message


# ------------------------------------------------------------------------------------------------------------
# Unreadable data files: /proc/self/mem is a regular file that fails every read with EIO (a chmod 000 file does
# not stop root, who runs these tests)


def _make_unreadable(path):
    assert path.is_file()
    path.unlink()
    path.symlink_to("/proc/self/mem")


def test_cli_train_on_an_unreadable_data_file_is_one_line_with_exit_code_2(tiny_mnist, capsys):
    path = tiny_mnist / "mnist" / "train-labels-idx1-ubyte.gz"
    _make_unreadable(path)
    argv = ["train", TINY_PAIR.name, "--data-dir", str(tiny_mnist), "--device", "cpu", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: MNIST: ") and str(path) in err, err
    assert "Input/output error" in err


@pytest.mark.parametrize(
    ("dataset", "relative"),
    [
        ("mnist", "mnist/t10k-images-idx3-ubyte.gz"),  # the md5 of every .gz
        ("emotion", "emotion/val.txt"),  # text files
        ("twitter-topic", "twitter-financial-news-topic/topic_train.csv"),  # CSV files
        ("utkface", "faces-utkface/labels.csv"),
        ("utkface", "faces-utkface/SHA256SUMS"),
        ("tiny-imagenet", "tiny-imagenet-200/wnids.txt"),
        ("celeba", "celeba/list_eval_partition.txt"),
    ],
)
def test_an_unreadable_data_file_is_one_data_error_line(tmp_path, dataset, relative):
    WRITERS[dataset](tmp_path)
    path = tmp_path / relative
    _make_unreadable(path)
    with pytest.raises(DataError) as caught:
        load_dataset(dataset, data_dir=tmp_path, **OPTIONS.get(dataset, {}))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "Input/output error" in message, message


def test_an_unreadable_image_is_one_data_error_line(tmp_path):
    WRITERS["utkface"](tmp_path)
    path = next((tmp_path / "faces-utkface" / "UTKFace").iterdir())
    _make_unreadable(path)
    with pytest.raises(DataError) as caught:
        load_dataset("utkface", data_dir=tmp_path, image_size=8, verify_checksums=False)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "Input/output error" in message, message
