"""torch's CPU random streams, reproduced in NumPy: same seed, same numbers.

:class:`TorchGenerator` is a random source that draws exactly what ``torch.manual_seed(seed)`` (or
``torch.Generator().manual_seed(seed)``) followed by torch's CPU sampling calls draws, in the same order, from the
same state: an mt19937 engine plus the cached second Box–Muller sample. It can be passed wherever handnn takes
``rng=``: besides torch-named methods it has the ``numpy.random.Generator`` methods handnn calls.

Verified against **torch 2.13.0** (CPU wheel, x86-64, glibc 2.36) by ``tests/parity/test_random.py``; the streams
are recorded in ``tests/golden/fixtures/random_streams.npz`` (``python -m reference.record_random``) and replayed
without torch by ``tests/golden/test_random_golden.py``.

Method ↔ torch call (``g = torch.Generator().manual_seed(seed)``)
-------------------------------------------------------------------
=====================================  ==========================================================================
handnn                                 torch
=====================================  ==========================================================================
``rand(*size, dtype=float32)``         ``torch.rand(*size, dtype=dtype, generator=g)``
``randn(*size, dtype=float32)``        ``torch.randn(*size, dtype=dtype, generator=g)``
``randint(low, high, size)``           ``torch.randint(low, high, size, generator=g)`` (also ``randint(high, size)``)
``randperm(n)``                        ``torch.randperm(n, generator=g)``
``bernoulli(p_array)``                 ``torch.bernoulli(p_tensor, generator=g)``
``bernoulli(p, size, dtype=float32)``  ``torch.empty(size, dtype=dtype).bernoulli_(p, generator=g)``
``uniform_(a, from_, to)``             ``t.uniform_(from_, to, generator=g)``, in place, in ``a``'s dtype
``normal_(a, mean, std)``              ``t.normal_(mean, std, generator=g)``
``bernoulli_(a, p)``                   ``t.bernoulli_(p, generator=g)`` (float ``p`` or an array of probabilities)
``random_(a)`` / ``(a, to)`` /         ``t.random_()`` / ``t.random_(to)`` / ``t.random_(from_, to)``
``(a, from_, to)``
``dataloader_order(n)``                one full epoch of ``DataLoader(ds, shuffle=True, generator=g)``
``random(size, dtype=float64)``        ``torch.rand(size, dtype=dtype, generator=g)``
``uniform(low, high, size)``           ``torch.empty(size, dtype=float64).uniform_(low, high, generator=g)``
``normal(loc, scale, size)``           ``torch.empty(size, dtype=float64).normal_(loc, scale, generator=g)``
``standard_normal(size)``              ``torch.randn(size, dtype=float64, generator=g)``
``integers(low, high, size)``          ``torch.randint(low, high, size, generator=g)`` (``high=None``: ``[0, low)``)
``permutation(n)``                     ``torch.randperm(n, generator=g)`` (an array ``x``: ``x[randperm(len(x))]``)
=====================================  ==========================================================================

**Default dtypes differ on purpose.** The torch-named methods default to torch's ``float32``; the NumPy-named
methods (``random``, ``uniform``, ``normal``, ``standard_normal``) default to NumPy's ``float64`` — which is
``torch.float64`` on the torch side, a *different stream* from float32: a float32 uniform consumes one 32-bit word
(24 bits used), a float64 uniform consumes two (53 bits of ``random64() = word1 << 32 | word2``). Pass ``dtype=``
to get the other.

What torch does, and how exact the reproduction is
--------------------------------------------------
- **Engine** (``aten/src/ATen/core/MT19937RNGEngine.h``): standard mt19937 seeded with the seed's low 32 bits;
  ``initial_seed()`` keeps all 64 (negative seeds wrap modulo 2**64). Bit-exact.
- **uniform** (``rand``, ``uniform_``): float32 ``x = (w & (2**24-1)) * 2**-24``, float64
  ``x = (r64 & (2**53-1)) * 2**-53``, then ``fma(x, to - from, from)`` in the dtype (torch's build contracts
  ``x * (to - from) + from`` into an FMA; emulated exactly), and a value equal to ``to`` becomes ``from``. Bit-exact.
- **bernoulli_(float p)** (what ``F.dropout`` does: ``empty_like(x).bernoulli_(1 - p)``): a float64 uniform per
  element, ``u < p``. Older torch releases used MKL's VSL MCG31 stream on Intel CPUs; torch 2.13's
  ``bernoulli_scalar_kernel`` (disassembled from ``libtorch_cpu.so``) calls only this serial kernel, on any CPU.
  **bernoulli(tensor p)**: a uniform in ``p``'s dtype (float32: 24 bits of one word; float64: 53 bits). Bit-exact.
- **randint / random_**: ``(w % range) + from`` with one 32-bit word when ``range < 2**28``, else ``random64()``;
  ``random_()`` without bounds: ``random64() % 2**63`` for int64, ``w % (max + 1)`` for smaller integers, ``w & 1``
  for bool, ``w % (2**24 + 1)`` (float32), ``random64() % (2**53 + 1)`` (float64). Bit-exact.
- **randperm(n)** (``TensorFactories.cpp``, ``randperm_cpu``): for ``n < 2**32 / 20`` a forward Fisher–Yates,
  ``swap(p[i], p[i + w_i % (n - i)])`` for ``i < n - 1``. Bit-exact. For larger ``n`` torch switches to an
  inside-out shuffle on ``random64()``; that sequential loop is not practical in NumPy and raises
  ``NotImplementedError``.
- **normal, fewer than 16 elements or a non-contiguous array**: scalar Box–Muller in double with torch's cached
  second sample (``u1, u2`` float64 uniforms, ``r = sqrt(-2 log1p(-u2))``, ``theta = 2 pi u1``, return
  ``r cos theta`` and cache ``r sin theta``; ``fma(sample, std, mean)``, then cast). ``log1p``, ``sin`` and ``cos``
  come from the platform C library through :mod:`math` — the same library torch calls — so this is bit-exact
  wherever Python and torch share a libm (verified on glibc 2.36).
- **normal, float64, 16 elements or more, contiguous**: all uniforms first, then blocks of 16 (``u1 = 1 - x[j]``,
  ``u2 = x[j + 8]``, ``r = sqrt(-2 log u1)``, ``x[j] = fma(r cos(2 pi u2), std, mean)``,
  ``x[j + 8] = fma(r sin(2 pi u2), std, mean)``); when the size is not a multiple of 16 the last 16 values are
  redrawn from 16 fresh uniforms. libm via :mod:`math` as above: bit-exact with a shared libm.
- **normal, float32, 16 elements or more, contiguous**: the same blocks, computed by torch's AVX2 kernel
  (``NormalFill16<float>`` with ``log256_ps`` / ``sincos256_ps`` of ``avx_mathfun.h``, which GCC contracts into
  FMAs; ``normal_`` is not dispatched to AVX-512, so AVX-512 machines run it too). Emulated operation by operation
  in float32 with exact FMAs: bit-exact on any x86-64 CPU with AVX2. torch's scalar kernel (CPUs without AVX2,
  ``ATEN_CPU_CAPABILITY=default``, and builds for other architectures, which do not compile the AVX2 kernel; it
  calls libm's float ``logf``/``cosf``/``sinf``) is *not* reproduced: about a
  third of its values differ, by at most ``18 * eps(float32) * max(|x|, 1)`` (the largest over 300 seeds;
  ``tests/parity/test_random.py`` holds it to 20).

``torch.manual_seed(s)`` seeds torch's default generator the same way, so ``TorchGenerator(s)`` also reproduces
draws made without ``generator=``: e.g. the keep-mask of ``torch.manual_seed(s); F.dropout(x, p)`` is
``TorchGenerator(s).bernoulli_(np.empty(x.shape, x.dtype), 1 - p) != 0``. ``torch.set_num_threads`` changes no
stream (every kernel above is serial). Non-contiguous arrays are filled in memory order, as torch's TensorIterator
fills a strided tensor.

Only float32 and float64 are supported for floating-point draws (torch also has float16 and bfloat16).
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from fractions import Fraction
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["TorchGenerator", "TORCH_VERSION_VERIFIED", "STATE_SIZE"]

TORCH_VERSION_VERIFIED = "2.13.0"

Size = Union[None, int, Sequence[int]]
DTypeLike = Union[np.dtype, type, str]

# ------------------------------------------------------------------------------------------------ mt19937 engine

_N = 624  # words of state (the twist offset M = 397 is spelled out in _mt_twist)
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER = np.uint32(0x80000000)
_LOWER = np.uint32(0x7FFFFFFF)


def _mt_seed_key(seed32: int) -> np.ndarray:
    """mt19937's ``init_genrand``: the 624-word state torch's engine holds right after seeding."""
    key = [0] * _N
    key[0] = value = seed32
    for j in range(1, _N):
        value = (1812433253 * (value ^ (value >> 30)) + j) & 0xFFFFFFFF
        key[j] = value
    return np.array(key, dtype=np.uint32)


def _mix(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``twist(u, v)`` of the engine: ``(u & UMASK | v & LMASK) >> 1``, xored with MATRIX_A when ``v`` is odd."""
    y = (upper & _UPPER) | (lower & _LOWER)
    odd = lower & np.uint32(1)
    return (y >> np.uint32(1)) ^ (_MATRIX_A * odd)


