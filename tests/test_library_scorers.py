"""Captum attributions and Torch-Pruning importances as unit scorers, checked against autograd, against each other and
against the hand-written scorers they overlap with."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from datasets.models import MODELS, build_model
from methods.scorers import SCORERS, PruningProblem, build_scorer
from methods.scorers.library import check_modules_used_once, private_copy
from methods.scorers.torch_pruning import importance_by_hand, tp_pruning_group

tp = pytest.importorskip("torch_pruning")
pytest.importorskip("captum")

FAST = {"captum-ig": {"n_steps": 8}, "captum-conductance": {"n_steps": 8}}
LIBRARY_SCORERS = ["captum-gxa", "captum-ig", "captum-conductance", "captum-deeplift", "tp-magnitude", "tp-taylor",
                   "tp-hessian"]


@pytest.fixture()
def mlp(trained):  # the tiny trained MLP of conftest.py
    model, units, x, y, *_ = trained
    return PruningProblem.build(model, units, x[:120], y[:120])


def _lenet5_problem(units):
    """A lenet5-shaped net on 20x20 inputs with random weights: 6 and 16 channels, 16x2x2 = 64 flattened features."""
    torch.manual_seed(0)
    model = build_model("lenet5", input_shape=(1, 20, 20), num_classes=10).eval()
    x = torch.rand(48, 1, 20, 20)
    y = torch.randint(0, 10, (48,))
    return PruningProblem.build(model, units, x, y)


@pytest.fixture(scope="module")
def conv_flat():
    """Units: the 64 flattened conv features (no producer: fc1 consumes them), then 120 and 84 neurons."""
    return _lenet5_problem(("flatten", "relu3", "relu4"))


@pytest.fixture(scope="module")
def conv_channels():
    """Units: 6 and 16 conv channels (the second read by fc1 as 4 columns each), then 120 neurons."""
    return _lenet5_problem(("relu1", "relu2", "relu3"))


def _score(name, problem, **params):
    return build_scorer(name, **{**FAST.get(name, {}), **params})(problem, rng=np.random.default_rng(0))


def _slices(problem):
    return [g.players for g in problem.groups]


# ------------------------------------------------------------------------------------------------- Captum vs autograd


@pytest.mark.parametrize("case", ["mlp", "conv_channels", "conv_flat"])
@pytest.mark.parametrize("name", ["captum-gxa", "taylor"])
def test_gradient_x_activation_by_hand(request, case, name):
    """captum-gxa, by hand: per example a * d(logit_y)/da, averaged over a channel's positions, |.|, mean over
    examples ("signed" drops the |.|). taylor is the same with log p_y = -L (L the example's cross-entropy) in place
    of the logit: Molchanov et al.'s |a dL/da|."""
    problem = request.getfixturevalue(case)
    model = problem.model
    scores = _score(name, problem).values
    signed = _score(name, problem, reduce="signed").values if name == "captum-gxa" else None
    names = [n for n, _ in model.named_children()]
    for group in problem.groups:
        cut = names.index(group.name) + 1
        a = model[:cut](problem.x).detach().requires_grad_()
        out = model[cut:](a)
        out = out if name == "captum-gxa" else F.log_softmax(out, dim=1)
        (grad,) = torch.autograd.grad(out.gather(1, problem.y[:, None]).sum(), a)
        product = (a * grad).detach()
        product = product.mean((2, 3)) if product.dim() == 4 else product
        np.testing.assert_allclose(scores[group.players], product.abs().mean(0).numpy(), rtol=1e-4, atol=1e-9)
        if signed is not None:
            np.testing.assert_allclose(signed[group.players], product.mean(0).numpy(), rtol=1e-4, atol=1e-9)


def test_gradient_x_activation_of_the_logit_is_not_taylor(mlp):
    """d logit_y/da and dL/da = sum_c (p_c - [c = y]) d logit_c/da differ: two scorers, not one."""
    logit, taylor = _score("captum-gxa", mlp).values, _score("taylor", mlp).values
    assert not np.allclose(logit, taylor, rtol=0.05)
    assert spearmanr(logit, taylor).statistic < 0.99


@pytest.mark.parametrize("baseline", [0.0, "mean"])
@pytest.mark.parametrize("name", ["captum-ig", "captum-conductance", "captum-deeplift"])
def test_signed_attributions_sum_to_the_logit_difference(mlp, name, baseline):
    """Completeness: each unit layer's signed attributions add up to f_y(x) - f_y(baseline) up to Captum's own
    convergence delta, which is under 5% of the difference at 50 steps (IG, conductance) and 0 for DeepLift's rescale
    rule on a ReLU net. With the zero baseline one example; with "mean", two examples of one class whose mean is the
    baseline, and the scores average their differences."""
    from captum.attr import LayerConductance, LayerDeepLift, LayerIntegratedGradients

    method = {"captum-ig": LayerIntegratedGradients, "captum-conductance": LayerConductance,
              "captum-deeplift": LayerDeepLift}[name]
    steps = {} if name == "captum-deeplift" else {"n_steps": 50}
    model, stages = mlp.model, dict(mlp.model.named_children())
    for i in range(3):
        rows = [i]
        if baseline == "mean":
            rows.append(int(np.flatnonzero(mlp.y.numpy() == int(mlp.y[i]))[-1]))
        x, y = mlp.x[rows], mlp.y[rows]
        few = PruningProblem(model=model, units=mlp.units, x=x, y=y, game=mlp.game, groups=mlp.groups)
        scores = build_scorer(name, reduce="signed", baseline=baseline)(few, rng=np.random.default_rng(0)).values
        reference = torch.zeros_like(x) if baseline == 0.0 else x.mean(0, keepdim=True).expand_as(x)
        with torch.no_grad():
            difference = float((model(x) - model(reference)).gather(1, y[:, None]).mean())
        assert abs(difference) > 0.1
        for group in mlp.groups:
            _, delta = method(model, stages[group.name]).attribute(x, baselines=reference, target=y,
                                                                   return_convergence_delta=True, **steps)
            gap = scores[group.players].sum() - difference
            assert gap == pytest.approx(float(delta.mean()), abs=1e-5)
            assert abs(gap) <= (1e-5 if name == "captum-deeplift" else 0.05 * abs(difference))


def test_integrated_gradients_agrees_with_captums_convergence_delta(mlp):
    """Our scorer's completeness gap is exactly Captum's own convergence delta, which shrinks with n_steps."""
    from captum.attr import LayerIntegratedGradients

    x, y = mlp.x[:1], mlp.y[:1]
    one = PruningProblem(model=mlp.model, units=mlp.units, x=x, y=y, game=mlp.game, groups=mlp.groups)
    gaps = []
    for steps in (2, 50):
        scores = build_scorer("captum-ig", reduce="signed", n_steps=steps)(one, rng=np.random.default_rng(0)).values
        _, delta = LayerIntegratedGradients(mlp.model, mlp.model[2]).attribute(
            x, baselines=torch.zeros_like(x), target=y, n_steps=steps, return_convergence_delta=True)
        with torch.no_grad():
            difference = float(mlp.model(x)[0, y] - mlp.model(torch.zeros_like(x))[0, y])
        gap = scores[_slices(mlp)[0]].sum() - difference
        assert gap == pytest.approx(float(delta), abs=1e-5)
        gaps.append(abs(gap))
    assert gaps[1] < gaps[0]


# ----------------------------------------------------------------------------------------------------------- masking


def _zeroed(model, problem, dropped):
    """The model with the dropped units' producer rows and biases zeroed: those units are dead."""
    dead = private_copy(model)
    stages = dict(dead.named_children())
    for group in problem.groups:
        rows = torch.from_numpy(np.flatnonzero(dropped[group.players]))
        with torch.no_grad():
            stages[group.producer].weight[rows] = 0
            stages[group.producer].bias[rows] = 0
    return dead


@pytest.mark.parametrize("name", [n for n in LIBRARY_SCORERS if n != "tp-magnitude"] + ["taylor"])
def test_exclude_scores_as_if_the_units_were_removed(mlp, name):
    """Masking composes with the libraries' hooks: scoring with ``exclude`` equals scoring the network in which the
    excluded units are dead."""
    dropped = np.zeros(mlp.n_units, bool)
    dropped[[0, 3, 7, 16, 20]] = True
    scorer = build_scorer(name, **FAST.get(name, {}))
    masked = scorer(mlp, rng=np.random.default_rng(0), exclude=dropped).values
    dead = PruningProblem.build(_zeroed(mlp.model, mlp, dropped), mlp.units, mlp.x, mlp.y)
    removed = scorer(dead, rng=np.random.default_rng(0)).values
    np.testing.assert_allclose(masked[~dropped], removed[~dropped], rtol=1e-4, atol=1e-7)
    assert np.isnan(masked[dropped]).all()
    unmasked = scorer(mlp, rng=np.random.default_rng(0)).values
    assert not np.allclose(masked[~dropped], unmasked[~dropped], rtol=1e-3), "the mask must matter"


def test_magnitude_reads_weights_only(mlp):
    dropped = np.zeros(mlp.n_units, bool)
    dropped[:4] = True
    plain = _score("tp-magnitude", mlp).values
    masked = build_scorer("tp-magnitude")(mlp, rng=np.random.default_rng(0), exclude=dropped).values
    np.testing.assert_array_equal(masked[~dropped], plain[~dropped])


def test_scorers_leave_the_model_as_they_found_it(mlp):
    before = {k: v.clone() for k, v in mlp.model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in mlp.model.parameters()]
    for name in LIBRARY_SCORERS:
        _score(name, mlp)
    assert all(torch.equal(before[k], v) for k, v in mlp.model.state_dict().items())
    for grad, p in zip(grads, mlp.model.parameters(), strict=True):
        assert (grad is None and p.grad is None) or torch.equal(grad, p.grad)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in mlp.model.modules())


