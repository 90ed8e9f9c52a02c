"""Seed 001 (``../shared/seeds/001_9f17ffa918c334eb.txt``, "CNN卷积网络的Python实现(二):
Regularization正则化实现", nickiwei, 2017, after CS231n assignment 2): its inverted dropout and BatchNorm,
transcribed faithfully — bugs, conventions, comments and the global ``np.random.seed`` included. Nothing was added:
the report gives whole functions.

Run it against torch (see the README's worked example)::

    handnn-verify --user examples/seeds/seed001_regularization.py:batchnorm_forward --momentum-style cs231n
    handnn-verify --user examples/seeds/seed001_regularization.py:dropout_forward --keep-prob

What the checker finds: the test-mode formula puts eps outside the sqrt, the running variance is the biased one,
and ``p`` is used as the keep probability although the docstring says "We drop each neuron output with
probability p".
"""
import numpy as np


def dropout_forward(x, dropout_param):
    """
    Performs the forward pass for (inverted) dropout.

    Inputs:
    - x: Input data, of any shape
    - dropout_param: A dictionary with the following keys:
      - p: Dropout parameter. We drop each neuron output with probability p.
      - mode: 'test' or 'train'. If the mode is train, then perform dropout;
        if the mode is test, then just return the input.
      - seed: Seed for the random number generator. Passing seed makes this
        function deterministic, which is needed for gradient checking but not
        in real networks.

    Outputs:
    - out: Array of the same shape as x.
    - cache: tuple (dropout_param, mask). In training mode, mask is the dropout
      mask that was used to multiply the input; in test mode, mask is None.
    """
    p, mode = dropout_param['p'], dropout_param['mode']
    if 'seed' in dropout_param:
        np.random.seed(dropout_param['seed'])

    N, D = x.shape
    mask = np.random.rand(N, D) <= p
    out = None

    if mode == 'train':
        out = x * mask / p
    elif mode == 'test':
        out = x

    cache = (dropout_param, mask)
    out = out.astype(x.dtype, copy=False)

    return out, cache


def dropout_backward(dout, cache):
    """
    Perform the backward pass for (inverted) dropout.

    Inputs:
    - dout: Upstream derivatives, of any shape
    - cache: (dropout_param, mask) from dropout_forward.
    """
    dropout_param, mask = cache
    mode = dropout_param['mode']

    if mode == 'train':
        dx = dout * mask / dropout_param['p']
    elif mode == 'test':
        dx = dout
    return dx


def batchnorm_forward(x, gamma, beta, bn_param):
    """
    Forward pass for batch normalization.

    During training the sample mean and (uncorrected) sample variance are
    computed from minibatch statistics and used to normalize the incoming data.
    During training we also keep an exponentially decaying running mean of the
    mean and variance of each feature, and these averages are used to normalize
    data at test-time.

    At each timestep we update the running averages for mean and variance using
    an exponential decay based on the momentum parameter:

    running_mean = momentum * running_mean + (1 - momentum) * sample_mean
    running_var = momentum * running_var + (1 - momentum) * sample_var

    Note that the batch normalization paper suggests a different test-time
    behavior: they compute sample mean and variance for each feature using a
    large number of training images rather than using a running average. For
    this implementation we have chosen to use running averages instead since
    they do not require an additional estimation step; the torch7
    implementation of batch normalization also uses running averages.

    Input:
    - x: Data of shape (N, D)
    - gamma: Scale parameter of shape (D,)
    - beta: Shift paremeter of shape (D,)
    - bn_param: Dictionary with the following keys:
      - mode: 'train' or 'test'; required
      - eps: Constant for numeric stability
      - momentum: Constant for running mean / variance.
      - running_mean: Array of shape (D,) giving running mean of features
      - running_var Array of shape (D,) giving running variance of features

    Returns a tuple of:
    - out: of shape (N, D)
    - cache: A tuple of values needed in the backward pass
    """
    mode = bn_param['mode']
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)

    N, D = x.shape
    running_mean = bn_param.get('running_mean', np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get('running_var', np.zeros(D, dtype=x.dtype))

    if mode == 'train':
        xmean = np.mean(x, axis=0)
        xcentered = x - xmean
        xvar = np.mean(xcentered**2, axis=0)
        xstd = np.sqrt(xvar + eps)
        xhat = xcentered / xstd
        out = gamma * xhat + beta
        cache = xcentered, xstd, gamma

        running_mean = momentum * running_mean + (1 - momentum) * xmean
        running_var = momentum * running_var + (1 - momentum) * xvar

    elif mode == 'test':

        x = (x - running_mean) / (np.sqrt(running_var) + eps)
        out = gamma * x + beta
        cache = None
    else:
        raise ValueError('Invalid forward batchnorm mode "%s"' % mode)

    # Store the updated running means back into bn_param
    bn_param['running_mean'] = running_mean
    bn_param['running_var'] = running_var

    return out, cache


def batchnorm_backward(dout, cache):
    """
    Backward pass for batch normalization.

    For this implementation, you should write out a computation graph for
    batch normalization on paper and propagate gradients backward through
    intermediate nodes.

    Inputs:
    - dout: Upstream derivatives, of shape (N, D)
    - cache: Variable of intermediates from batchnorm_forward.

    Returns a tuple of:
    - dx: Gradient with respect to inputs x, of shape (N, D)
    - dgamma: Gradient with respect to scale parameter gamma, of shape (D,)
    - dbeta: Gradient with respect to shift parameter beta, of shape (D,)
    """
    xcentered, xstd, gamma = cache
    N, D = xcentered.shape

    # debug: see middle dx
    # dLoss_dstd = dout
    # dL1_dxcentered = 0

    dLoss_dbeta = np.ones(N).dot(dout)
    dLoss_dgamma = np.ones(N).dot(dout * xcentered / xstd)

    dLoss_dxhat = dout*gamma
    dLoss_stdinv = np.ones(N).dot(xcentered * dLoss_dxhat)
    dL1_dxcentered = dLoss_dxhat/xstd
    dLoss_dstd = -dLoss_stdinv / xstd**2
    dLoss_dvar = 0.5 * dLoss_dstd/ xstd
    dLoss_dxcenteredsq = dLoss_dvar*np.ones((N, D)) / N
    dL2_dxcentered = 2 * dLoss_dxcenteredsq * xcentered
    dLoss_dxcentered = dL1_dxcentered + dL2_dxcentered
    dLoss_dmean = np.ones(N).dot(dLoss_dxcentered)
    dL1_dx = -(dLoss_dmean * np.ones((N, D))) / N
    dL2_dx = dLoss_dxcentered
    dLoss_dx = dL1_dx + dL2_dx

    return dLoss_dx, dLoss_dgamma, dLoss_dbeta
