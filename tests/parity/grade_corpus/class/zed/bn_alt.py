"""Imports its neighbour both ways (`import layers`, `from .layers import ...`) and adds the alternative
batchnorm backward."""
import layers  # noqa: F401
from .layers import batchnorm_forward  # noqa: F401


def batchnorm_backward_alt(dout, cache):
    xhat, gamma, std = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