# ---------------------------------------------------------------------------------------------------- declared costs


@pytest.mark.parametrize("name", [n for n in SCORERS.names() if n != "tp-hessian"])
def test_declared_passes_are_the_passes_run(mlp, name):
    """n_forward / n_backward are the examples that went through the network's last stage forwards / backwards
    (tp-hessian's vectorised per-example gradients run under vmap, which such a hook cannot count)."""
    counted = {"forward": 0, "backward": 0}

    def count(_module, _inputs, output):
        counted["forward"] += output.shape[0]
        if output.requires_grad:
            output.register_hook(lambda grad: counted.__setitem__("backward", counted["backward"] + grad.shape[0]))

    params = {**FAST.get(name, {}), **({"keep_prob": 0.3, "budget": 50} if name == "gtap" else {})}
    handle = mlp.model[-1].register_forward_hook(count)  # private copies made while scoring inherit the hook
    try:
        scores = build_scorer(name, **params)(mlp, rng=np.random.default_rng(0))
    finally:
        handle.remove()
    assert (scores.n_forward, scores.n_backward) == (counted["forward"], counted["backward"])


def test_declared_passes_follow_the_formulas(mlp, conv_flat):
    n, groups = len(mlp.y), len(mlp.groups)
    assert _score("captum-gxa", mlp).n_forward == n
    ig = _score("captum-ig", mlp, n_steps=8)
    assert (ig.n_forward, ig.n_backward) == (groups * 10 * n, groups * 8 * n)
    conductance = _score("captum-conductance", mlp, n_steps=8)
    assert (conductance.n_forward, conductance.n_backward) == (groups * 9 * n, groups * 9 * n)
    hessian = _score("tp-hessian", conv_flat)
    assert (hessian.n_forward, hessian.n_backward) == (len(conv_flat.y) + 1, len(conv_flat.y))


