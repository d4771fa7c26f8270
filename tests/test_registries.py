"""Every registry is wired in the open, and every registered model honours the contract its spec declares."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import methods  # noqa: F401  (wires NEUROGAME's models, family and pairs)
from bench import cli
from datasets.errors import UsageError
from datasets.models import MODELS, ModelSpec, build_model, check_model_options, model_option_defaults
from datasets.registry import Registry, UnknownNameError

SHAPES = {"lenet300": (1, 28, 28), "lenet5": (1, 28, 28), "ffn": (50,), "alexnet": (3, 64, 64), "vit": (1, 28, 28),
          "text-transformer": (16,)}
FACE_SHAPE = (3, 64, 64)


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name):
    spec = MODELS.get(name)
    assert isinstance(spec, ModelSpec)
    assert set(spec.defaults) <= set(spec.options), "a default for an option the model does not declare"
    if spec.search_space is not None:
        assert set(spec.search_space) <= set(spec.options), "a search space over options the model does not take"
    settable = {k: v for k, v in spec.defaults.items() if k != "config"}  # config is the variant's own object
    check_model_options(name, settable)  # the defaults pass the model's own check
    with pytest.raises(UsageError, match="has no option"):
        check_model_options(name, {"no_such_option": 1})
    shape = SHAPES.get(name, FACE_SHAPE)
    model = build_model(name, input_shape=shape, num_classes=3, **settable)
    assert model(torch.zeros(2, *shape)).shape == (2, 3)
    assert model_option_defaults(name) == spec.defaults


def test_a_variant_declares_its_own_defaults():
    assert model_option_defaults("neurogame")["coalition_size"] == 2
    assert model_option_defaults("neurogame-3x3")["coalition_size"] == 3
    assert model_option_defaults("neurogame-random")["filter"] == "random"


def test_datasets_alone_is_a_consistent_registry():
    """Without ``methods`` imported, every registered pair names a registered model and training family: nothing in
    ``datasets`` waits for a string discovery of ``methods``."""
    code = ("import json, sys; from datasets.pairs import PAIRS; from datasets.models import MODELS; "
            "from datasets.training import FAMILIES; "
            "bad = [p for p in PAIRS.names() if PAIRS.get(p).model not in MODELS "
            "or PAIRS.get(p).family not in FAMILIES]; "
            "print(json.dumps({'bad': bad, 'methods': any(m.split('.')[0] == 'methods' for m in sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result == {"bad": [], "methods": False}


def test_importing_methods_wires_neurogame_into_the_lower_registries():
    from datasets.pairs import PAIRS
    from datasets.training import FAMILIES

    assert {"neurogame", "neurogame-3x3", "neurogame-random"} <= set(MODELS.names())
    assert "neurogame" in FAMILIES
    assert PAIRS.get("neurogame-utkface").family == "neurogame"


def test_registry_is_loud_and_can_be_restored():
    registry: Registry[int] = Registry("thing")
    registry.add("one", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.add("one", 2)
    with pytest.raises(UnknownNameError, match="Did you mean 'one'"):
        registry.get("onr")
    assert registry["one"] == 1 and registry.remove("one") == 1 and "one" not in registry
    with pytest.raises(UnknownNameError):
        registry.remove("one")


def test_the_cli_turns_only_the_projects_errors_into_one_line(monkeypatch, capsys):
    """A usage error is one line and exit 2; a ValueError from inside the code is a bug and keeps its traceback."""

    def usage(args):
        raise UsageError("budget must be a positive number of coalition evaluations, got -1")

    def bug(args):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setitem(cli.COMMANDS, "list", usage)
    assert cli.main(["list"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: budget must be a positive number of coalition evaluations, got -1"
    monkeypatch.setitem(cli.COMMANDS, "list", bug)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["list"])
