"""The seeds' course conventions, proven equal (or proven different) to torch's and handnn's.

Each course formula is copied from the seed reports in ``../seeds/`` into this file and run side by side with
handnn and with live torch over many steps:

- seed 003 (deeplearning.ai): momentum ``v = βv + (1-β)g, θ -= αv``  ≡ ``SGD(lr=α(1-β), momentum=β)``;
  ``dampening=β`` is NOT the same (torch's first step is undamped);
- CS231n momentum ``v = μv - lr·g, θ += v``  ≡ ``SGD(lr, momentum=μ)`` while lr is constant;
- seed 001 (CS231n BatchNorm): momentum 0.9 ≡ torch's 0.1 for the running mean; the running variance it stores is
  the biased one (n/(n-1) apart); its eval formula (eps outside the sqrt) differs from torch's;
- seed 004: weight decay ``θ ← (1-λ)θ - lr·g``  ≡ ``SGD(weight_decay=λ/lr)`` ≡ AdamW's decay with ``λ/lr``;
- an L2 penalty ``(λ/2)‖W‖²`` in the loss ≡ ``weight_decay=λ`` on those weights (param groups: no decay on biases),
  seed 000's ``λ/(2m)·ΣW²`` ≡ ``weight_decay=λ/m``; seed 001's elastic net ``β·L2 + L1``;
- seed 000's dropout ``keep_prob`` is ``1 - p``;
- the known-wrong Adam variants (no bias correction, eps inside the sqrt) differ from torch by more than the
  tolerance table allows, so a handnn Adam with either bug fails the trajectory tests.

Everything is float64 under the tolerance table (``reference.tolerances``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pytest
import torch

from handnn import nn, optim
from handnn.functional.dropout import draw_dropout_mask
from handnn.regularization import decay_parameters, elastic_net_penalty, l2_penalty, penalty, penalty_backward
from reference import assert_close, compare, to_tensor, to_torch
from reference.check import load_function
from reference.optim import to_torch_optimizer

STEPS = 200
N, D_IN, D_OUT = 11, 3, 4  # least-squares problem: X (N, D_IN), W (D_OUT, D_IN), Y (N, D_OUT)


# ---- a problem whose gradient depends on the parameters (so the trajectories feed back) -----------------------
class LeastSquares:
    """``L(W) = ½ mean_n ‖W x_n - y_n‖²``; ``grad(W) = (X Wᵀ - Y)ᵀ X / N``."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.x = rng.normal(0.5, 1.5, (N, D_IN))
        self.y = rng.standard_normal((N, D_OUT))
        self.w0 = rng.standard_normal((D_OUT, D_IN))

    def grad(self, w: np.ndarray) -> np.ndarray:
        return (self.x @ w.T - self.y).T @ self.x / N


def _handnn_run(problem: LeastSquares, make: Callable, steps: int = STEPS,
                before_step: Optional[Callable] = None) -> List[np.ndarray]:
    """θ after every step of a handnn optimizer ``make([param])``."""
    p = nn.Parameter(problem.w0.copy())
    opt = make([p])
    out = []
    for t in range(steps):
        if before_step:
            before_step(t, opt)
        p.grad = problem.grad(p.data)
        opt.step()
        out.append(p.data.copy())
    return out


def _torch_run(problem: LeastSquares, make: Callable, steps: int = STEPS, before_step: Optional[Callable] = None,
               decay_first: float = 0.0) -> List[np.ndarray]:
    """θ after every step of a torch optimizer ``make([param])``; ``decay_first`` applies ``θ *= 1 - λ`` after the
    gradient is taken and before the step (seed 004's decay in front of a torch update)."""
    p = torch.nn.Parameter(to_tensor(problem.w0))
    opt = make([p])
    out = []
    for t in range(steps):
        if before_step:
            before_step(t, opt)
        p.grad = to_tensor(problem.grad(p.detach().numpy()))
        if decay_first:
            with torch.no_grad():
                p.mul_(1 - decay_first)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


def _assert_runs_close(actual: List[np.ndarray], expected: List[np.ndarray], name: str) -> None:
    for t, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, f"{name} after step {t + 1}")


def _differs(actual: np.ndarray, expected: np.ndarray) -> bool:
    return not compare("variant", actual, expected).passed