# ------------------------------------------------------------------------------------------------ Torch-Pruning


def _gradients(problem, kind):
    """A private copy with TP's pruning groups and, for "taylor"/"hessian", the gradients those importances read."""
    from methods.scorers.torch_pruning import _coupled_layers, _loss_gradients, _squared_gradients

    model = private_copy(problem.model)
    stages = dict(model.named_children())
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=problem.x[:1])
    groups = {g.name: tp_pruning_group(graph, stages, g) for g in problem.groups if g.producer is not None}
    keep = np.ones(problem.n_units, bool)
    if kind == "taylor":
        _loss_gradients(model, problem, keep, 64)
    elif kind == "hessian":
        _squared_gradients(model, problem, keep, _coupled_layers(list(groups.values()), problem.groups, stages), 16)
    return model, stages, groups


IMPORTANCES = {"magnitude": lambda r: tp.importance.MagnitudeImportance(p=1, group_reduction=r, normalizer=None),
               "taylor": lambda r: tp.importance.TaylorImportance(group_reduction=r, normalizer=None),
               "hessian": lambda r: tp.importance.HessianImportance(group_reduction=r, normalizer=None)}


@pytest.mark.parametrize("kind", list(IMPORTANCES))
@pytest.mark.parametrize("case", ["mlp", "conv_channels"])
def test_importance_by_hand_is_torch_prunings_on_producer_groups(request, case, kind):
    """The formula used for groups without a producer (flattened features) is Torch-Pruning's: checked on groups
    Torch-Pruning can prune, neurons and conv channels, including channels read by fc1 as 4 columns each."""
    problem = request.getfixturevalue(case)
    model, stages, groups = _gradients(problem, kind)
    for reduction in ("mean", "sum", "first"):
        for group in problem.groups:
            ours = importance_by_hand(group, stages, kind, p=1, group_reduction=reduction)
            theirs = IMPORTANCES[kind](reduction)(groups[group.name])
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-12)
    assert any(g.fan > 1 for g in problem.groups) or case == "mlp"


