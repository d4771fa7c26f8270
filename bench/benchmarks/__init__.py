"""Benchmark programs: throughput of the neuron game and of NEUROGAME, the estimator benchmark and its limits, and
MCUE's readings. Each runs as ``python -m bench.benchmarks.NAME`` (the estimator benchmark also as
``python -m bench estimators``)."""
