"""Seed 000 (``../shared/seeds/000_b971a5c6d6b3895a.txt``, "Regularization and Batch Normalization" lab report):
its BatchNorm training forward and its two backward passes, transcribed faithfully — formulas, names and comments
unchanged.

The report shows the bodies only, and its "Test:" section is empty (the test-mode code is not in the report). The
glue — the ``def`` lines, reading ``bn_param``, CS231n's skeleton's test-mode branch (torch's formula), storing the
running statistics back, ``return`` — is marked ``# glue``. ``batchnorm_backward`` is the staged version,
``batchnorm_backward_alt`` the simplified one the report times at 1.84x.

Run it against torch::

    handnn-verify --user examples/seeds/seed000_batchnorm.py:batchnorm_forward --momentum-style cs231n
    handnn-verify --user examples/seeds/seed000_batchnorm.py:batchnorm_forward --backward batchnorm_backward_alt \
        --momentum-style cs231n

What the checker finds: both backward passes are right; the running variance is the biased one.
"""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):  # glue: CS231n's skeleton from here ...
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)

    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    out, cache = None, None
    if mode == "train":  # ... to here
        # compute the mean and variance of x
        sample_mean = np.mean(x, axis=0)
        x_mean = x - sample_mean
        sample_var = np.average(x_mean**2, axis=0)
        x_std = np.sqrt(sample_var + eps)
        # normalize
        x_norm = x_mean / x_std
        # scale and shift
        out = gamma * x_norm + beta
        # store for the cache
        cache = (x, x_mean, sample_var, eps, x_std, x_norm, gamma)
        # update the running mean and running variable
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    elif mode == "test":  # glue: the report's "Test:" section is empty; this is torch's formula
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
    else:  # glue: CS231n's skeleton from here ...
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var

    return out, cache  # ... to here


def batchnorm_backward(dout, cache):  # glue: the def line
    N, _ = dout.shape
    x, x_mean, sample_var, eps, x_std, x_norm, gamma = cache
    dx_norm = gamma * dout
    dx_std = np.sum(-x_mean / (x_std**2) * dx_norm, axis=0)
    dsample_var = 0.5 / np.sqrt(sample_var + eps) * dx_std
    dx_mean = (1. / x_std) * dx_norm + 2. / N * x_mean * dsample_var
    dx = dx_mean - 1. / N * np.sum(dx_mean, axis=0)
    dgamma = np.sum(x_norm * dout, axis=0)
    dbeta = np.sum(dout, axis=0)
    return dx, dgamma, dbeta  # glue: the return line


def batchnorm_backward_alt(dout, cache):  # glue: the def line
    N, _ = dout.shape
    x, x_mean, sample_var, eps, x_std, x_norm, gamma = cache
    dx_norm = gamma * dout
    temps = np.sum(x_mean * dx_norm, axis=0) / (sample_var + eps) / N
    dx_mean = dx_norm / x_std - x_norm * temps
    dx = dx_mean - np.sum(dx_mean, axis=0) / N
    dgamma = np.sum(x_norm * dout, axis=0)
    dbeta = np.sum(dout, axis=0)
    return dx, dgamma, dbeta  # glue: the return line