def test_torch_prunings_max_reduction_is_refused(conv_channels):
    """TP's "max" over fc1's 4 columns per channel keeps the last column written, not the largest or the total."""
    model, stages, groups = _gradients(conv_channels, "magnitude")
    theirs = tp.importance.MagnitudeImportance(p=1, group_reduction="max", normalizer=None)(groups["relu2"])
    columns = stages["fc1"].weight.detach().abs().sum(0).reshape(16, 4)
    producer = stages["conv2"].weight.detach().abs().flatten(1).sum(1)
    np.testing.assert_allclose(theirs.numpy(), torch.maximum(producer, columns[:, -1]).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown group_reduction 'max'"):
        build_scorer("tp-magnitude", group_reduction="max")


def test_flattened_features_score_their_consumer_columns(conv_flat):
    scores = _score("tp-magnitude", conv_flat, p=1).values
    fc1 = conv_flat.model.fc1.weight.detach()
    np.testing.assert_allclose(scores[_slices(conv_flat)[0]], fc1.abs().sum(0).numpy(), rtol=1e-5)
    assert np.isfinite(_score("tp-hessian", conv_flat).values).all()


def test_hessian_is_the_mean_squared_per_example_gradient(conv_flat):
    """h by per-example backward passes, one example at a time, as Torch-Pruning's recipe does."""
    model, stages, _ = _gradients(conv_flat, "hessian")
    reference = private_copy(conv_flat.model)
    total = torch.zeros_like(reference.fc1.weight)
    for x, y in zip(conv_flat.x, conv_flat.y, strict=True):
        reference.zero_grad()
        F.cross_entropy(reference(x[None]), y[None]).backward()
        total += reference.fc1.weight.grad.pow(2)
    np.testing.assert_allclose(stages["fc1"].weight.grad.numpy(), (total / len(conv_flat.y)).numpy(), rtol=1e-4,
                               atol=1e-10)


def test_torch_prunings_accumulate_grad_keeps_only_the_last_example(conv_flat):
    """Why tp-hessian computes h itself: HessianImportance.accumulate_grad (torch-pruning 1.6) looks its dictionary
    up by parameter name but stores by parameter, so every call overwrites. If this starts failing, Torch-Pruning
    fixed it, and tp-hessian could use its recipe."""
    model = private_copy(conv_flat.model)
    importance = tp.importance.HessianImportance()
    for x, y in zip(conv_flat.x[:3], conv_flat.y[:3], strict=True):
        model.zero_grad()
        F.cross_entropy(model(x[None]), y[None]).backward()
        importance.accumulate_grad(model)
    accumulated = importance._accu_grad[model.fc1.weight] / importance._counter[model.fc1.weight]
    np.testing.assert_allclose(accumulated.numpy(), model.fc1.weight.grad.pow(2).numpy())


# ------------------------------------------------------------------------------- library vs hand-written: cross-checks


def _weights_per_unit(problem):
    stages = dict(problem.model.named_children())
    counts = []
    for g in problem.groups:
        count = stages[g.producer].weight[0].numel() if g.producer else 0
        if g.consumer:
            w = stages[g.consumer].weight
            count += w.numel() // w.shape[1] * g.fan
        counts.append(np.full(g.size, count, float))
    return np.concatenate(counts)


@pytest.mark.parametrize("case", ["mlp", "conv_channels"])
@pytest.mark.parametrize(("ours", "kind"), [("wmp", "magnitude"), ("wgmp", "taylor")])
def test_wmp_and_wgmp_are_torch_pruning_sums_over_the_weights_per_unit(request, case, ours, kind):
    """wmp (mean |w|) is Torch-Pruning's L1 MagnitudeImportance with group_reduction="sum", divided by the unit's
    number of weights; wgmp (mean |w dL/dw|) is TaylorImportance the same way. So within a layer they rank units
    identically; across layers the registered tp-* (raw, "mean" over the two coupled layers) weigh a unit by
    its number of weights / 2, and a global ranking differs."""
    problem = request.getfixturevalue(case)
    hand = _score(ours, problem).values
    model, stages, groups = _gradients(problem, kind)
    count = _weights_per_unit(problem)
    for group in problem.groups:
        weights = count[group.players][0]
        make = {"magnitude": tp.importance.MagnitudeImportance, "taylor": tp.importance.TaylorImportance}[kind]
        extra = {"p": 1} if kind == "magnitude" else {}
        theirs = make(group_reduction="sum", normalizer=lambda s, w=weights: s / w, **extra)(groups[group.name])
        np.testing.assert_allclose(theirs.numpy(), hand[group.players], rtol=1e-5, atol=1e-12)
    registered = _score(f"tp-{kind}", problem, **({"p": 1} if kind == "magnitude" else {})).values
    np.testing.assert_allclose(registered, hand * count / 2, rtol=1e-5, atol=1e-12)
    for players in _slices(problem):
        assert spearmanr(registered[players], hand[players]).statistic == pytest.approx(1.0)
    assert spearmanr(registered, hand).statistic < 0.999  # globally they differ


# ------------------------------------------------------------------------------------------------- model hygiene


def test_a_reused_module_is_refused():
    relu = torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), relu, torch.nn.Linear(4, 4), relu)
    with pytest.raises(ValueError, match="used again"):
        check_modules_used_once(model)


@pytest.mark.parametrize("name", MODELS.names())
def test_registered_models_use_each_module_once(name):
    shape = {"ffn": (32,), "text-transformer": (16,), "vit": (1, 28, 28)}.get(name, (3, 64, 64))
    check_modules_used_once(build_model(name, input_shape=shape, num_classes=3))


def test_deeplift_on_in_place_relus_matches_out_of_place(mlp):
    """DeepLift scores an in-place network (torchvision's AlexNet has ReLU(inplace=True)) on a private out-of-place
    copy: the same scores, and the caller's modules stay in-place."""
    in_place = private_copy(mlp.model)
    for module in in_place.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = True
    problem = PruningProblem.build(in_place, mlp.units, mlp.x, mlp.y)
    np.testing.assert_allclose(_score("captum-deeplift", problem).values, _score("captum-deeplift", mlp).values,
                               rtol=1e-6)
    assert in_place[2].inplace
