"""Checker kinds defined outside :mod:`reference.check`: each course's functions, one module per course.

A kind is data plus a runner (``design.md``): the function names it recognises and the runner that calls the
user's functions in their own style and compares them with torch. Adding a course function is adding a
:class:`Kind` to one of these modules, not editing a dispatcher: :func:`reference.check.infer_kind`, ``check_kind``
and ``handnn-verify --user`` consult :data:`KINDS` before the built-in kinds.

A runner has the signature ``run(functions, options) -> CheckReport``:

- ``functions``: a mapping from the roles the kind declares (``Kind.roles``, e.g. ``("loss",)``,
  ``("forward", "backward")``, ``("initialize", "update")``) to the user's callables found for them (a role the
  user did not write is absent; ``roles[0]`` is always present);
- ``options``: :class:`Options` (dtype, seed, course profile, anything a convention needs).

It builds its rows with ``reference.check``'s machinery (``_Rows``, ``CheckRow``, ``CheckReport``, ``_call``,
``_unpack``, ``_UserFailure``) and may name causes itself (``CheckRow(comparison, diagnosis)``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Options:
    """What a check run is told: dtype, seed, the course profile ('torch' when none is declared), and extra
    conventions by name (e.g. ``{"keep_prob": True}``)."""

    dtype: Any = "float64"
    seed: int = 0
    course: str = "torch"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """One checkable course function (or family).

    name : the kind's name (``--kind NAME``), unique across courses
    course : 'cs231n', 'dlai', 'd2l', 'nndl' — the course whose signature it follows
    names : exact function names it recognises (lowercase), e.g. ``("svm_loss_naive", "svm_loss_vectorized")``
    roles : the functions a check calls, the first being the one named on the command line; the others are looked
        up by :attr:`partners`
    partners : for each role after the first, a function of the first function's name giving the partner's name
        (``lambda name: name.replace("_forward", "_backward")``)
    run : the runner, ``run(functions, options) -> CheckReport``
    summary : one line for ``--help`` and the docs
    """

    name: str
    course: str
    names: Tuple[str, ...]
    roles: Tuple[str, ...]
    run: Callable[[Mapping[str, Callable], Options], Any]
    summary: str = ""
    partners: Tuple[Callable[[str], str], ...] = ()


#: every registered kind by name
KINDS: Dict[str, Kind] = {}
#: the course modules whose kinds are registered on first use
COURSE_MODULES = ("cs231n", "dlai", "d2l")
_loaded = False


def register(kind: Kind) -> Kind:
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise ValueError(f"kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def load() -> Dict[str, Kind]:
    """Import the course modules (each registers its kinds) once; the registry."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in COURSE_MODULES:
            try:
                importlib.import_module(f"{__name__}.{module}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{module}":
                    raise
    return KINDS


def kind_for(name: str) -> Optional[Kind]:
    """The registered kind recognising the function ``name`` (exact, case-insensitive), else None."""
    lowered = name.lower()
    for kind in load().values():
        if lowered in kind.names:
            return kind
    return None


def partner_functions(kind: Kind, first: Callable, namespace: Mapping[str, Any]) -> Dict[str, Callable]:
    """The functions for ``kind``'s roles: ``first`` for the first, the others looked up by name in
    ``namespace`` (absent when the user did not write them)."""
    found: Dict[str, Callable] = {kind.roles[0]: first}
    for role, partner in zip(kind.roles[1:], kind.partners):
        fn = namespace.get(partner(first.__name__))
        if callable(fn):
            found[role] = fn
    return found


def run_kind(kind: Kind, functions: Mapping[str, Callable], options: Options):
    return kind.run(functions, options)


__all__ = ["Kind", "KINDS", "Options", "register", "load", "kind_for", "partner_functions", "run_kind"]
