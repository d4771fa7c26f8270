"""Cooperative games: the batched Game protocol (shapiq's), the neuron game of GTAP, small closed-form games, and
MCUE, which reads the neuron game's uncertainty to choose beta_d's d."""

from methods.games.base import FunctionGame, Game, RestrictedGame, check_coalitions
from methods.games.graph import GraphGame, neuron_game
from methods.games.mcue import DEFAULT_GRID, OUTPUTS, MCUEResult, check_output, mcue
from methods.games.neuron import DEFAULT_MEMORY_CAP, NeuronGame, naive_logits, naive_site_logits
from methods.games.toy import AdditiveGame, RandomGame, TableGame, UnanimityGame, WeightedVotingGame

__all__ = [
    "DEFAULT_GRID", "DEFAULT_MEMORY_CAP", "OUTPUTS", "AdditiveGame", "FunctionGame", "Game", "GraphGame", "MCUEResult",
    "NeuronGame", "RandomGame", "RestrictedGame", "TableGame", "UnanimityGame", "WeightedVotingGame",
    "check_coalitions", "check_output", "mcue", "naive_logits", "naive_site_logits", "neuron_game",
]
