"""Numerical gradient checking: central differences against a module's or a loss's hand-written backward.

The check (:func:`gradcheck`) compares, for the input and every trainable ``Parameter``, the analytic
vector-Jacobian product that ``backward`` returns with central differences of the forward:

* a seeded random upstream gradient ``dout`` defines the scalar ``L = sum(out * dout)`` (never ``out.sum()``,
  which makes BatchNorm's input gradient identically zero);
* a tensor with at most ``full_limit`` elements gets the full check, element by element:
  ``dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)``;
* a larger one gets random projections, as HIPS autograd's ``test_util.check_vjp`` does: for ``n_directions``
  random unit directions ``v``, the directional derivative ``(L(x + eps v) - L(x - eps v)) / (2 eps)`` is
  compared with ``<dL/dx, v>``;
* the error of a tensor is the seeds' relative error ``|g - g_hat| / (|g| + |g_hat|)`` (:func:`rel_error`)
  over all its checked values; it passes when that is at most ``tol``, or when every value is within ``atol``
  (a gradient that is zero in exact arithmetic, such as a bias feeding a training-mode BatchNorm, has a relative
  error of about 1 between two rounding noises).

Every evaluation starts from the same state: buffers (BatchNorm's running statistics, ``num_batches_tracked``),
every ``numpy.random.Generator`` a module holds (so each ``Dropout`` draws the same mask every time), a mask
injected with ``Dropout.use_mask`` and each module's cache are rewound before each forward. Afterwards the
module is exactly as it was: parameter values (bit for bit, the same array objects), their ``.grad`` (the same
objects, or None), buffers, generator states, caches and masks. The caller's input is never modified.

float64 is required for a meaningful check (central differences with ``eps = 1e-6`` keep about 10 of float64's
16 digits, but fewer than 2 of float32's 7): a float32 input or parameter gets a ``UserWarning``, as torch's
``gradcheck`` warns, and the check runs in that dtype and will most likely report failure.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .nn.modules.loss import _Loss
from .nn.modules.module import Module
from .nn.parameter import Parameter
from .random import TorchGenerator

__all__ = ["rel_error", "numerical_gradient", "gradcheck", "GradcheckReport", "TensorCheck", "GradcheckError"]

#: seed 003's verdict: "difference > 2e-7: there is a mistake in the backward propagation".
DEFAULT_TOL = 2e-7
#: below this every |analytic - numeric| is rounding noise for losses of order 1 (see the module docstring).
DEFAULT_ATOL = 1e-8


class GradcheckError(RuntimeError):
    """Raised by :meth:`GradcheckReport.raise_on_failure` (torch's ``GradcheckError`` is a RuntimeError too)."""


# ---- the seeds' formulas -----------------------------------------------------------------------------------------
def rel_error(g: np.ndarray, g_hat: np.ndarray) -> float:
    """The seeds' relative error ``||g - g_hat|| / (||g|| + ||g_hat||)`` (Euclidean norms over all elements).

    Parameters
    ----------
    g, g_hat : array_like, the same shape
        Typically the analytic and the numerical gradient.

    Returns
    -------
    float in [0, 1]; 0 when both are zero (0 / 0 is defined as a perfect match), 1 when exactly one is zero
    or when ``g_hat = -g``.
    """
    g = np.asarray(g, dtype=np.float64)
    g_hat = np.asarray(g_hat, dtype=np.float64)
    if g.shape != g_hat.shape:
        raise ValueError(f"rel_error(): expected arrays of the same shape, got {g.shape} and {g_hat.shape}")
    denominator = np.linalg.norm(g) + np.linalg.norm(g_hat)
    if denominator == 0:
        return 0.0
    return float(np.linalg.norm(g - g_hat) / denominator)


def numerical_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function: ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``. It is called with one working copy of ``x``, perturbed one element at a time and
        restored after each pair of calls (so ``f`` must not keep its argument between calls).
    x : ndarray of float, any shape
        The point; never modified.
    eps : float > 0
        Half the step. The denominator is the step actually taken in ``x``'s dtype, ``(x_i + eps) - (x_i - eps)``,
        which removes the rounding of ``x_i +- eps`` from the result.

    Returns
    -------
    ndarray, float64, shape of ``x``
    """
    x = _check_float_array(x, "x")
    _check_eps(eps)
    _warn_if_not_float64("x", x)
    work = np.array(x, copy=True)
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        original = work[idx]
        work[idx] = original + eps
        plus, hi = float(f(work)), float(work[idx])
        work[idx] = original - eps
        minus, lo = float(f(work)), float(work[idx])
        work[idx] = original
        grad[idx] = (plus - minus) / (hi - lo)
    return grad


# ---- the report --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorCheck:
    """The check of one tensor (the input or a parameter).

    Attributes
    ----------
    name : str
        ``'input'`` or the parameter's name in ``named_parameters()`` (``'0.weight'``).
    shape : tuple of int
    mode : 'full' or 'projection'
        Every element checked, or ``checked`` random unit directions.
    checked : int
        Elements (full) or directions (projection) compared.
    rel_error : float
        :func:`rel_error` of the analytic and numerical values (the gradient, or its projections).
    max_abs_error : float
        The largest ``|analytic - numeric|``.
    worst_index : tuple of int, int or None
        Where that largest error is: the element's index (full) or the direction's number (projection);
        None for an empty tensor.
    analytic, numeric : float
        The two values at ``worst_index``.
    passed : bool
        ``rel_error <= tol`` or ``max_abs_error <= atol``.
    margin : float
        ``min(rel_error / tol, max_abs_error / atol)``: how close the tensor is to failing by the criterion it
        meets best (passed iff ``margin <= 1``; NaN errors give inf).
    passed_by : str
        ``'rel_error'``, ``'atol'``, or ``''`` when the tensor failed.
    numeric_norm : float
        ``||numeric||``, the size of what was compared (a check of an all-zero gradient proves little).
    """

    name: str
    shape: Tuple[int, ...]
    mode: str
    checked: int
    rel_error: float
    max_abs_error: float
    worst_index: Union[Tuple[int, ...], int, None]
    analytic: float
    numeric: float
    passed: bool
    margin: float
    passed_by: str
    numeric_norm: float

    def where(self) -> str:
        """The worst element as text: ``'[2, 1]'`` or ``'direction 3'``."""
        if self.worst_index is None:
            return "-"
        if self.mode == "projection":
            return f"direction {self.worst_index}"
        return "[" + ", ".join(str(i) for i in self.worst_index) + "]"

    def __str__(self) -> str:
        verdict = {"rel_error": "ok", "atol": "ok (|err| <= atol)"}.get(self.passed_by, "FAIL")
        return (f"{self.name:<14} {str(self.shape):<14} {self.mode + ' ' + str(self.checked):<15} "
                f"{self.rel_error:9.2e}  {self.max_abs_error:9.2e}  {self.where()}: "
                f"analytic {self.analytic:.8g}, numeric {self.numeric:.8g}  {verdict}")


@dataclass(frozen=True)
class GradcheckReport:
    """What :func:`gradcheck` found, one :class:`TensorCheck` per tensor.

    ``report['0.weight']`` is that tensor's entry; ``str(report)`` is a table that names the worst element.
    """

    entries: Tuple[TensorCheck, ...]
    eps: float
    tol: float
    atol: float
    kinks_nudged: int = 0

    @property
    def passed(self) -> bool:
        return all(entry.passed for entry in self.entries)

    @property
    def failures(self) -> Tuple[TensorCheck, ...]:
        return tuple(entry for entry in self.entries if not entry.passed)

    @property
    def worst(self) -> Optional[TensorCheck]:
        """The entry closest to failing, or furthest past it (largest :attr:`TensorCheck.margin`)."""
        return max(self.entries, key=lambda entry: entry.margin) if self.entries else None

    def __getitem__(self, name: str) -> TensorCheck:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(f"no tensor named {name!r} was checked; checked: {[e.name for e in self.entries]}")

    def raise_on_failure(self) -> "GradcheckReport":
        """Raise :class:`GradcheckError` with this report's text when a check failed; return self otherwise."""
        if not self.passed:
            raise GradcheckError(str(self))
        return self

    def __str__(self) -> str:
        worst = self.worst
        if worst is None:
            head = "gradcheck passed: nothing to check"
        else:
            verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} of {len(self.entries)} tensors)"
            head = (f"gradcheck {verdict}: worst {worst.name!r} at {worst.where()}, analytic {worst.analytic:.8g} "
                    f"vs numeric {worst.numeric:.8g}, rel error {worst.rel_error:.2e}, max |err| "
                    f"{worst.max_abs_error:.2e} (tol {self.tol:g}, atol {self.atol:g}, eps {self.eps:g})")
        if self.kinks_nudged:
            head += f"; {self.kinks_nudged} input element(s) moved away from kinks"
        columns = (f"  {'tensor':<14} {'shape':<14} {'checked':<15} {'rel error':>9}  {'max |err|':>9}  "
                   "worst element")
        return "\n".join([head, columns] + [f"  {entry}" for entry in self.entries])


