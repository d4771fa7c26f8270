"""What a network's units are made of: which weights belong to which unit, parameter counts of pruned networks, and
physically pruned networks with their MACs and latency."""

from methods.network.physical import measure_latency, network_cost, prune_network, pruned_point
from methods.network.structure import UnitGroup, attached_parameters, parameter_counts, unit_groups

__all__ = ["UnitGroup", "attached_parameters", "measure_latency", "network_cost", "parameter_counts", "prune_network",
           "pruned_point", "unit_groups"]