def _mt_twist(key: np.ndarray) -> np.ndarray:
    """The engine's ``next_state()`` on a copy, vectorised in four dependency-free slices.

    Word ``i`` becomes ``key[i + 397] ^ twist(key[i], key[i + 1])`` where ``key[i + 397]`` is already the *new*
    word for ``i >= 227`` (it wraps around to the start); slices of at most 227 words never read a word they write.
    """
    old = key
    new = np.empty_like(old)
    new[:227] = old[397:] ^ _mix(old[:227], old[1:228])
    new[227:454] = new[:227] ^ _mix(old[227:454], old[228:455])
    new[454:623] = new[227:396] ^ _mix(old[454:623], old[455:624])
    new[623:] = new[396:397] ^ _mix(old[623:], new[:1])
    return new


def _mt_temper(y: np.ndarray) -> np.ndarray:
    """mt19937's output tempering, on uint32 words."""
    y = y ^ (y >> np.uint32(11))
    y = y ^ ((y << np.uint32(7)) & np.uint32(0x9D2C5680))
    y = y ^ ((y << np.uint32(15)) & np.uint32(0xEFC60000))
    return y ^ (y >> np.uint32(18))


class _MT19937:
    """torch's ``at::mt19937`` state: the 624-word key, ``left`` and ``next`` exactly as the engine keeps them.

    A draw decrements ``left``; when it reaches 0 the key is twisted (``next = 0``, ``left = 624``); the word is
    ``temper(key[next])`` and ``next`` advances. So ``left - 1`` words remain before the next twist.
    """

    __slots__ = ("key", "left", "next")

    def __init__(self, key: np.ndarray, left: int, next_: int) -> None:
        self.key, self.left, self.next = key, left, next_

    @classmethod
    def seeded(cls, seed32: int) -> "_MT19937":
        return cls(_mt_seed_key(seed32), 1, 0)

    def copy(self) -> "_MT19937":
        return _MT19937(self.key.copy(), self.left, self.next)

    def words(self, n: int) -> np.ndarray:
        """The next ``n`` 32-bit outputs (``random()``), as uint64."""
        out = np.empty(n, dtype=np.uint32)
        done = min(self.left - 1, n)
        out[:done] = self.key[self.next:self.next + done]
        self.next += done
        self.left -= done
        while done < n:
            self.key = _mt_twist(self.key)
            take = min(_N, n - done)
            out[done:done + take] = self.key[:take]
            self.next, self.left = take, _N + 1 - take
            done += take
        return _mt_temper(out).astype(np.uint64)


# --------------------------------------------------------------------------------------------- exact arithmetic

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's split of a double into two 26-bit halves
_BIG = 2.0 ** 995  # beyond this the split overflows
_TINY = 2.0 ** -960  # below this the product's error term may underflow


