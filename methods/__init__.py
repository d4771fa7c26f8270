"""Pure torch/numpy methods, one concept per subpackage; nothing here logs, prints or knows about MLflow or Optuna.

The subpackages, lowest first (``tests/test_layering.py`` enforces the order): ``network`` (which weights belong to
which unit, physical removal) <- ``games`` (the Game protocol, the neuron game, MCUE) <- ``indices`` (power-index
estimators) <- ``scorers`` (every method, in one registry) <- ``pruning`` (strategies and compression curves).
``analyses``, ``neurogame`` and ``estimators`` sit beside ``scorers``.

Importing ``methods`` wires NEUROGAME's model, training family and pairs into the registries of ``datasets``, which
never imports ``methods``.
"""

from methods import neurogame  # noqa: F401  (registers NEUROGAME's models, family and pairs)