# ---- validation --------------------------------------------------------------------------------------------------
def _check_float_array(x: object, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"gradcheck(): {name} must be a numpy.ndarray, not {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"gradcheck(): {name} must be a floating-point array (float64), but got dtype {x.dtype}")
    return x


def _check_eps(eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"gradcheck(): eps must be positive, but got {eps}")


def _warn_if_not_float64(name: str, array: np.ndarray) -> None:
    if array.dtype != np.float64:
        warnings.warn(
            f"{name} has dtype {array.dtype}, not float64: central differences lose most of its digits, so this "
            "check will likely fail. Check in float64 (module.double(), input.astype(np.float64)).",
            UserWarning, stacklevel=3)


# ---- state: rewound before each evaluation, restored at the end ----------------------------------------------------

def _generator_state(generator: Any) -> Any:
    """A restorable snapshot of a numpy Generator or a TorchGenerator."""
    return generator.get_state() if isinstance(generator, TorchGenerator) else generator.bit_generator.state


def _set_generator_state(generator: Any, state: Any) -> None:
    if isinstance(generator, TorchGenerator):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


class _Snapshot:
    """Everything a forward may change, saved so every evaluation starts from it and the module ends in it.

    Parameters are saved as (object, its data array, a copy, its grad object); buffers as (owner, name, the array,
    a copy); each module's ``__dict__`` shallowly (its cache, Dropout's ``mask`` and pending ``_next_mask``,
    attribute references); every ``numpy.random.Generator`` a module holds by its bit-generator state.
    """

    def __init__(self, module: Module) -> None:
        modules = list(module.modules())
        self.params = [(p, p.data, p.data.copy(), p.grad) for p in module.parameters()]
        self.buffers = [(owner, name, buf, None if buf is None else np.array(buf, copy=True))
                        for owner in modules for name, buf in owner._buffers.items()]
        self.attributes = [(owner, dict(owner.__dict__)) for owner in modules]
        generators = {id(g): g for owner in modules for g in owner.__dict__.values()
                      if isinstance(g, (np.random.Generator, TorchGenerator))}
        self.generators = [(g, _generator_state(g)) for g in generators.values()]

    def rewind(self) -> None:
        """Restore buffers, generator states and module attributes (parameters are left as they are)."""
        for owner, saved in self.attributes:
            owner.__dict__.update(saved)
        for owner, name, buf, copy in self.buffers:
            if copy is not None:
                np.copyto(buf, copy)
            owner._buffers[name] = buf
        for generator, state in self.generators:
            _set_generator_state(generator, state)

    def restore(self) -> None:
        """Rewind, then put back every parameter's data (values and array object) and ``.grad`` object."""
        self.rewind()
        for param, data, copy, grad in self.params:
            np.copyto(data, copy)
            param.data = data
            param.grad = grad


# ---- numerical vector-Jacobian products ----------------------------------------------------------------------------
Evaluate = Callable[[], np.ndarray]


def _contract(dout: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> float:
    """``L(plus) - L(minus) = sum(dout * (plus - minus))``: the outputs are subtracted first, element by element,
    which cancels more exactly than subtracting two sums."""
    return float(np.sum(dout * (plus - minus)))


def _full(evaluate: Evaluate, array: np.ndarray, dout: np.ndarray, eps: float) -> np.ndarray:
    """``dL/d(array)`` element by element; ``array`` is perturbed in place and restored bit for bit."""
    grad = np.zeros(array.shape, dtype=np.float64)
    for idx in np.ndindex(array.shape):
        original = array[idx]
        array[idx] = original + eps
        hi, plus = float(array[idx]), evaluate()
        array[idx] = original - eps
        lo, minus = float(array[idx]), evaluate()
        array[idx] = original
        grad[idx] = _contract(dout, plus, minus) / (hi - lo)  # the step actually taken
    return grad


def _projections(evaluate: Evaluate, array: np.ndarray, dout: np.ndarray, eps: float, analytic: np.ndarray,
                 directions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(analytic, numeric) directional derivatives along each unit direction (rows of ``directions``).

    The analytic side uses the displacement actually taken, ``((x + eps v) - (x - eps v)) / (2 eps)`` in
    ``array``'s dtype, so the rounding of ``x +- eps v`` is not counted as an error.
    """
    original = array.copy()
    analytic64 = analytic.astype(np.float64)
    exact, numeric = np.empty(len(directions)), np.empty(len(directions))
    for k, v in enumerate(directions):
        np.add(original, eps * v, out=array, casting="unsafe")
        hi, plus = array.astype(np.float64), evaluate()
        np.subtract(original, eps * v, out=array, casting="unsafe")
        lo, minus = array.astype(np.float64), evaluate()
        np.copyto(array, original)
        exact[k] = float(np.sum(analytic64 * (hi - lo))) / (2 * eps)
        numeric[k] = _contract(dout, plus, minus) / (2 * eps)
    return exact, numeric


def _unit_directions(rng: np.random.Generator, count: int, shape: Tuple[int, ...]) -> np.ndarray:
    directions = rng.standard_normal((count,) + shape)
    norms = np.sqrt(np.sum(directions.reshape(count, -1) ** 2, axis=1))
    return directions / norms.reshape((count,) + (1,) * len(shape))


def _summarise(name: str, shape: Tuple[int, ...], mode: str, analytic: np.ndarray, numeric: np.ndarray,
               tol: float, atol: float) -> TensorCheck:
    """One :class:`TensorCheck`: the relative error, and the value with the largest absolute error."""
    error = np.abs(analytic - numeric)
    if error.size == 0:
        return TensorCheck(name, shape, mode, 0, 0.0, 0.0, None, 0.0, 0.0, True, 0.0, "rel_error", 0.0)
    flat = int(np.argmax(np.where(np.isnan(error), np.inf, error)))
    where = np.unravel_index(flat, error.shape)
    worst: Union[Tuple[int, ...], int] = flat if mode == "projection" else tuple(int(i) for i in where)
    rel = rel_error(analytic, numeric)
    max_abs = float(error.reshape(-1)[flat])
    passed_by = "rel_error" if rel <= tol else "atol" if max_abs <= atol else ""  # NaN fails both
    margin = min(_ratio(rel, tol), _ratio(max_abs, atol))
    return TensorCheck(name, shape, mode, int(error.size), rel, max_abs, worst,
                       float(analytic[where]), float(numeric[where]), bool(passed_by), margin, passed_by,
                       float(np.linalg.norm(numeric)))


def _ratio(error: float, bound: float) -> float:
    """``error / bound`` with 0 / 0 = 0 and x / 0 = inf (a zero tolerance accepts only exact agreement)."""
    if math.isnan(error):
        return math.inf
    if bound <= 0:
        return 0.0 if error == 0 else math.inf
    return error / bound


def _check_tensor(name: str, evaluate: Evaluate, array: np.ndarray, analytic: np.ndarray, dout: np.ndarray,
                  *, eps: float, tol: float, atol: float, full_limit: int, n_directions: int,
                  rng: np.random.Generator) -> TensorCheck:
    if array.size <= full_limit:
        numeric = _full(evaluate, array, dout, eps)
        return _summarise(name, array.shape, "full", analytic.astype(np.float64), numeric, tol, atol)
    directions = _unit_directions(rng, n_directions, array.shape)
    exact, numeric = _projections(evaluate, array, dout, eps, analytic, directions)
    return _summarise(name, array.shape, "projection", exact, numeric, tol, atol)


# ---- kinks -------------------------------------------------------------------------------------------------------
def _away_from_kinks(x: np.ndarray, kinks: Sequence[float], margin: float,
                     target: Optional[np.ndarray]) -> Tuple[np.ndarray, int]:
    """Move every element within ``margin`` of a kink to exactly ``margin`` from it, on its own side (an element
    exactly on the kink goes to the + side). Kinks are at ``origin + k`` for ``k`` in ``kinks``, ``origin`` being
    the target when it is a float array shaped like ``x`` (L1/SmoothL1/Huber losses bend at ``x = target``),
    else 0. Works on (and returns) a copy; also returns how many elements moved."""
    origin = target if (isinstance(target, np.ndarray) and target.shape == x.shape
                        and target.dtype.kind == "f") else np.zeros_like(x)
    x = x.copy()
    moved = np.zeros(x.shape, dtype=bool)
    for kink in kinks:
        offset = x - (origin + kink)
        close = np.abs(offset) < margin
        side = np.where(offset < 0, -1.0, 1.0)
        x[close] = (origin + kink + side * margin)[close]
        moved |= close
    return x, int(moved.sum())


# ---- the check ---------------------------------------------------------------------------------------------------
def _named_trainable(module: Module) -> Iterator[Tuple[str, Parameter]]:
    for name, param in module.named_parameters():
        if param.requires_grad:
            yield name, param


def _as_output(value: Any, what: str) -> np.ndarray:
    if isinstance(value, (float, int, np.floating)):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return np.array(value, dtype=np.float64, copy=True)  # the output may alias the (perturbed) input
    raise TypeError(f"gradcheck(): {what} must return a float or a floating-point ndarray, "
                    f"not {type(value).__name__}")


def gradcheck(
    module: Module,
    input: np.ndarray,
    target: Optional[np.ndarray] = None,
    *,
    rng: np.random.Generator,
    eps: float = 1e-6,
    tol: float = DEFAULT_TOL,
    atol: float = DEFAULT_ATOL,
    full_limit: int = 128,
    n_directions: int = 16,
    away_from_kinks: bool = False,
    kinks: Sequence[float] = (0.0,),
    kink_margin: Optional[float] = None,
) -> GradcheckReport:
    """Check ``module.backward`` against central differences of ``module.forward``, for the input and every
    trainable parameter.

    Parameters
    ----------
    module : Module
        Any handnn module (``Sequential`` included), evaluated in its current train/eval mode, or a loss
        (then ``target`` is required). Any Module whose ``forward(input[, target])`` returns an array or a float
        and whose ``backward(grad_output)`` returns dL/d(input) and accumulates into ``Parameter.grad`` works.
    input : ndarray of float64, any shape the module takes
        Copied, never modified.
    target : ndarray, optional
        The loss's target (class indices or values); held fixed, never differentiated.
    rng : numpy.random.Generator, keyword-only
        Draws the upstream gradient ``dout`` (``N(0, 1)``, shaped like the output; a scalar for a reduced loss)
        and the projection directions. One value is drawn from it to seed a private generator, so a module
        sharing this generator still sees the same state in every evaluation.
    eps : float > 0
        Half the central-difference step.
    tol : float
        Largest accepted :func:`rel_error` per tensor (default 2e-7, seed 003's threshold).
    atol : float
        A tensor also passes when every ``|analytic - numeric| <= atol`` (for gradients that vanish exactly).
    full_limit : int
        Tensors with at most this many elements are checked element by element (``2 * size`` forwards);
        larger ones along ``n_directions`` random unit directions (``2 * n_directions`` forwards).
    n_directions : int >= 1
    away_from_kinks : bool
        Move input elements lying within ``kink_margin`` of a kink (ReLU/LeakyReLU at 0; L1/SmoothL1/Huber at
        ``input == target``) to exactly ``kink_margin`` from it before checking (on a copy), so no central
        difference straddles a kink. Kinks inside the network (a hidden ReLU) are not moved.
    kinks : sequence of float
        Kink positions in the input's coordinates (relative to the target when it is a float array shaped like
        the input). Default ``(0.0,)``; e.g. ``(0.0, -beta, beta)`` for SmoothL1's second-derivative kinks.
    kink_margin : float, optional
        Default ``10 * eps`` (a perturbation moves an element by at most ``eps``).

    Returns
    -------
    GradcheckReport
        Entries ``'input'`` then each trainable parameter in ``named_parameters()`` order; ``.passed``,
        ``.worst``, ``str(report)``, ``.raise_on_failure()``.

    Warns
    -----
    UserWarning
        When the input or a parameter is not float64.
    """
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck(): module must be a handnn Module, not {type(module).__name__}")
    if isinstance(module, _Loss) and target is None:
        raise TypeError(f"gradcheck(): {type(module).__name__} is a loss and needs its target: "
                        "gradcheck(loss, input, target, rng=rng)")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"gradcheck(): rng must be a numpy.random.Generator, not {type(rng).__name__}")
    _check_float_array(input, "input")
    _check_eps(eps)
    if not (tol >= 0 and atol >= 0):
        raise ValueError(f"gradcheck(): tol and atol must be non-negative, but got tol={tol}, atol={atol}")
    if n_directions < 1:
        raise ValueError(f"gradcheck(): n_directions must be at least 1, but got {n_directions}")
    trainable = list(_named_trainable(module))
    _warn_if_not_float64("input", input)
    for name, param in trainable:
        _warn_if_not_float64(f"parameter {name!r}", param.data)

    own_rng = np.random.default_rng(int(rng.integers(2**63)))
    x, nudged = np.array(input, copy=True), 0
    if away_from_kinks:
        margin = 10 * eps if kink_margin is None else kink_margin
        x, nudged = _away_from_kinks(x, kinks, margin, target)

    snapshot = _Snapshot(module)
    try:
        return _run(module, x, target, trainable, snapshot, own_rng, nudged, eps=eps, tol=tol, atol=atol,
                    full_limit=full_limit, n_directions=n_directions)
    finally:
        snapshot.restore()


def _run(module: Module, x: np.ndarray, target: Optional[np.ndarray], trainable: List[Tuple[str, Parameter]],
         snapshot: _Snapshot, rng: np.random.Generator, nudged: int, **options: Any) -> GradcheckReport:
    """The analytic pass, then the numerical one per tensor (see :func:`gradcheck`)."""
    call: Callable[[], Any] = (lambda: module(x)) if target is None else (lambda: module(x, target))

    def evaluate() -> np.ndarray:
        snapshot.rewind()
        return _as_output(call(), f"{type(module).__name__}.forward")

    # analytic: forward, then backward of a random dout into zeroed gradients
    snapshot.rewind()
    out = call()
    reduced = not isinstance(out, np.ndarray)
    dout = rng.standard_normal(np.shape(out))
    for _, param in trainable:
        param.grad = None  # backward accumulates; the caller's grad object is restored afterwards
    grad_output: Union[float, np.ndarray] = float(dout) if reduced else dout.astype(out.dtype)
    dx = module.backward(grad_output)
    analytic: Dict[str, np.ndarray] = {"input": np.array(dx, dtype=np.float64, copy=True)}
    for name, param in trainable:
        grad = param.grad
        analytic[name] = np.zeros(param.data.shape) if grad is None else np.array(grad, np.float64, copy=True)
    if analytic["input"].shape != x.shape:
        raise RuntimeError(f"gradcheck(): {type(module).__name__}.backward returned a gradient of shape "
                           f"{analytic['input'].shape} for an input of shape {x.shape}")

    eps, tol, atol = options["eps"], options["tol"], options["atol"]
    check = dict(eps=eps, tol=tol, atol=atol, full_limit=options["full_limit"],
                 n_directions=options["n_directions"], rng=rng)
    entries = [_check_tensor("input", evaluate, x, analytic["input"], dout, **check)]
    for name, param in trainable:
        entries.append(_check_tensor(name, evaluate, param.data, analytic[name], dout, **check))
    return GradcheckReport(tuple(entries), eps, tol, atol, nudged)