def _two_sum(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and the exact error ``a + b - s``."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProduct: ``p = fl(a * b)`` and the exact error ``a * b - p`` (no overflow or underflow)."""
    p = a * b
    t = _SPLITTER * a
    ah = t - (t - a)
    t = _SPLITTER * b
    bh = t - (t - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _add_round_to_odd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` rounded to odd: exact sums unchanged, inexact ones to the neighbour with an odd last bit."""
    s, err = _two_sum(a, b)
    even = (np.asarray(s).view(np.int64) & 1) == 0
    nudge = (err != 0) & even & np.isfinite(s)
    return np.where(nudge, np.nextafter(s, np.copysign(np.inf, err)), s)


def _fma_exact_scalar(a: float, b: float, c: float) -> float:
    """Correctly rounded ``a * b + c`` through exact rationals (the rare huge/tiny operands)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    try:
        return float(Fraction(a) * Fraction(b) + Fraction(c))
    except OverflowError:
        return math.copysign(math.inf, float(np.sign(Fraction(a) * Fraction(b) + Fraction(c))))


def _fma64(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """C's ``fma`` for float64 arrays: ``a * b + c`` with one rounding (Boldo–Melquiond, rounding to odd)."""
    if np.ndim(b) == 0 and float(b) == 1.0:
        return np.asarray(a, dtype=np.float64) + c  # the product is exact: one rounding, as fma
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c)))
    shape = a.shape
    a, b, c = a.ravel(), b.ravel(), c.ravel()
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        uh, ul = _two_prod(a, b)
        th, tl = _two_sum(c, uh)
        out = th + _add_round_to_odd(tl, ul)
        rare = ~np.isfinite(out) | (np.abs(a) > _BIG) | (np.abs(b) > _BIG) | ((uh != 0) & (np.abs(uh) < _TINY))
    for i in np.flatnonzero(rare):
        out[i] = _fma_exact_scalar(float(a[i]), float(b[i]), float(c[i]))
    return out.reshape(shape)


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """C's ``fmaf`` / ``_mm256_fmadd_ps`` for float32: the exact double product, a sum rounded to odd in double
    (53 >= 24 + 2 bits, so the final rounding to float32 is correct), rounded once to float32."""
    product = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return _add_round_to_odd(product, np.asarray(c, dtype=np.float64)).astype(np.float32)


def _libm(fn: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``fn`` (a :mod:`math` function, i.e. the platform's C library, as torch calls it) on every element."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    return np.fromiter(map(fn, flat.tolist()), dtype=np.float64, count=flat.size).reshape(np.shape(x))


# ----------------------------------------------------------------------- torch's AVX2 float32 Box–Muller (16 at once)

_F32 = np.float32
_LOG_POLY = tuple(_F32(c) for c in (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                                    1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                                    3.3333331174e-1))
_LOG_Q1, _LOG_Q2 = _F32(-2.12194440e-4), _F32(0.693359375)
_SQRTHF = _F32(0.707106781186547524)
_MIN_NORM = np.array([0x00800000], dtype=np.uint32).view(np.float32)[0]
_DP1, _DP2, _DP3 = _F32(-0.78515625), _F32(-2.4187564849853515625e-4), _F32(-3.77489497744594108e-8)
_COS_POLY = (_F32(2.443315711809948e-005), _F32(-1.388731625493765e-003), _F32(4.166664568298827e-002))
_SIN_POLY = (_F32(-1.9515295891e-4), _F32(8.3321608736e-3), _F32(-1.6666654611e-1))
_FOPI = _F32(1.27323954473516)
_ONE, _HALF, _ZERO = _F32(1.0), _F32(0.5), _F32(0.0)


def _avx2_log(x: np.ndarray) -> np.ndarray:
    """``log256_ps`` of ``avx_mathfun.h`` in float32, with the FMAs GCC forms from its multiply-adds."""
    invalid = x <= 0
    x = np.maximum(x, _MIN_NORM)
    bits = x.view(np.uint32)
    e = ((bits >> np.uint32(23)).astype(np.int32) - 0x7F).astype(_F32) + _ONE
    x = ((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(_F32)
    below = x < _SQRTHF
    tmp = np.where(below, x, _ZERO)
    x = x - _ONE
    e = e - np.where(below, _ONE, _ZERO)
    x = x + tmp
    z = x * x
    y = np.full_like(x, _LOG_POLY[0])
    for coefficient in _LOG_POLY[1:]:
        y = _fma32(y, x, coefficient)
    y = _fma32(y * x, z, e * _LOG_Q1)
    y = _fma32(-z, _HALF, y)
    x = _fma32(e, _LOG_Q2, x + y)
    return np.where(invalid, _F32(np.nan), x)


def _avx2_sincos(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``sincos256_ps`` of ``avx_mathfun.h`` in float32 (Cephes reduction by pi/4, two polynomials)."""
    negative = np.signbit(x)
    x = np.abs(x)
    j = (x * _FOPI).astype(np.int32)
    j = (j + 1) & ~1
    y = j.astype(_F32)
    sin_flip = ((j & 4) != 0) ^ negative
    cos_flip = ((~(j - 2)) & 4) != 0
    sine_first = (j & 2) == 0
    x = _fma32(y, _DP1, x)
    x = _fma32(y, _DP2, x)
    x = _fma32(y, _DP3, x)
    z = x * x
    yc = _fma32(np.full_like(x, _COS_POLY[0]), z, _COS_POLY[1])
    yc = _fma32(yc, z, _COS_POLY[2])
    yc = _fma32(yc * z, z, -(z * _HALF)) + _ONE
    ys = _fma32(np.full_like(x, _SIN_POLY[0]), z, _SIN_POLY[1])
    ys = _fma32(ys, z, _SIN_POLY[2])
    ys = _fma32(ys * z, x, x)
    # the kernel's masked selection, done with the same float32 adds (it decides the sign of zeros)
    s_part = np.where(sine_first, ys, _ZERO)
    c_part = np.where(sine_first, _ZERO, yc)
    sine = c_part + s_part
    cosine = (yc - c_part) + (ys - s_part)
    return np.where(sin_flip, -sine, sine), np.where(cos_flip, -cosine, cosine)


def _normal_fill16_float32(blocks: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``NormalFill16<float>`` (AVX2) on rows of 16 float32 uniforms."""
    u1 = _ONE - blocks[:, :8]
    u2 = blocks[:, 8:]
    radius = np.sqrt(_F32(-2.0) * _avx2_log(u1))
    sine, cosine = _avx2_sincos(_F32(2.0 * math.pi) * u2)
    std32, mean32 = _F32(std), _F32(mean)
    return np.concatenate([_fma32(radius * cosine, std32, mean32), _fma32(radius * sine, std32, mean32)], axis=1)


def _normal_fill16_float64(blocks: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``NormalFill16<double>`` (scalar C++, libm) on rows of 16 float64 uniforms."""
    u1 = 1.0 - blocks[:, :8]
    theta = (2.0 * math.pi) * blocks[:, 8:]
    radius = np.sqrt(-2.0 * _libm(math.log, u1))
    first = _fma64(radius * _libm(math.cos, theta), std, mean)
    second = _fma64(radius * _libm(math.sin, theta), std, mean)
    return np.concatenate([first, second], axis=1)


# ------------------------------------------------------------------------------------------ dtypes and messages

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INTEGERS = tuple(np.dtype(t) for t in (np.int64, np.int32, np.int16, np.int8, np.uint8))
# torch's ScalarType names (NotImplementedError messages) and C++ type names (bound-check messages)
_TORCH_NAMES = {"float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long", "int32": "Int",
                "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool", "uint16": "UInt16",
                "uint32": "UInt32", "uint64": "UInt64", "complex64": "ComplexFloat", "complex128": "ComplexDouble"}
_CPP_NAMES = {"float64": "double", "float32": "float", "int64": "long int", "int32": "int", "int16": "short int",
              "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}
_MANTISSA = {"float32": 24, "float64": 53}
_RANDPERM_THRESHOLD = 0xFFFFFFFF // 20


def _torch_name(dtype: np.dtype) -> str:
    return _TORCH_NAMES.get(dtype.name, dtype.name)


def _not_implemented(kernel: str, dtype: np.dtype) -> NotImplementedError:
    """torch's message for a dtype a kernel is not compiled for."""
    if dtype == np.float16:
        return NotImplementedError(f"handnn.random reproduces float32 and float64 draws only, got {dtype}")
    return NotImplementedError(f'"{kernel}" not implemented for \'{_torch_name(dtype)}\'')


def _shape(size: Size, args: Tuple = ()) -> Tuple[int, ...]:
    """A shape from torch's ``*size`` varargs or a NumPy ``size`` (int, sequence or None for a scalar)."""
    if args:
        size = args[0] if len(args) == 1 and not isinstance(args[0], numbers.Integral) else args
    if size is None:
        return ()
    dims = (size,) if isinstance(size, numbers.Integral) else tuple(size)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"size must be a sequence of ints, but got {type(d).__name__}")
    dims = tuple(int(d) for d in dims)
    if any(d < 0 for d in dims):
        bad = next(d for d in dims if d < 0)
        raise RuntimeError(f"Trying to create tensor with negative dimension {bad}: [{', '.join(map(str, dims))}]")
    return dims


def _float_dtype(dtype: DTypeLike, kernel: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _FLOATS:
        raise _not_implemented(kernel, dtype)
    return dtype


def _target(array: np.ndarray) -> np.ndarray:
    """Check the in-place target: a writeable ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy.ndarray to fill in place, got {type(array).__name__}")
    if not array.flags.writeable:
        raise ValueError("assignment destination is read-only")
    return array


def _write(array: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Store ``values`` (in torch's iteration order) into ``array``: C order when contiguous, else memory order,
    the order torch's TensorIterator walks a strided tensor (dimensions sorted by stride)."""
    if array.flags.c_contiguous:
        array[...] = values.reshape(array.shape)
        return array
    order = sorted(range(array.ndim), key=lambda d: abs(array.strides[d]), reverse=True)
    view = array.transpose(order)
    view[...] = values.reshape(view.shape)
    return array


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, but got {type(value).__name__}")
    return int(value)


def _fmt(x: float) -> str:
    """A double as C++ streams it in torch's messages (``%g``)."""
    return f"{x:g}"


# ------------------------------------------------------------------------------------------------ the generator

STATE_SIZE = 5056  # sizeof(CPUGeneratorImplState): torch.Generator().get_state().numel()
_STATE_DTYPE = np.dtype([
    ("the_initial_seed", "<u8"), ("left", "<i4"), ("seeded", "<i4"), ("next", "<u8"), ("state", "<u8", (_N,)),
    ("normal_x", "<f8"), ("normal_y", "<f8"), ("normal_rho", "<f8"), ("normal_is_valid", "<i4"), ("_pad0", "V4"),
    ("next_float_normal_sample", "<f4"), ("is_next_float_normal_sample_valid", "u1"), ("_pad1", "V3"),
])
assert _STATE_DTYPE.itemsize == STATE_SIZE


class TorchGenerator:
    """A NumPy random source that reproduces torch's CPU generator: ``TorchGenerator(s)`` draws what
    ``torch.Generator().manual_seed(s)`` draws, call for call (see the module docstring for the mapping).

    Parameters
    ----------
    seed : int, default 67280421310721
        The seed, as ``manual_seed`` takes it: an int in ``[-2**63, 2**64)``; negative seeds wrap modulo
        ``2**64``. The default is torch's ``default_rng_seed_val`` (what a fresh ``torch.Generator()`` holds).

    Notes
    -----
    The state is torch's: the mt19937 engine (624 words, ``left``, ``next``) and the cached second Box–Muller
    sample of the scalar normal path (``next_double_normal_sample``; the float cache is kept for state
    compatibility, torch's CPU kernels never set it). :meth:`get_state` returns the same 5056 bytes as
    ``torch.Generator.get_state()``, and :meth:`set_state` accepts torch's.
    """

    def __init__(self, seed: int = 67280421310721) -> None:
        self.manual_seed(seed)

    # ---------------------------------------------------------------- seeding and state (torch.Generator's API)

    def manual_seed(self, seed: int) -> "TorchGenerator":
        """Seed as ``torch.Generator.manual_seed``: resets the engine and both cached normals; returns self.

        Raises
        ------
        RuntimeError
            If ``seed`` is not an int (torch: ``manual_seed expected a long, but got float``).
        ValueError
            If ``seed`` is outside ``[-2**63, 2**64)`` (torch: ``Overflow when unpacking long long``).
        """
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise RuntimeError(f"manual_seed expected a long, but got {type(seed).__name__}")
        seed = int(seed)
        if not -(2 ** 63) <= seed < 2 ** 64:
            raise ValueError("Overflow when unpacking long long")
        self._seed = seed % 2 ** 64
        self._engine = _MT19937.seeded(self._seed & 0xFFFFFFFF)
        self._next_double_normal: Optional[float] = None
        self._next_float_normal: Optional[float] = None
        return self

    def seed(self) -> int:
        """Seed from the OS's entropy (like ``torch.Generator.seed``) and return the seed."""
        value = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(value)
        return value

    def initial_seed(self) -> int:
        """The seed the engine was seeded with, as an unsigned 64-bit int (``torch.Generator.initial_seed``)."""
        return self._seed

    def get_state(self) -> np.ndarray:
        """A snapshot of the whole state: 5056 uint8, byte-for-byte ``torch.Generator.get_state().numpy()``."""
        record = np.zeros((), dtype=_STATE_DTYPE)
        record["the_initial_seed"] = self._seed
        record["left"] = self._engine.left
        record["seeded"] = 1
        record["next"] = self._engine.next
        record["state"] = self._engine.key
        if self._next_double_normal is not None:
            record["normal_is_valid"] = 1
            record["normal_y"] = self._next_double_normal
        if self._next_float_normal is not None:
            record["is_next_float_normal_sample_valid"] = 1
            record["next_float_normal_sample"] = self._next_float_normal
        return np.frombuffer(record.tobytes(), dtype=np.uint8).copy()

    def set_state(self, state: np.ndarray) -> "TorchGenerator":
        """Restore a snapshot from :meth:`get_state` (or torch's ``get_state()``, as an array); returns self.

        Raises
        ------
        TypeError
            If ``state`` is not a uint8 array.
        RuntimeError
            If it does not hold 5056 bytes, or its engine state is invalid (as torch checks it).
        """
        state = np.asarray(state)
        if state.dtype != np.uint8:
            raise TypeError("RNG state must be a torch.ByteTensor (a uint8 array)")
        if state.size != STATE_SIZE:
            raise RuntimeError(f"Expected a CPUGeneratorImplState of size {STATE_SIZE} but found the input RNG "
                               f"state size to be {state.size}")
        record = np.frombuffer(np.ascontiguousarray(state).tobytes(), dtype=_STATE_DTYPE)[0]
        left, next_ = int(record["left"]), int(record["next"]) & 0xFFFFFFFF
        if not (record["seeded"] != 0 and 0 < left <= _N and next_ <= _N) or (left > 1 and next_ + left - 1 > _N):
            raise RuntimeError("Invalid mt19937 state")
        self._seed = int(record["the_initial_seed"])
        self._engine = _MT19937((record["state"] & 0xFFFFFFFF).astype(np.uint32), left, next_)
        self._next_double_normal = float(record["normal_y"]) if record["normal_is_valid"] else None
        self._next_float_normal = (float(record["next_float_normal_sample"])
                                   if record["is_next_float_normal_sample_valid"] else None)
        return self

    def __repr__(self) -> str:
        return f"TorchGenerator(initial_seed={self._seed})"

    # ---------------------------------------------------------------------------------------------- raw draws

    def _words(self, n: int) -> np.ndarray:
        """``n`` successive ``random()`` draws (32-bit), as uint64."""
        return self._engine.words(n)

    def _words64(self, n: int) -> np.ndarray:
        """``n`` successive ``random64()`` draws: ``first << 32 | second``."""
        w = self._engine.words(2 * n)
        return (w[0::2] << np.uint64(32)) | w[1::2]

    def _unit(self, n: int, dtype: np.dtype) -> np.ndarray:
        """``uniform_real_distribution<T>(0, 1)``: ``n`` uniforms in [0, 1) of ``dtype``."""
        if dtype == np.float32:
            return (self._words(n) & np.uint64(0xFFFFFF)).astype(np.float32) * _F32(2.0 ** -24)
        return (self._words64(n) & np.uint64((1 << 53) - 1)).astype(np.float64) * 2.0 ** -53

    # -------------------------------------------------------------------------------------------- uniform

    def uniform_(self, array: np.ndarray, from_: float = 0.0, to: float = 1.0) -> np.ndarray:
        """Fill ``array`` in place as ``t.uniform_(from_, to)``: uniforms in ``[from_, to)`` in its dtype.

        Returns
        -------
        numpy.ndarray
            ``array`` itself.

        Raises
        ------
        NotImplementedError
            If ``array`` is not float32 or float64.
        RuntimeError
            For torch's bound violations (out of the dtype's range, ``from_ > to``, ``to - from_`` too large).
        """
        array = _target(array)
        dtype = _float_dtype(array.dtype, "check_uniform_bounds")
        from_, to = float(from_), float(to)
        self._check_uniform(from_, to, dtype)
        if array.size:
            _write(array, self._uniform(array.size, from_, to, dtype))
        return array

    @staticmethod
    def _check_uniform(from_: float, to: float, dtype: np.dtype) -> None:
        info = np.finfo(dtype)
        name = _CPP_NAMES[dtype.name]
        if not float(info.min) <= from_ <= float(info.max):
            raise RuntimeError(f"from is out of bounds for {name}")
        if not float(info.min) <= to <= float(info.max):
            raise RuntimeError(f"to is out of bounds for {name}")
        if from_ > to:
            raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={_fmt(from_)} > "
                               f"to={_fmt(to)}")
        if to - from_ > float(info.max):
            raise RuntimeError(f"uniform_ expects to-from <= std::numeric_limits<{_torch_name(dtype)}>::max(), but "
                               f"found to={_fmt(to)} and from={_fmt(from_)} which result in to-from to exceed the "
                               f"limit")

    def _uniform(self, n: int, from_: float, to: float, dtype: np.dtype) -> np.ndarray:
        """``uniform_kernel``: ``fma(x, to - from, from)`` in ``dtype``; a value rounded up to ``to`` is ``from``."""
        x = self._unit(n, dtype)
        lo, hi = dtype.type(from_), dtype.type(to)
        if (lo, hi) == (0, 1):
            return x
        values = _fma32(x, hi - lo, lo) if dtype == np.float32 else _fma64(x, hi - lo, lo)
        return np.where(values == hi, lo, values).astype(dtype, copy=False)

    def rand(self, *size: int, dtype: DTypeLike = np.float32) -> np.ndarray:
        """``torch.rand(*size, dtype=dtype)``: uniforms in [0, 1); torch's default dtype, float32."""
        dtype = _float_dtype(dtype, "check_uniform_bounds")
        return self.uniform_(np.empty(_shape(None, size), dtype=dtype))

    # -------------------------------------------------------------------------------------------- normal

    def normal_(self, array: np.ndarray, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
        """Fill ``array`` in place as ``t.normal_(mean, std)``.

        Contiguous arrays of 16 or more elements take torch's vectorised Box–Muller (blocks of 16, the tail block
        redrawn); smaller or non-contiguous ones the scalar path with the cached second sample.

        Returns
        -------
        numpy.ndarray
            ``array`` itself.

        Raises
        ------
        NotImplementedError
            If ``array`` is not float32 or float64.
        RuntimeError
            If ``std`` is negative or NaN.
        """
        array = _target(array)
        dtype = _float_dtype(array.dtype, "normal_kernel_cpu")
        mean, std = float(mean), float(std)
        if not std >= 0.0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {_fmt(std)}")
        n = array.size
        if n >= 16 and array.flags.c_contiguous:
            array[...] = self._normal_vectorised(n, mean, std, dtype).reshape(array.shape)
        elif n:
            _write(array, self._normal_scalar(n, mean, std).astype(dtype))
        return array

    def _normal_vectorised(self, n: int, mean: float, std: float, dtype: np.dtype) -> np.ndarray:
        """``normal_fill``: ``n`` uniforms, Box–Muller on whole blocks of 16, then a fresh block for the tail."""
        fill = _normal_fill16_float32 if dtype == np.float32 else _normal_fill16_float64
        out = self._unit(n, dtype)
        whole = n - n % 16
        out[:whole] = fill(out[:whole].reshape(-1, 16), mean, std).ravel()
        if n % 16:
            out[n - 16:] = fill(self._unit(16, dtype).reshape(1, 16), mean, std).ravel()
        return out

    def _normal_scalar(self, n: int, mean: float, std: float) -> np.ndarray:
        """``normal_distribution<double>`` ``n`` times (float64): Box–Muller pairs, the sine cached in between."""
        raw = np.empty(n, dtype=np.float64)
        start = 0
        if self._next_double_normal is not None:
            raw[0], start = self._next_double_normal, 1
            self._next_double_normal = None
        pairs = (n - start + 1) // 2
        if pairs:
            u = self._unit(2 * pairs, np.dtype(np.float64))
            u1, u2 = u[0::2], u[1::2]
            radius = np.sqrt(-2.0 * _libm(math.log1p, -u2))
            theta = (2.0 * math.pi) * u1
            both = np.empty(2 * pairs, dtype=np.float64)
            both[0::2] = radius * _libm(math.cos, theta)
            both[1::2] = radius * _libm(math.sin, theta)
            raw[start:] = both[:n - start]
            if (n - start) % 2:
                self._next_double_normal = float(both[-1])
        return _fma64(raw, std, mean)

    def randn(self, *size: int, dtype: DTypeLike = np.float32) -> np.ndarray:
        """``torch.randn(*size, dtype=dtype)``: standard normals; torch's default dtype, float32."""
        dtype = _float_dtype(dtype, "normal_kernel_cpu")
        return self.normal_(np.empty(_shape(None, size), dtype=dtype))

    # -------------------------------------------------------------------------------------------- bernoulli

    def bernoulli_(self, array: np.ndarray, p: Union[float, np.ndarray] = 0.5) -> np.ndarray:
        """Fill ``array`` in place with 0/1 as ``t.bernoulli_(p)``.

        A float ``p``: one float64 uniform per element, ``u < p`` (this is ``F.dropout``'s mask with
        ``p = 1 - drop_probability``). An array ``p`` (broadcast to ``array``): a uniform in ``p``'s dtype
        (float32 or float64) per element, ``u < p``.

        Returns
        -------
        numpy.ndarray
            ``array`` itself.

        Raises
        ------
        RuntimeError
            If a probability is outside [0, 1] or NaN, or ``p`` does not broadcast to ``array``'s shape.
        NotImplementedError
            For an unsupported dtype of ``array`` or ``p``.
        """
        array = _target(array)
        if array.dtype not in _FLOATS + _INTEGERS + (np.dtype(bool),):
            raise _not_implemented("bernoulli_scalar_cpu_", array.dtype)
        if isinstance(p, np.ndarray):
            keep = self._bernoulli_tensor(array.shape, p)
        else:
            p = float(p)
            if not 0.0 <= p <= 1.0:
                raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={_fmt(p)}")
            keep = self._unit(array.size, np.dtype(np.float64)) < p if array.size else np.zeros(0, dtype=bool)
        if array.size:
            _write(array, keep.astype(array.dtype))
        return array

    def _bernoulli_tensor(self, shape: Tuple[int, ...], p: np.ndarray) -> np.ndarray:
        """``bernoulli_tensor_cpu_``: per-element probabilities, uniforms in ``p``'s dtype, ``u < p``."""
        if p.dtype not in _FLOATS:
            raise _not_implemented("bernoulli_tensor_cpu_p_", p.dtype)
        try:
            p = np.broadcast_to(p, shape)
        except ValueError:
            raise RuntimeError(f"The expanded size of the tensor must match the existing size: target sizes "
                               f"{list(shape)}, tensor sizes {list(p.shape)}") from None
        if not np.all((p >= 0) & (p <= 1)):
            raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.  (Could this error "
                               "message be improved?  If so, please report an enhancement request to PyTorch.)")
        return self._unit(p.size, p.dtype) < p.ravel()

    def bernoulli(self, p: Union[float, np.ndarray], size: Size = None, *,
                  dtype: Optional[DTypeLike] = None) -> np.ndarray:
        """0/1 samples: ``torch.bernoulli(p)`` for an array ``p`` (same dtype and shape, unless ``size`` is
        given: then ``empty(size).bernoulli_(p)``), or ``torch.empty(size, dtype).bernoulli_(p)`` for a float
        ``p`` (``dtype`` defaults to torch's float32)."""
        if isinstance(p, np.ndarray):
            out_dtype = p.dtype if dtype is None else np.dtype(dtype)
            out = np.empty(p.shape if size is None else _shape(size), dtype=out_dtype)
        else:
            out = np.empty(_shape(size), dtype=np.float32 if dtype is None else dtype)
        return self.bernoulli_(out, p)

    # ------------------------------------------------------------------------------------------ integers

    def random_(self, array: np.ndarray, *bounds: Optional[int]) -> np.ndarray:
        """Fill ``array`` in place with integers, as ``t.random_()``, ``t.random_(to)``, ``t.random_(from_, to)``.

        ``random_(a)``: ``[0, 2**63)`` for int64 (``random64() % 2**63``), ``[0, max]`` for smaller integer
        dtypes, ``[0, 2**mantissa]`` for floats, ``w & 1`` for bool. ``random_(a, to)``: ``[0, to)``.
        ``random_(a, from_, to)``: ``[from_, to)``; ``to=None`` means up to the dtype's largest value.

        Returns
        -------
        numpy.ndarray
            ``array`` itself.

        Raises
        ------
        RuntimeError
            If ``from_ >= to`` or a bound does not fit the dtype (torch's messages).
        """
        array = _target(array)
        if len(bounds) > 2:
            raise TypeError(f"random_() takes at most 2 bounds, got {len(bounds)}")
        dtype = array.dtype
        if dtype not in _FLOATS + _INTEGERS + (np.dtype(bool),):
            raise _not_implemented("random_", dtype)
        if not bounds:
            values = self._random_default(array.size, dtype)
        else:
            from_, to = (0, bounds[0]) if len(bounds) == 1 else bounds
            values = self._random_from_to(array.size, _as_int(from_, "from"),
                                          None if to is None else _as_int(to, "to"), dtype)
        if array.size:
            _write(array, values)
        return array

    def _random_default(self, n: int, dtype: np.dtype) -> np.ndarray:
        """``uniform_int_distribution<T>``: ``random_()`` with no bounds."""
        if dtype == np.bool_:
            return (self._words(n) & np.uint64(1)).astype(bool)
        if dtype in (np.int64, np.float64):
            modulus = 2 ** 63 if dtype == np.int64 else 2 ** 53 + 1
            return (self._words64(n) % np.uint64(modulus)).astype(dtype)
        modulus = 2 ** 24 + 1 if dtype == np.float32 else int(np.iinfo(dtype).max) + 1
        return (self._words(n) % np.uint64(modulus)).astype(dtype)

    def _random_from_to(self, n: int, from_: int, to: Optional[int], dtype: np.dtype) -> np.ndarray:
        """``random_from_to_impl``: checks, then ``(w % range) + from`` with 32- or 64-bit words."""
        if to is not None:
            if not from_ < to:
                raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={from_} >= to={to}")
            if dtype in _FLOATS:
                from_, to = _update_from(from_, dtype), _update_to(to, dtype)
                if not from_ < to:
                    raise RuntimeError("random_ expects 'from' casted to dtype to be less than 'to' casted to dtype, "
                                       f"but got from={from_} >= to={to}")
            to_inc = to - 1
        elif from_ == -(2 ** 63):
            if dtype not in (np.int64, np.float64, np.float32):
                raise RuntimeError("random_full_64_bits_range_kernel_cpu handles only int64, double, float and "
                                   "bfloat16")
            return self._words64(n).view(np.int64).astype(dtype) if n else np.empty(0, dtype)
        elif dtype in _FLOATS:
            to_inc = min(2 ** _MANTISSA[dtype.name], 2 ** 63 - 1)
            from_ = _update_from(from_, dtype)
            if not from_ < to_inc:
                raise RuntimeError("random_ expects 'from' casted to dtype to be less than or equal to 'to_inc' "
                                   f"casted to dtype, but got from={from_} > to_inc={to_inc}")
        else:
            to_inc = 1 if dtype == np.bool_ else int(np.iinfo(dtype).max)
        _check_from_to_in_range(from_, to_inc, dtype)
        if not n:
            return np.empty(0, dtype=dtype)
        span = (to_inc - from_ + 1) % 2 ** 64
        words = self._words64(n) if span >= 2 ** 28 else self._words(n)
        with np.errstate(over="ignore"):
            values = (words % np.uint64(span)) + np.uint64(from_ % 2 ** 64)
        return values.view(np.int64).astype(dtype)

    def randint(self, low: int, high: Union[int, Sequence[int], None] = None, size: Size = None, *,
                dtype: DTypeLike = np.int64) -> np.ndarray:
        """``torch.randint(low, high, size)`` (or ``torch.randint(high, size)``, as torch overloads it):
        integers in ``[low, high)`` in ``dtype`` (default int64)."""
        if high is None:
            low, high = 0, low
        elif size is None and not isinstance(high, numbers.Integral):
            low, high, size = 0, low, high
        out = np.empty(_shape(size), dtype=dtype)
        return self.random_(out, _as_int(low, "low"), _as_int(high, "high"))

    def randperm(self, n: int, *, dtype: DTypeLike = np.int64) -> np.ndarray:
        """``torch.randperm(n)``: a random permutation of ``0 … n-1`` (forward Fisher–Yates on 32-bit words).

        Raises
        ------
        RuntimeError
            If ``n`` is negative or does not fit ``dtype``.
        NotImplementedError
            For ``n >= 2**32 // 20``, where torch switches to an inside-out shuffle on 64-bit words.
        """
        n = _as_int(n, "n")
        dtype = np.dtype(dtype)
        _shape(n)
        _check_randperm_dtype(n, dtype)
        if n >= _RANDPERM_THRESHOLD:
            raise NotImplementedError(f"randperm(n) for n >= {_RANDPERM_THRESHOLD} (torch's inside-out shuffle on "
                                      "random64) is not reproduced")
        perm = list(range(n))
        if n > 1:
            offsets = (self._words(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).tolist()
            for i, offset in enumerate(offsets):
                j = i + offset
                perm[i], perm[j] = perm[j], perm[i]
        return np.array(perm, dtype=dtype)

    def dataloader_order(self, n: int) -> np.ndarray:
        """The sample order of one full epoch of ``DataLoader(dataset_of_len_n, shuffle=True, generator=g)``
        (``num_workers=0``), drawing exactly what that epoch draws from ``g``.

        torch 2.13's ``_BaseDataLoaderIter`` first draws a base seed (``empty((), int64).random_(generator=g)``),
        then ``RandomSampler`` yields ``randperm(n)`` and, when that is exhausted, draws one more ``randperm(n)``
        for the ``num_samples % n == 0`` remainder it discards.
        """
        self.random_(np.empty((), dtype=np.int64))
        order = self.randperm(n)
        self.randperm(n)
        return order

    # ------------------------------------------------------------------------- numpy.random.Generator methods

    def random(self, size: Size = None, dtype: DTypeLike = np.float64) -> Union[float, np.ndarray]:
        """``numpy.random.Generator.random``: ``torch.rand(size, dtype=dtype)``, **float64** by default."""
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"Unsupported dtype {dtype!r} for random")
        return self.uniform_(np.empty(_shape(size), dtype=dtype))[()]

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Size = None, *,
                dtype: DTypeLike = np.float64) -> Union[float, np.ndarray]:
        """``numpy.random.Generator.uniform``: ``torch.empty(size, dtype).uniform_(low, high)``, float64 by
        default. Unlike NumPy, ``low > high`` raises (torch's check)."""
        return self.uniform_(np.empty(_shape(size), dtype=_float_dtype(dtype, "check_uniform_bounds")),
                             low, high)[()]

    def normal(self, loc: float = 0.0, scale: float = 1.0, size: Size = None, *,
               dtype: DTypeLike = np.float64) -> Union[float, np.ndarray]:
        """``numpy.random.Generator.normal``: ``torch.empty(size, dtype).normal_(loc, scale)``, float64 by
        default (torch's ``RuntimeError`` for a negative scale)."""
        return self.normal_(np.empty(_shape(size), dtype=_float_dtype(dtype, "normal_kernel_cpu")), loc, scale)[()]

    def standard_normal(self, size: Size = None, dtype: DTypeLike = np.float64) -> Union[float, np.ndarray]:
        """``numpy.random.Generator.standard_normal``: ``torch.randn(size, dtype=dtype)``, float64 by default."""
        return self.normal(0.0, 1.0, size, dtype=dtype)

    def integers(self, low: int, high: Optional[int] = None, size: Size = None, dtype: DTypeLike = np.int64,
                 endpoint: bool = False) -> Union[int, np.ndarray]:
        """``numpy.random.Generator.integers``: ``torch.randint(low, high, size, dtype=dtype)``; ``high=None``
        draws from ``[0, low)``, ``endpoint=True`` includes ``high``."""
        if high is None:
            low, high = 0, low
        high = _as_int(high, "high") + (1 if endpoint else 0)
        out = np.empty(_shape(size), dtype=dtype)
        return self.random_(out, _as_int(low, "low"), high)[()]

    def permutation(self, x: Union[int, np.ndarray]) -> np.ndarray:
        """``numpy.random.Generator.permutation``: ``torch.randperm(x)`` for an int, ``x[randperm(len(x))]``
        (a shuffled copy along the first axis) for an array."""
        if isinstance(x, numbers.Integral) and not isinstance(x, bool):
            return self.randperm(int(x))
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("x must be an integer or at least 1-dimensional")
        return x[self.randperm(len(x))]


# -------------------------------------------------------------------------------------------- random_ helpers


def _update_from(from_: int, dtype: np.dtype) -> int:
    """torch's ``update_from<T>``: move ``from`` right to the next value ``T`` represents at or above it."""
    rounded = int(dtype.type(from_ + 1))
    if rounded < from_:
        n = abs(from_ + 1).bit_length() - 1
        from_ = rounded + (1 << (n - _MANTISSA[dtype.name] + 1))
    return from_


def _update_to(to: int, dtype: np.dtype) -> int:
    """torch's ``update_to<T>``: move ``to`` left so a draw rounded to ``T`` stays below it."""
    rounded = int(dtype.type(to - 1))
    if rounded >= to:
        n = abs(to - 1).bit_length() - 1
        to = rounded - (1 << (n - _MANTISSA[dtype.name] + 1))
    return to


def _check_from_to_in_range(from_: int, to_inc: int, dtype: np.dtype) -> None:
    """torch's ``check_from_to_in_range``: both bounds representable (errors), floats exact (a warning)."""
    name = _CPP_NAMES[dtype.name]
    if dtype in _FLOATS:
        lo, hi = float(np.finfo(dtype).min), float(np.finfo(dtype).max)
    elif dtype == np.bool_:
        lo, hi = 0, 1
    else:
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    if not lo <= from_ <= hi:
        raise RuntimeError(f"from is out of bounds for {name}")
    if not lo <= to_inc <= hi:
        raise RuntimeError(f"to - 1 is out of bounds for {name}")
    if dtype in _FLOATS:
        digits = _MANTISSA[dtype.name]
        for value, label in ((from_, "from"), (to_inc, "to - 1")):
            if not -(2 ** digits) <= value <= 2 ** digits:
                warnings.warn(f"{label} is out of bounds [-(2^{digits}), 2^{digits}]. Due to precision limitations "
                              f"{name} can support discrete uniform distribution only within this range. This "
                              "warning will become an error in version 1.7 release, please fix the code in advance",
                              UserWarning, stacklevel=4)


def _check_randperm_dtype(n: int, dtype: np.dtype) -> None:
    """torch's ``check_supported_max_int_with_precision`` for ``randperm``'s output dtype."""
    if dtype in _FLOATS:
        digits = _MANTISSA[dtype.name]
        if n > 2 ** digits + 1:
            raise RuntimeError(f"n cannot be greater than 2^{digits}+1 for {_torch_name(dtype)} type.")
    elif dtype in _INTEGERS:
        if n - 1 > int(np.iinfo(dtype).max):
            raise RuntimeError(f"value cannot be converted to type {dtype.name}_t without overflow")
    else:
        raise _not_implemented("randperm", dtype)