# ---- momentum -----------------------------------------------------------------------------------------------
def _course_momentum(problem: LeastSquares, alpha: float, beta: float):
    """Seed 003's momentum: θ and v after every step."""
    theta, v = problem.w0.copy(), np.zeros_like(problem.w0)
    thetas, velocities = [], []
    for _ in range(STEPS):
        g = problem.grad(theta)
        v = beta * v + (1 - beta) * g  # seed 003, verbatim but for the dict keys
        theta = theta - alpha * v
        thetas.append(theta.copy())
        velocities.append(v.copy())
    return thetas, velocities


@pytest.mark.parametrize("alpha,beta", [(0.1, 0.9), (0.05, 0.5), (0.2, 0.99)])
def test_deeplearning_ai_momentum_is_sgd_with_lr_times_one_minus_beta(rng, alpha, beta):
    """Seed 003: ``v = βv + (1-β)g; θ -= αv`` (v starts at 0) ≡ ``SGD(lr=α(1-β), momentum=β)``, every step,
    and the course velocity is ``(1-β)·momentum_buffer``."""
    problem = LeastSquares(rng)
    course, velocities = _course_momentum(problem, alpha, beta)

    p = nn.Parameter(problem.w0.copy())
    opt = optim.SGD([p], lr=alpha * (1 - beta), momentum=beta)
    for t in range(STEPS):
        p.grad = problem.grad(p.data)
        opt.step()
        assert_close(p.data, course[t], f"handnn θ after step {t + 1}")
        assert_close((1 - beta) * opt.state[p]["momentum_buffer"], velocities[t], f"velocity after step {t + 1}")
    _assert_runs_close(_torch_run(problem, lambda ps: torch.optim.SGD(ps, lr=alpha * (1 - beta), momentum=beta)),
                       course, "torch θ")


def test_dampening_beta_is_not_the_course_momentum(rng):
    """``SGD(lr=α, momentum=β, dampening=β)`` looks like the course's EMA, but torch does not dampen the first step
    (its buffer starts at g, the course's v at (1-β)g): θ differs by exactly αβg after step 1, and stays different."""
    alpha, beta = 0.1, 0.9
    problem = LeastSquares(rng)
    g0 = problem.grad(problem.w0)
    course, _ = _course_momentum(problem, alpha, beta)
    course_first = course[0]
    make = lambda ps: optim.SGD(ps, lr=alpha, momentum=beta, dampening=beta)  # noqa: E731
    damped = _handnn_run(problem, make)
    torch_damped = _torch_run(problem, lambda ps: torch.optim.SGD(ps, lr=alpha, momentum=beta, dampening=beta))
    _assert_runs_close(damped, torch_damped, "handnn against torch, dampening=β")
    assert_close(damped[0], problem.w0 - alpha * g0, "first step: undamped")
    assert_close(course_first - damped[0], alpha * beta * g0, "the first-step difference")
    assert _differs(damped[0], course_first)
    assert _differs(damped[-1], course[-1]), "the first step's difference should persist"


@pytest.mark.parametrize("lr,mu", [(0.1, 0.9), (0.03, 0.5)])
def test_cs231n_momentum_is_sgd_momentum_at_constant_lr(rng, lr, mu):
    """CS231n ``v = μv - lr·g; θ += v`` ≡ ``SGD(lr, momentum=μ)`` (velocity = -lr·buffer) while lr is constant."""
    problem = LeastSquares(rng)
    theta, v, course = problem.w0.copy(), np.zeros_like(problem.w0), []
    for _ in range(STEPS):
        v = mu * v - lr * problem.grad(theta)
        theta = theta + v
        course.append(theta.copy())
    _assert_runs_close(_handnn_run(problem, lambda ps: optim.SGD(ps, lr=lr, momentum=mu)), course, "handnn θ")
    _assert_runs_close(_torch_run(problem, lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu)), course, "torch θ")


