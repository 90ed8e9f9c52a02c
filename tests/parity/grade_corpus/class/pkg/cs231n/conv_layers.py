"""CS231n package layout: the course's star import, a stand-in helper the package lacks, a relative import."""
from cs231n.layers import *  # noqa: F401,F403
from cs231n.layer_utils import affine_relu_forward  # noqa: F401 — not in this package: the grader's stand-in
from cs231n.fast_layers import conv_forward_fast  # noqa: F401
from .layers import batchnorm_forward, batchnorm_backward


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    out, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, C), gamma, beta, bn_param)
    return out.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, C), cache)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta
