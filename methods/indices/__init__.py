"""Power indices of a :class:`~methods.games.base.Game`: exact enumeration and Monte-Carlo estimators.

The indices are those of the GTAP paper, Sec. II-A: the Shapley value phi (eq. 1), the Banzhaf index beta
(eq. 2) and the biased Banzhaf index beta_d, the expected marginal contribution m(i, C) = v(C u {i}) - v(C)
when every other player joins C independently with probability d (C ~ R_d). beta_d is ``index="banzhaf"``
with ``keep_prob=d``; the plain Banzhaf index is d = 1/2.

Estimators draw from an explicit ``numpy.random.Generator`` and spend at most ``budget`` coalition
evaluations (rows passed to the game; "k coalition evaluations" in the paper's terms):

- ``exact_shapley``, ``exact_banzhaf``: all 2^n coalitions (n <= 20).
- ``shapley_permutation``: random permutations, every prefix evaluated once (the paper's Shapley estimator).
- ``shapley_stratified``: one shared sample stratified by coalition size (Stratified SVARM).
- ``banzhaf_per_player``: PIE, Algorithm 2: per player i, pairs C u {i} and C \\ {i} with C ~ R_d.
- ``banzhaf_shared``: footnote 5, one shared sample C_1..C_k ~ R_d and, for each player,
  mean(v | i in C) - mean(v | i not in C).
- ``banzhaf_regression``, ``shapley_regression`` (not in the paper): least-squares fits of v(C) on the
  membership indicators, beta_d from R_d samples and the Shapley value from paired Shapley-kernel samples (KernelSHAP).
  Same samples as the shared estimators, but the other players' additive effects are regressed out.

Interpretations, where the paper is silent:

- Budget. ``budget`` counts rows passed to the game. Permutation and stratified sampling spend 2 of it on
  v(empty) and v(N) once; PIE uses k = budget // (2n) samples per player; the shared estimator evaluates
  k = budget coalitions. Budget left over by rounding is not spent. A budget too small for one sample raises
  ``ValueError`` before the game is called.
- Antithetic variates (not in the paper). Banzhaf estimators draw uniforms u and pair C = [u < d] with
  C' = [1 - u < d]: both are R_d, so the estimators stay unbiased for every d; at d = 1/2, C' is the
  complement of C. Permutation sampling pairs each permutation with its reverse. With an odd number of
  samples the last one is unpaired. Antithetic pairs do not always reduce variance (see ``banzhaf_shared``).
- Standard errors treat an antithetic pair as one independent unit (a cluster-robust variance with the
  small-sample factor G / (G - 1) over G units); fewer than two units gives ``inf``. The shared Banzhaf
  estimator's stderr is a delta-method (ratio-estimator) approximation. Exact indices report zeros; the
  stratified estimator reports ``None`` (Stratified SVARM has no variance estimate, and its fallbacks would
  make one misleading).
- Missing data. In the shared Banzhaf estimator, a player that is in every sampled coalition (or in none)
  gets the value 0 and stderr ``inf``: the empty side is taken to have the mean of all samples. In the
  stratified estimator, a size stratum in which no sample contains player i (or every sample does) uses the
  stratum's overall mean for the missing mean.
- Chunking. Every estimator, the exact ones included, passes the game at most ``MAX_ROWS`` coalitions per
  call and builds coalition matrices block by block, so memory stays bounded however large the budget; the
  game batches further inside a call as its memory cap requires. Results do not depend on ``MAX_ROWS``.
"""

from methods.indices.core import INDICES, MAX_BLOCK_CELLS, MAX_EXACT_PLAYERS, MAX_ROWS, IndexEstimate
from methods.indices.dispatch import ESTIMATORS, estimate, estimator_for, is_exact, per_group
from methods.indices.exact import exact_banzhaf, exact_shapley
from methods.indices.regression import banzhaf_regression, shapley_regression
from methods.indices.sampling import (
    STRATIFIED_MIN_PER_SIZE,
    banzhaf_per_player,
    banzhaf_shared,
    shapley_permutation,
    shapley_shared,
    shapley_stratified,
)

__all__ = [
    "ESTIMATORS", "INDICES", "MAX_BLOCK_CELLS", "MAX_EXACT_PLAYERS", "MAX_ROWS", "STRATIFIED_MIN_PER_SIZE",
    "IndexEstimate", "banzhaf_per_player", "banzhaf_regression", "banzhaf_shared", "estimate", "estimator_for",
    "exact_banzhaf", "exact_shapley", "is_exact", "per_group", "shapley_permutation", "shapley_regression",
    "shapley_shared", "shapley_stratified",
]
