"""The NEUROGAME layer: only the strong units of the winning patches of each activation map propagate."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.neurogame.config import MAX_SUBSET_CELLS, NeuroGameConfig
from methods.neurogame.patches import PatchGame, PatchGrid, pair_products, patch_grid, sub_coalitions


@dataclass(frozen=True, eq=False)
class NeuroGameMaps:
    """What a NEUROGAME layer saw and did for a batch, for glass-box plots.

    Attributes:
        activation: (B, C, H, W) the layer's input.
        energy: (B, C, rows, cols) energy E of each patch's configuration.
        payoff: (B, C, rows, cols) its Gibbs payoff exp(-E / T) / Z.
        winning: (B, C, rows, cols) bool, the top-p patches of each map.
        shapley: (B, C, H, W) each unit's Shapley value in its winning patch (the largest, where patches overlap);
            0 outside winning patches.
        coalition_shapley: (B, C, M, n^2) the Shapley values per patch and player; NaN for losing patches.
        threshold: (B, C) rho of each map.
        mask: (B, C, H, W) 1 where the unit propagates (the strong units, or the random filter's choice).
    """

    activation: torch.Tensor
    energy: torch.Tensor
    payoff: torch.Tensor
    winning: torch.Tensor
    shapley: torch.Tensor
    coalition_shapley: torch.Tensor
    threshold: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class _Play:
    """One batched play of the layer's games (internal: what forward and explain share)."""

    grid: PatchGrid
    logits: torch.Tensor  # (B, C, M) -E / T of each patch
    log_partition: torch.Tensor  # (B, C) log Z
    winners: torch.Tensor  # (B, C, K) patch numbers
    shapley: torch.Tensor  # (B, C, K, m)
    threshold: torch.Tensor  # (B, C)
    mask: torch.Tensor  # (B, C, H, W) hard 0/1
    gate: torch.Tensor  # (B, C, H, W) the mask, with the surrogate gradient when learnable


class NeuroGameLayer(nn.Module):
    """A NEUROGAME layer: passes only the strong units of each activation map (see the module docstring).

    Args:
        config: the layer's choices (default: ``NeuroGameConfig()``).

    Input (B, C, H, W) activation maps; output the same maps with every unit that is not strong zeroed.
    """

    preserves_units = True  # channels map one-to-one (methods.network.structure treats the layer like a ReLU)

    def __init__(self, config: NeuroGameConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NeuroGameConfig()
        members, pair_members, weights = sub_coalitions(config.coalition_size, config.neighbourhood)
        # (m, 2^m) and (|edges|, 2^m) 0/1: spin s_i, pair product s_i s_j, counts in sub-coalition S
        self.register_buffer("members", torch.tensor(members.T, dtype=torch.float32), persistent=False)
        self.register_buffer("pair_members", torch.tensor(pair_members.T, dtype=torch.float32), persistent=False)
        self.register_buffer("shapley_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        alpha = torch.tensor(float(config.alpha))
        beta = torch.tensor(float(config.beta))
        log_temperature = torch.tensor(math.log(config.temperature))
        if config.learnable:
            self.alpha, self.beta = nn.Parameter(alpha), nn.Parameter(beta)
            self.log_temperature = nn.Parameter(log_temperature)
        else:  # fixed: the config is the truth, so they stay out of checkpoints
            self.register_buffer("alpha", alpha, persistent=False)
            self.register_buffer("beta", beta, persistent=False)
            self.register_buffer("log_temperature", log_temperature, persistent=False)
        # f(epoch) of rho's schedule; persistent, so a loaded checkpoint filters as the trained model last did
        self.register_buffer("threshold_scale", torch.tensor(1.0))
        self.register_buffer("kept_units", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("seen_units", torch.zeros((), dtype=torch.float64), persistent=False)
        self._grids: dict[tuple[int, int, str], PatchGrid] = {}

    def extra_repr(self) -> str:
        c = self.config
        return (f"n={c.coalition_size}, stride={c.patch_stride}, neighbourhood={c.neighbourhood}, top_p={c.top_p}, "
                f"filter={c.filter!r}, learnable={c.learnable}")

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    # ------------------------------------------------------------------------------------------ schedule

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Advances rho's schedule to ``epoch`` (0-based, of ``epochs``) and resets the pass-fraction counters."""
        c = self.config
        # The ramp ends by the last epoch even when training is shorter than the warm-up, so a network always
        # finishes training under the filter it is evaluated with (rho = q).
        ramp = min(c.warmup_epochs, epochs - 1)
        scale = 1.0 if c.schedule == "constant" or ramp <= 0 else min(1.0, epoch / ramp)
        self.threshold_scale.fill_(scale)
        self.kept_units.zero_()
        self.seen_units.zero_()

    def pass_fraction(self) -> float | None:
        """Fraction of input units passed by the training forward passes since the epoch started (None: none)."""
        seen = float(self.seen_units)
        return float(self.kept_units) / seen if seen else None

    # ------------------------------------------------------------------------------------------ geometry

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raises ValueError when maps of shape (C, H, W) cannot hold one coalition."""
        if len(shape) != 3:
            raise ValueError(f"a NEUROGAME layer takes (C, H, W) activation maps, got shape {tuple(shape)}")
        self.grid(shape[1], shape[2])

    def grid(self, height: int, width: int, device: torch.device | str = "cpu") -> PatchGrid:
        """The patch layout of an H x W map (cached per size and device)."""
        key = (height, width, str(device))
        if key not in self._grids:
            self._grids[key] = patch_grid(height, width, coalition_size=self.config.coalition_size,
                                          stride=self.config.patch_stride, device=device)
        return self._grids[key]

    def spins(self, activation: torch.Tensor) -> torch.Tensor:
        """s = tanh(a / spin_scale), detached: the game never sends gradient into the activations."""
        return torch.tanh(activation.detach() / self.config.spin_scale)

    # ------------------------------------------------------------------------------------------ the games

    def _play(self, activation: torch.Tensor, *, training: bool) -> _Play:
        if activation.dim() != 4:
            raise ValueError(f"a NEUROGAME layer takes (B, C, H, W) maps, got shape {tuple(activation.shape)}")
        c = self.config
        grid = self.grid(activation.shape[2], activation.shape[3], activation.device)
        n_patches, m = grid.index.shape
        spins = self.spins(activation).float()
        patches = self.to_patches(spins)  # (B, C, M, m)
        n = c.coalition_size
        field, coupling = self._patch_sums(spins)  # sum_i s_i and sum_<i,j> s_i s_j of every patch, (B, C, M)
        temperature = self.temperature
        logits = (self.alpha * field + self.beta * coupling) / temperature  # -E / T (eq. 4), (B, C, M)
        log_partition = torch.logsumexp(logits, dim=-1)  # (B, C), log Z over the map's patches (eq. 2)
        k = max(1, math.ceil(c.top_p * n_patches - 1e-9))
        winners = logits.detach().topk(k, dim=-1).indices  # (B, C, K)
        won = patches.gather(2, winners[..., None].expand(-1, -1, -1, m))  # (B, C, K, m)
        pairs = pair_products(won.unflatten(-1, (n, n)), c.neighbourhood)  # (B, C, K, |edges|)
        shapley = self._patch_shapley(won, pairs, log_partition)  # (B, C, K, m)
        shapley = torch.where(won == 0, torch.zeros((), device=shapley.device), shapley)  # silent: null players
        threshold = self.threshold_scale * _quantile(shapley.detach().flatten(2), c.quantile)  # rho, (B, C)
        strong = (shapley.detach() > threshold[..., None, None]).float()
        height, width = activation.shape[2:]
        mask = self.from_patches(self._place(strong, winners, n_patches), height, width,
                                 fill=float(c.uncovered == "keep"))
        gate = mask
        if c.filter == "random":
            mask = gate = self._random_like(mask, training=training)
        elif c.learnable and torch.is_grad_enabled():
            scale = shapley.detach().abs().flatten(2).mean(-1).clamp_min(1e-30)[..., None, None]
            soft = torch.sigmoid((shapley - threshold[..., None, None]) / scale)
            soft_map = self.from_patches(self._place(soft, winners, n_patches), height, width)
            gate = mask + (soft_map - soft_map.detach())  # value: exactly the hard mask; gradient: the surrogate's
        return _Play(grid, logits, log_partition, winners, shapley, threshold, mask, gate)

    def _patch_sums(self, spins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sum_i s_i and sum_<i,j> s_i s_j over every patch, as sum-pools of the map and of its neighbour products.

        A pair lies in a patch exactly when its first unit's position lies in the pool window of that pair kind
        (n x (n - 1) for horizontal pairs, (n - 1) x n for vertical, (n - 1) x (n - 1) for diagonal ones).
        """
        n, stride = self.config.coalition_size, self.config.patch_stride

        def pooled_sum(maps: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
            return F.avg_pool2d(maps, (rows, cols), stride=stride, divisor_override=1).flatten(2)

        field = pooled_sum(spins, n, n)
        coupling = pooled_sum(spins[..., :, :-1] * spins[..., :, 1:], n, n - 1)
        coupling = coupling + pooled_sum(spins[..., :-1, :] * spins[..., 1:, :], n - 1, n)
        if self.config.neighbourhood == 8:
            coupling = coupling + pooled_sum(spins[..., :-1, :-1] * spins[..., 1:, 1:], n - 1, n - 1)
            coupling = coupling + pooled_sum(spins[..., :-1, 1:] * spins[..., 1:, :-1], n - 1, n - 1)
        return field, coupling

    @staticmethod
    def _place(values: torch.Tensor, winners: torch.Tensor, n_patches: int, fill: float = 0.0) -> torch.Tensor:
        """(B, C, K, m) values of the winning patches -> (B, C, M, m), ``fill`` for the losing patches."""
        placed = values.new_full((*values.shape[:2], n_patches, values.shape[-1]), fill)
        return placed.scatter(2, winners[..., None].expand_as(values), values)

    def to_patches(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) maps -> (B, C, M, n^2) patches (players row-major); a reshape when the stride is n."""
        batch, channels, height, width = maps.shape
        grid = self.grid(height, width, maps.device)
        n = self.config.coalition_size
        if self.config.patch_stride == n:
            covered = maps[..., :grid.rows * n, :grid.cols * n].reshape(batch, channels, grid.rows, n, grid.cols, n)
            return covered.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, grid.rows * grid.cols, n * n)
        return maps.flatten(2)[..., grid.index]

    def from_patches(self, patches: torch.Tensor, height: int, width: int, *, fill: float = 0.0) -> torch.Tensor:
        """(B, C, M, n^2) per-patch values -> (B, C, H, W) maps: ``fill`` where no patch covers a unit, the largest
        value where patches overlap."""
        batch, channels = patches.shape[:2]
        grid = self.grid(height, width, patches.device)
        n = self.config.coalition_size
        if self.config.patch_stride == n:
            maps = patches.reshape(batch, channels, grid.rows, grid.cols, n, n).permute(0, 1, 2, 4, 3, 5)
            maps = maps.reshape(batch, channels, grid.rows * n, grid.cols * n)
            return F.pad(maps, (0, width - grid.cols * n, 0, height - grid.rows * n), value=fill)
        out = patches.new_full((batch, channels, height * width), -math.inf)
        out = out.scatter_reduce(2, grid.index.reshape(-1).expand(batch, channels, -1), patches.flatten(2),
                                 reduce="amax")
        return torch.where(grid.uncovered, torch.full((), fill, device=out.device), out).view(
            batch, channels, height, width)

    def _patch_shapley(self, spins: torch.Tensor, pairs: torch.Tensor, log_partition: torch.Tensor) -> torch.Tensor:
        """Exact Shapley values of the winning patches: phi = v @ W over all 2^m sub-coalitions of each patch.

        log v(S) = -E(s_S) / T - log Z = (alpha / T) sum_(i in S) s_i + (beta / T) sum_(<i,j> in S) s_i s_j - log Z
        is linear in the features (s_i, s_i s_j, -log Z) of a patch, with 0/1 coefficients for each S: one GEMM gives
        the values of all sub-coalitions of all patches, a second their Shapley values. Chunked over patches to bound
        memory (a loop over chunks of rows, never over patches or units).

        Args:
            spins: (B, C, K, m) spins of the K winning patches of each map.
            pairs: (B, C, K, |edges|) their pair products.
            log_partition: (B, C) log Z of each map.
        """
        *lead, m = spins.shape
        temperature = self.temperature
        projection = torch.cat([(self.alpha / temperature) * self.members,
                                (self.beta / temperature) * self.pair_members,
                                torch.ones_like(self.members[:1])])  # (m + |edges| + 1, 2^m)
        features = torch.cat([spins, pairs, -log_partition[..., None, None].expand(*lead, 1)], dim=-1)
        features = features.reshape(-1, features.shape[-1])
        chunk = max(1, MAX_SUBSET_CELLS // projection.shape[1])
        parts = [(features[s:s + chunk] @ projection).exp_() @ self.shapley_weights
                 for s in range(0, len(features), chunk)]
        return torch.cat(parts).reshape(*lead, m)

    def _random_like(self, mask: torch.Tensor, *, training: bool) -> torch.Tensor:
        """A uniformly random mask with as many ones as ``mask`` in every map."""
        generator = None
        if not training:
            generator = torch.Generator(device=mask.device).manual_seed(self.config.seed)
        keys = torch.rand(mask.shape, generator=generator, device=mask.device)
        ranks = keys.argsort(dim=-1).argsort(dim=-1)
        return (ranks < mask.sum(-1, keepdim=True)).float()

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.learnable):
            play = self._play(activation, training=self.training)
        if self.training:
            self.kept_units += play.mask.sum().double()
            self.seen_units += play.mask.numel()
        return activation * play.gate.to(activation.dtype)

    # ------------------------------------------------------------------------------------------ glass box

    @torch.no_grad()
    def explain(self, activation: torch.Tensor) -> NeuroGameMaps:
        """Every map of the layer's games for a batch of its inputs (eval semantics; counts nothing)."""
        play = self._play(activation, training=False)
        batch, channels, height, width = activation.shape
        grid = play.grid
        n_patches = grid.index.shape[0]
        shape = (batch, channels, grid.rows, grid.cols)
        winning = torch.zeros(batch, channels, n_patches, dtype=torch.bool, device=activation.device)
        winning.scatter_(2, play.winners, True)
        shapley = self.from_patches(self._place(play.shapley, play.winners, n_patches, -math.inf), height, width)
        return NeuroGameMaps(
            activation=activation.detach().clone(),
            energy=(-play.logits * self.temperature).reshape(shape),
            payoff=(play.logits - play.log_partition[..., None]).exp().reshape(shape),
            winning=winning.reshape(shape),
            shapley=torch.where(torch.isinf(shapley), torch.zeros((), device=shapley.device), shapley),
            coalition_shapley=self._place(play.shapley, play.winners, n_patches, math.nan),
            threshold=play.threshold,
            mask=play.mask,
        )

    @torch.no_grad()
    def patch_game(self, activation: torch.Tensor, *, sample: int, channel: int, patch: int) -> PatchGame:
        """The game inside patch ``patch`` of map (sample, channel) of a batch, as a
        :class:`~methods.games.base.Game`."""
        spins = self.spins(activation[sample, channel]).double().cpu().numpy()
        return PatchGame(spins, patch, config=self.config, alpha=float(self.alpha), beta=float(self.beta),
                         temperature=float(self.temperature))


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile along the last axis, interpolated as torch.quantile does (which refuses over 2^24 values).

    Only the two order statistics around the quantile are needed: a partial top-k is ~2.5x faster than a sort.
    """
    position = q * (values.shape[-1] - 1)
    low = math.floor(position)
    high = min(low + 1, values.shape[-1] - 1)
    smallest = values.topk(high + 1, dim=-1, largest=False).values  # ascending
    return smallest[..., low] + (position - low) * (smallest[..., high] - smallest[..., low])


def game_layers(model: nn.Module) -> Iterator[tuple[str, NeuroGameLayer]]:
    """The NEUROGAME layers of a model with their stage names, in forward order."""
    for name, module in model.named_modules():
        if isinstance(module, NeuroGameLayer):
            yield name, module


def explain_model(model: nn.Sequential, x: torch.Tensor, *, stage: str) -> NeuroGameMaps:
    """The glass-box maps of the NEUROGAME stage ``stage`` of a flat model for inputs ``x`` (eval, no gradient)."""
    stages = dict(model.named_children())
    if not isinstance(stages.get(stage), NeuroGameLayer):
        layers = [name for name, _ in game_layers(model)]
        raise ValueError(f"{stage!r} is not a NEUROGAME stage of the model; NEUROGAME stages: {layers}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a = x
            for name, module in model.named_children():
                if name == stage:
                    return module.explain(a)
                a = module(a)
    finally:
        model.train(was_training)
    raise AssertionError("unreachable")
