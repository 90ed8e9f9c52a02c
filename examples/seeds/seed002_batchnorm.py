"""Seed 002 (``../shared/seeds/002_fa6b618802762480.txt``, "cs231n assignment2 Batch Normalization"): its
BatchNorm and LayerNorm code, transcribed faithfully — formulas, variable names, comments and bugs unchanged.

The report shows only the bodies of the assignment's functions. The glue it omits (the ``def`` lines, reading
``bn_param``/``ln_param``, storing the running statistics back, ``return``) is CS231n's assignment skeleton and is
marked ``# glue``; indentation that the blog page mangled (mixed tabs) is straightened, and the unclosed
``cache = (...`` of ``layernorm_forward`` is closed. The report gives two backward passes: the staged one
(``batchnorm_backward``) and the one-line one (``batchnorm_backward_alt``).

Run it against torch (see the README's worked example)::

    handnn-verify --user examples/seeds/seed002_batchnorm.py:batchnorm_forward --momentum-style cs231n
    handnn-verify --user examples/seeds/seed002_batchnorm.py:layernorm_forward

What the checker finds: the test-mode formula ``(x - running_mean) * gamma / np.sqrt(running_var)`` drops both
eps and beta, and the running variance is the biased one.
"""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):  # glue: CS231n's skeleton from here ...
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    out, cache = None, None  # ... to here
    if mode == 'train':
        # 样本均值和方差
        sample_mean = np.mean(x, axis=0)
        sample_var = np.var(x, axis=0)
        x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
        out = gamma * x_hat + beta

        cache = (x, sample_mean, sample_var, x_hat, eps, gamma, beta)
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var

    # 在测试数据集上使用运行时均值和方差进行计算
    elif mode == 'test':
        out = (x - running_mean) * gamma / (np.sqrt(running_var))
    else:  # glue: CS231n's skeleton from here ...
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var

    return out, cache  # ... to here


def batchnorm_backward(dout, cache):  # glue: the def line
    # 准备参数
    x, mean, var, x_hat, eps, gamma, beta = cache
    N = x.shape[0]
    mu1 = x - mean
    mu2 = np.sqrt(var + eps)

    # 反向推导
    dbeta = np.sum(dout, axis=0)                                # (D,)
    dgamma = np.sum(x_hat * dout, axis=0)                       # (D,)
    dx_hat = dout * gamma                                       # (N,D)
    dmu1 = dx_hat / mu2                                         # (N,D)
    dmu2 = - np.sum(mu1 / mu2 ** 2 * dx_hat, axis=0)            # (D,)
    dx1 = dmu1                                                  # (N,D)
    dmean1 = -np.sum(dmu1, axis=0)                              # (D,)

    dvar = 0.5 * (var + eps) ** (-0.5) * dmu2                   # (D,)
    dx_square = 1.0 / N * dvar
    dmu3 = 2.0 * (x - mean) * dx_square
    dx2 = dmu3
    dmean2 = -np.sum(dmu3, axis=0)                              # (D,)

    dx3 = 1.0 / N * dmean1
    dx4 = 1.0 / N * dmean2

    dx = dx1 + dx2 + dx3 + dx4

    return dx, dgamma, dbeta  # glue: the return line


def batchnorm_backward_alt(dout, cache):  # glue: the def line
    x, mean, var, x_hat, eps, gamma, beta = cache
    N = x.shape[0]
    dgamma = np.sum(x_hat * dout, axis=0)
    dbeta = np.sum(dout, axis=0)  # (D,)

    dx = (1. / N) * gamma * (var + eps) ** (-1. / 2.) * (
        N * dout - np.sum(dout, axis=0) - (x - mean) * (var + eps) ** (-1.0) * np.sum(dout * (x - mean),
                                                                                    axis=0))

    return dx, dgamma, dbeta  # glue: the return line


def layernorm_forward(x, gamma, beta, ln_param):  # glue: the def line
    eps = ln_param.get("eps", 1e-5)  # glue: CS231n's skeleton reads eps so
    sample_mean = np.mean(x, axis=1, keepdims=True)
    sample_var = np.var(x, axis=1, keepdims=True)
    x_hat = (x - sample_mean) / np.sqrt(sample_var + eps)
    out = gamma * x_hat + beta
    cache = (x, sample_mean, sample_var, x_hat, eps, gamma, beta)  # the report's line lacks the closing ")"
    return out, cache  # glue: the return line


def layernorm_backward(dout, cache):  # glue: the def line
    (x, mean, var, x_hat, eps, gamma, beta) = cache
    N = x.shape[1]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = gamma * dout
    dvar = np.sum((x - mean) * dx_hat, axis=1, keepdims=True) * (
        -0.5 / np.sqrt(var + eps) ** 3)

    dmean = -1 / np.sqrt(var + eps) * np.sum(dx_hat, axis=1, keepdims=True) + dvar * np.sum(
        -2 * (x - mean), axis=1, keepdims=True) / N

    # final gradient
    dx = 1 / np.sqrt(var + eps) * dx_hat + 1 / N * dmean + dvar * 2 * (x - mean) / N
    return dx, dgamma, dbeta  # glue: the return line