def test_cs231n_momentum_differs_once_lr_changes(rng):
    """When lr changes, CS231n's velocity keeps the old lr inside it; torch's buffer does not: equal before the
    change, different right after it."""
    lr, mu, change, new_lr = 0.1, 0.9, 50, 0.02
    problem = LeastSquares(rng)
    theta, v, course = problem.w0.copy(), np.zeros_like(problem.w0), []
    for t in range(STEPS):
        step_lr = lr if t < change else new_lr
        v = mu * v - step_lr * problem.grad(theta)
        theta = theta + v
        course.append(theta.copy())

    def set_lr(t, opt):
        opt.param_groups[0]["lr"] = lr if t < change else new_lr

    ours = _handnn_run(problem, lambda ps: optim.SGD(ps, lr=lr, momentum=mu), before_step=set_lr)
    theirs = _torch_run(problem, lambda ps: torch.optim.SGD(ps, lr=lr, momentum=mu), before_step=set_lr)
    _assert_runs_close(ours, theirs, "handnn against torch")
    _assert_runs_close(ours[:change], course[:change], "before the lr change")
    assert _differs(ours[change], course[change])


# ---- BatchNorm (seed 001) ---------------------------------------------------------------------------------------
#: Seed 001's ``batchnorm_forward`` (CS231n), the transcription the checker's worked example runs: momentum 0.9 keeps
#: 90% of the running value, the running variance is the biased batch variance, and the test-mode formula puts eps
#: outside the sqrt.
seed001_batchnorm_forward = load_function(
    f"{Path(__file__).resolve().parents[2] / 'examples' / 'seeds' / 'seed001_regularization.py'}:batchnorm_forward")[0]


def _bn_batch(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Per-channel means and scales; channel 0 has a variance (1e-4) close to eps, where eps's place matters."""
    scale = rng.uniform(0.5, 3.0, c)
    scale[0] = 1e-2
    return rng.normal(0.0, 2.0, c) + scale * rng.standard_normal((n, c))


@pytest.mark.parametrize("n", [4, 9])
def test_cs231n_batchnorm_momentum_and_biased_running_var(rng, n):
    """Seed 001 momentum 0.9 ≡ torch momentum 0.1 (same outputs, same running mean), but its running variance is
    the biased one: started from the same (zero) running statistics, torch's is exactly n/(n-1) times it."""
    c = 5
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    ours = nn.BatchNorm1d(c, momentum=0.1)
    ours.weight.data[...], ours.bias.data[...] = gamma, beta
    ours.running_var[...] = 0.0  # the seed's bn_param defaults: zeros for both
    twin = to_torch(ours)
    bn_param = {"mode": "train", "momentum": 0.9}
    for step in range(6):
        x = _bn_batch(rng, n, c)
        course_out, _ = seed001_batchnorm_forward(x, gamma, beta, bn_param)
        assert_close(ours(x), course_out, f"train output, step {step}")
        assert_close(twin(to_tensor(x)).detach().numpy(), course_out, f"torch train output, step {step}")
        assert_close(ours.running_mean, bn_param["running_mean"], f"running_mean, step {step}")
        assert_close(twin.running_mean.numpy(), bn_param["running_mean"], f"torch running_mean, step {step}")
        assert_close(ours.running_var, bn_param["running_var"] * n / (n - 1), f"running_var, step {step}")
        assert_close(twin.running_var.numpy(), bn_param["running_var"] * n / (n - 1), f"torch running_var {step}")
        assert _differs(ours.running_var, bn_param["running_var"]), "the biased variance must be detected"


def test_cs231n_batchnorm_eval_eps_outside_sqrt_differs(rng):
    """Seed 001's test mode ``(x - μ) / (sqrt(σ²) + eps)`` is not torch's ``(x - μ) / sqrt(σ² + eps)``: same
    running statistics, outputs differ beyond the tolerance (most on the channel whose variance is near eps)."""
    c = 5
    ours = nn.BatchNorm1d(c)
    ours.weight.data[...], ours.bias.data[...] = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    for _ in range(5):
        ours(_bn_batch(rng, 9, c))
    ours.eval()
    twin = to_torch(ours)
    x = _bn_batch(rng, 9, c)
    bn_param = {"mode": "test", "running_mean": ours.running_mean.copy(), "running_var": ours.running_var.copy()}
    course_out, _ = seed001_batchnorm_forward(x, ours.weight.data, ours.bias.data, bn_param)
    torch_out = twin(to_tensor(x)).detach().numpy()
    assert_close(ours(x), torch_out, "handnn eval")
    expected = (x - ours.running_mean) / np.sqrt(ours.running_var + ours.eps) * ours.weight.data + ours.bias.data
    assert_close(torch_out, expected, "torch eval = eps inside the sqrt")
    assert _differs(course_out, torch_out)


# ---- weight decay (seed 004) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr,lam", [(0.2, 1e-3), (0.05, 5e-3)])
def test_seed004_weight_decay_is_sgd_weight_decay_over_lr(rng, lr, lam):
    """Seed 004's ``x = (1 - weight_decay) * x - init_lr * gradient_x`` ≡ ``SGD(lr, weight_decay=λ/lr)``."""
    problem = LeastSquares(rng)
    x, course = problem.w0.copy(), []
    for _ in range(STEPS):
        gradient_x = problem.grad(x)
        x = (1 - lam) * x - lr * gradient_x  # seed 004's BatchGD.gradient_descent
        course.append(x.copy())
    _assert_runs_close(_handnn_run(problem, lambda ps: optim.SGD(ps, lr=lr, weight_decay=lam / lr)), course, "handnn")
    _assert_runs_close(_torch_run(problem, lambda ps: torch.optim.SGD(ps, lr=lr, weight_decay=lam / lr)), course,
                       "torch")


def test_seed004_weight_decay_is_adamw_decay_not_adam_weight_decay(rng):
    """Seed 004's decay ``θ ← (1-λ)θ`` in front of an Adam update ≡ ``AdamW(lr, weight_decay=λ/lr)``;
    ``Adam(weight_decay=λ/lr)`` (an L2 term inside the moments) is a different trajectory."""
    lr, lam = 1e-2, 1e-3
    problem = LeastSquares(rng)
    course = _torch_run(problem, lambda ps: torch.optim.Adam(ps, lr=lr), decay_first=lam)
    _assert_runs_close(_handnn_run(problem, lambda ps: optim.AdamW(ps, lr=lr, weight_decay=lam / lr)), course,
                       "handnn AdamW")
    _assert_runs_close(_torch_run(problem, lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=lam / lr)), course,
                       "torch AdamW")
    coupled = _handnn_run(problem, lambda ps: optim.Adam(ps, lr=lr, weight_decay=lam / lr))
    assert _differs(coupled[-1], course[-1])


# ---- L2 penalty in the loss = coupled weight decay -----------------------------------------------------------
def _mlp(rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 7, rng=rng), nn.Tanh(), nn.Linear(7, 2, rng=rng))


OPTIMIZERS = {
    "SGD-momentum": (lambda params, **kw: optim.SGD(params, lr=0.1, momentum=0.9, **kw)),
    "Adam": (lambda params, **kw: optim.Adam(params, lr=1e-2, **kw)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_l2_penalty_in_loss_is_weight_decay_on_the_weights(rng, name):
    """``loss + (λ/2)ΣW²`` over the Linear weights (``penalty_backward(l2=λ)``) ≡ ``weight_decay=λ`` in a param
    group holding only those weights, 100 steps, and both equal torch's autograd of the penalised loss. Decay on
    every parameter (biases too) is a different trajectory, so the groups matter."""
    lam, make = 0.05, OPTIMIZERS[name]
    penalised, decayed, decayed_all = _mlp(rng), _mlp(rng), _mlp(rng)
    decayed.load_state_dict(penalised.state_dict())
    decayed_all.load_state_dict(penalised.state_dict())
    twin = to_torch(penalised)
    weights = decay_parameters(penalised)
    assert [w.shape for w in weights] == [(7, 3), (2, 7)]
    decay_ids = {id(w) for w in decay_parameters(decayed)}
    runs = [(penalised, make(penalised.parameters()), lam),
            (decayed, make([{"params": decay_parameters(decayed), "weight_decay": lam},
                            {"params": [p for p in decayed.parameters() if id(p) not in decay_ids]}]), 0.0),
            (decayed_all, make(decayed_all.parameters(), weight_decay=lam), 0.0)]
    twin_opt = to_torch_optimizer(runs[0][1], penalised, twin)
    loss_fn, twin_loss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    x_all, y_all = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    for step in range(100):
        idx = rng.choice(40, 8, replace=False)
        x, y = x_all[idx], y_all[idx]
        for model, opt, l2 in runs:
            opt.zero_grad()
            total = loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            if l2:
                total += penalty(decay_parameters(model), l2=l2)
                penalty_backward(decay_parameters(model), l2=l2)
                penalised_total = total
            opt.step()
        twin_opt.zero_grad()
        twin_total = (twin_loss_fn(twin(to_tensor(x)), to_tensor(y))
                      + lam / 2 * ((twin[0].weight ** 2).sum() + (twin[2].weight ** 2).sum()))
        twin_total.backward()
        twin_opt.step()
        assert_close(np.array(penalised_total), np.array(twin_total.item()), f"penalised loss, step {step}")
        for (key, a), b, t in zip(penalised.state_dict().items(), decayed.state_dict().values(),
                                  twin.state_dict().values()):
            assert_close(b, a, f"{key}: weight_decay vs penalty, step {step}")
            assert_close(a, t.numpy(), f"{key}: handnn vs torch, step {step}")
    assert _differs(decayed_all[2].bias.data, penalised[2].bias.data), "decaying the biases too must show"


# ---- seed 000: λ/(2m) ---------------------------------------------------------------------------------------------
def test_seed000_l2_cost_over_m_is_weight_decay_lambda_over_m(rng):
    """Seed 000's cost ``(ΣW1² + ΣW2² + ΣW3²)/m·(λ/2)`` and gradient ``dW += (λ/m)W`` are ``l2=λ/m`` here, and
    training with them ≡ ``SGD(weight_decay=λ/m)`` on the weights (torch, live)."""
    lambd, m, lr = 0.7, 16, 0.3
    model = nn.Sequential(nn.Linear(2, 5, rng=rng), nn.ReLU(), nn.Linear(5, 3, rng=rng), nn.ReLU(),
                          nn.Linear(3, 1, rng=rng))  # seed 000's 3-layer net (its W is (out, in), as here)
    W1, W2, W3 = (model[i].weight.data for i in (0, 2, 4))
    L2_regularization_cost = (np.sum(np.square(W1)) + np.sum(np.square(W2)) + np.sum(np.square(W3))) / m * (lambd / 2)
    assert_close(np.array(l2_penalty(decay_parameters(model), lambd / m)), np.array(L2_regularization_cost), "cost")
    for w in decay_parameters(model):
        w.grad = rng.standard_normal(w.shape)
    expected = [w.grad + (lambd / m) * w.data for w in decay_parameters(model)]  # dW = ... + (lambd/m)*W
    penalty_backward(decay_parameters(model), l2=lambd / m)
    for w, e in zip(decay_parameters(model), expected):
        assert_close(w.grad, e, "dW")

    # training: the seed's penalised gradient with plain GD, against torch SGD(weight_decay=λ/m) on the weights
    twin = to_torch(model)
    twin_opt = torch.optim.SGD([{"params": [twin[i].weight for i in (0, 2, 4)], "weight_decay": lambd / m},
                                {"params": [twin[i].bias for i in (0, 2, 4)]}], lr=lr)
    opt = optim.SGD(model.parameters(), lr=lr)
    loss_fn, twin_loss_fn = nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    x, y = rng.standard_normal((m, 2)), (rng.random((m, 1)) < 0.5).astype(np.float64)
    for step in range(50):
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        penalty_backward(decay_parameters(model), l2=lambd / m)
        opt.step()
        twin_opt.zero_grad()
        twin_loss_fn(twin(to_tensor(x)), to_tensor(y)).backward()
        twin_opt.step()
        for (key, a), t in zip(model.state_dict().items(), twin.state_dict().values()):
            assert_close(a, t.numpy(), f"{key}, step {step}")


# ---- seed 001: elastic net --------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam,beta", [(0.1, 0.5), (0.03, 2.0)])
def test_elastic_net_value_and_gradient(rng, lam, beta):
    """Seed 001's ``β·L2 + L1`` (times λ, with L2 = ½ΣW²): the value and the gradient added into ``.grad``
    equal torch's autograd of ``λ(β·½ΣW² + Σ|W|)``; at W = 0 the L1 subgradient is 0, as torch's."""
    params = [nn.Parameter(rng.standard_normal((4, 3))), nn.Parameter(rng.standard_normal((2, 4)))]
    params[0].data[1, 2] = 0.0
    upstream = [rng.standard_normal(p.shape) for p in params]
    for p, g in zip(params, upstream):
        p.grad = g.copy()
    tparams = [torch.nn.Parameter(to_tensor(p.data)) for p in params]
    value = lam * sum(beta * 0.5 * (w * w).sum() + w.abs().sum() for w in tparams)
    value.backward()
    assert_close(np.array(elastic_net_penalty(params, lam, beta)), np.array(value.item()), "value")
    assert_close(np.array(penalty(params, l1=lam, l2=lam * beta)), np.array(value.item()), "penalty(l1, l2)")
    penalty_backward(params, l1=lam, l2=lam * beta)
    for p, g, t in zip(params, upstream, tparams):
        assert_close(p.grad, g + t.grad.numpy(), "gradient added into .grad")
    assert params[0].grad[1, 2] == upstream[0][1, 2]  # W = 0: nothing added


# ---- seed 000: dropout keep_prob ------------------------------------------------------------------------------------
def test_seed000_keep_prob_is_one_minus_p(rng):
    """Seed 000's ``D = rand < keep_prob; A = A*D/keep_prob`` is handnn's Dropout with ``p = 1 - keep_prob`` on the
    same mask (and torch's arithmetic on that mask); passing keep_prob as p drops the wrong fraction."""
    keep_prob = 0.8
    A1 = rng.standard_normal((6, 500))
    D1 = rng.random((A1.shape[0], A1.shape[1]))  # seed 000, with the generator instead of np.random
    D1 = D1 < keep_prob
    course = A1 * D1 / keep_prob
    layer = nn.Dropout(1 - keep_prob, rng=rng)
    layer.use_mask(D1)
    out = layer(A1)
    np.testing.assert_array_equal(layer.mask, D1)
    assert_close(out, course, "dropout output")
    assert_close(out, to_torch(layer)(to_tensor(A1)).numpy(), "torch's arithmetic on the same mask")
    wrong = draw_dropout_mask(A1.shape, keep_prob, rng)  # keep_prob passed as p: keeps 1 - keep_prob
    # 3000 draws: the kept fraction's standard deviation is 0.0073, so 0.05 is a 6.8-sigma margin
    assert abs(wrong.mean() - (1 - keep_prob)) < 0.05 and abs(D1.mean() - keep_prob) < 0.05


# ---- the known-wrong Adam variants ----------------------------------------------------------------------------------
def _adam_variant(kind: str) -> Callable:
    """A numpy Adam step: torch's formula, or a seed-style variant."""
    def step(theta, g, state, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
        state["t"] += 1
        t = state["t"]
        state["m"] = b1 * state["m"] + (1 - b1) * g
        state["v"] = b2 * state["v"] + (1 - b2) * g * g
        m, v = state["m"], state["v"]
        if kind == "torch":
            return theta - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
        if kind == "no bias correction":
            return theta - lr * m / (np.sqrt(v) + eps)
        if kind == "eps inside the sqrt":
            return theta - lr * (m / (1 - b1 ** t)) / np.sqrt(v / (1 - b2 ** t) + eps)
        raise ValueError(kind)
    return step


@pytest.mark.parametrize("kind", ["torch", "no bias correction", "eps inside the sqrt"])
def test_adam_variants_are_detected(rng, kind):
    """torch's formula written out matches torch's Adam within the table every step; each wrong variant differs
    by more than the table allows from the first step, and still at the end (lr 1e-2, eps 1e-8: the trajectory
    tests' regime, so a handnn Adam with either bug fails them)."""
    problem = LeastSquares(rng)
    theirs = _torch_run(problem, lambda ps: torch.optim.Adam(ps, lr=1e-2))
    step = _adam_variant(kind)
    theta, state, ours = problem.w0.copy(), {"t": 0, "m": 0.0, "v": 0.0}, []
    for _ in range(STEPS):
        theta = step(theta, problem.grad(theta), state)
        ours.append(theta)
    if kind == "torch":
        _assert_runs_close(ours, theirs, "torch's formula")
    else:
        assert _differs(ours[0], theirs[0]) and _differs(ours[-1], theirs[-1])
