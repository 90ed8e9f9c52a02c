"""Vectorised special functions NumPy lacks (``erf``), accurate to a few float64 ulps.

``erf`` follows Cephes' ``ndtr.c`` (S. L. Moshier): a rational approximation ``x T(x^2) / U(x^2)`` for
``|x| <= 1`` and ``erf = 1 - erfc`` with ``erfc(x) = exp(-x^2) P(x) / Q(x)`` above. Beyond 8, ``erfc`` is below 1.2e-28,
far under half an ulp of 1, so ``erf`` is 1 there whatever ``erfc``'s exact value: Cephes' third formula (for ``erfc``
itself beyond 8) is not needed. Measured against ``math.erf`` and ``torch.erf`` over 3e6 points in [-10, 10]: at most
3 ulps (4.4e-16 relative).
"""
from __future__ import annotations

import numpy as np

_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3, 7.00332514112805075473e3,
      5.55923013010394962768e4)
_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4)
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0, 4.86371970985681366614e1,
      1.96520832956077098242e2, 5.26445194995477358631e2, 9.34528527171957607540e2, 1.02755188689515710272e3,
      5.57535335369399327526e2)
_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2, 9.75708501743205489753e2,
      1.82390916687909736289e3, 2.24633760818710981792e3, 1.65666309194161350182e3, 5.57535340817727675546e2)


def _polyval(coefficients, x: np.ndarray) -> np.ndarray:
    """Horner's rule, highest power first, in place on one buffer."""
    result = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        result *= x
        result += c
    return result


def _erfc_for_erf(a: np.ndarray) -> np.ndarray:
    """``erfc(a)`` for ``1 <= a <= 8``, and ``erfc(8)`` (below 1.2e-28: ``1 - erfc`` rounds to 1) beyond (float64)."""
    a = np.minimum(a, 8.0)  # also keeps inf out of the polynomials (inf / inf)
    return np.exp(-a * a) * _polyval(_P, a) / _polyval(_Q, a)


def erf(x: np.ndarray) -> np.ndarray:
    """Element-wise error function; float64 arithmetic, result in the dtype of ``x`` (float32 or float64).

    Shape of ``x``; NaN propagates, ``erf(+-inf) = +-1``. (GELU evaluates it a block of a large array at a time.)
    """
    x = np.asarray(x)
    x64 = x.astype(np.float64, copy=False)
    # The small-argument formula is evaluated for every element (most of them need it) and the large-argument one
    # only for those beyond 1, replacing their values: two boolean gathers and scatters fewer than selecting both
    # ways (each costs about as much as a polynomial). Large and infinite inputs are clipped for the first formula,
    # whose values there are discarded, so that it raises no overflow; NaN stays NaN through it.
    clipped = np.clip(x64, -1.0, 1.0)
    z = clipped * clipped
    out = _polyval(_T, z)
    out *= clipped
    out /= _polyval(_U, z)
    large = np.abs(x64) > 1.0
    if large.any():
        xl = x64[large]
        out[large] = np.copysign(1.0 - _erfc_for_erf(np.abs(xl)), xl)
    return out.astype(x.dtype, copy=False)
