"""reference.kinds.dlai: deeplearning.ai course 1 and 2 functions against torch, with the diagnosis of what differs.

- correct implementations written the course's way (and, where natural, a vectorised/alternative style) pass every
  check of their kind, in float64 (and the forward/backward ones in float32);
- each planted bug fails with its cause named (``reference.kinds.dlai.CAUSES``);
- the function names imply their kinds (``infer_kind``), and ``handnn-verify --user FILE.py:FUNC`` runs end to end.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from reference.check import infer_kind, main_user
from reference.kinds import KINDS, Options, load
from reference.kinds.dlai import CAUSES

load()


def run(kind: str, fn: Callable, dtype: str = "float64"):
    registered = KINDS[kind]
    return registered.run({registered.roles[0]: fn}, Options(dtype=dtype))


def failed_causes(report) -> set:
    return {row.diagnosis for row in report.failures}


# ---- the course's helpers (dnn_utils / reg_utils), as the course's modules import them ------------------------------
def sigmoid(Z):
    return 1 / (1 + np.exp(-Z)), Z


def relu(Z):
    return np.maximum(0, Z), Z


def relu_backward(dA, cache):
    dZ = np.array(dA, copy=True)
    dZ[cache <= 0] = 0
    return dZ


def sigmoid_backward(dA, cache):
    s = 1 / (1 + np.exp(-cache))
    return dA * s * (1 - s)


# ---- C1, the course's way ---------------------------------------------------------------------------------------
def initialize_parameters_deep(layer_dims):
    np.random.seed(3)
    parameters = {}
    L = len(layer_dims)
    for l in range(1, L):
        parameters['W' + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) * 0.01
        parameters['b' + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def linear_forward(A, W, b):
    Z = np.dot(W, A) + b
    return Z, (A, W, b)


def linear_activation_forward(A_prev, W, b, activation):
    if activation == "sigmoid":
        Z, linear_cache = linear_forward(A_prev, W, b)
        A, activation_cache = sigmoid(Z)
    elif activation == "relu":
        Z, linear_cache = linear_forward(A_prev, W, b)
        A, activation_cache = relu(Z)
    return A, (linear_cache, activation_cache)


def L_model_forward(X, parameters):
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L):
        A_prev = A
        A, cache = linear_activation_forward(A_prev, parameters['W' + str(l)], parameters['b' + str(l)], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters['W' + str(L)], parameters['b' + str(L)], "sigmoid")
    caches.append(cache)
    return AL, caches


def compute_cost(AL, Y):
    m = Y.shape[1]
    cost = (-1 / m) * np.sum(np.multiply(Y, np.log(AL)) + np.multiply(1 - Y, np.log(1 - AL)))
    return np.squeeze(cost)


def linear_backward(dZ, cache):
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1. / m * np.dot(dZ, A_prev.T)
    db = 1. / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    linear_cache, activation_cache = cache
    if activation == "relu":
        dZ = relu_backward(dA, activation_cache)
    else:
        dZ = sigmoid_backward(dA, activation_cache)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches):
    grads = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = - (np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    current_cache = caches[L - 1]
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = \
        linear_activation_backward(dAL, current_cache, "sigmoid")
    for l in reversed(range(L - 1)):
        current_cache = caches[l]
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(grads["dA" + str(l + 1)], current_cache, "relu")
        grads["dA" + str(l)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads


def L_model_backward_2017(AL, Y, caches):
    """The 2017 numbering: grads['dA' + str(l + 1)] is the gradient of A^[l]."""
    grads = {}
    L = len(caches)
    dAL = - (np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    grads["dA" + str(L)], grads["dW" + str(L)], grads["db" + str(L)] = \
        linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    for l in reversed(range(L - 1)):
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(grads["dA" + str(l + 2)], caches[l], "relu")
        grads["dA" + str(l + 1)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads


def update_parameters(params, grads, learning_rate):
    parameters = copy.deepcopy(params)
    L = len(parameters) // 2
    for l in range(L):
        parameters["W" + str(l + 1)] = parameters["W" + str(l + 1)] - learning_rate * grads["dW" + str(l + 1)]
        parameters["b" + str(l + 1)] = parameters["b" + str(l + 1)] - learning_rate * grads["db" + str(l + 1)]
    return parameters


def update_parameters_dict(parameters, grads, learning_rate):
    """Alternative style: one comprehension over the keys."""
    return {k: w - learning_rate * grads["d" + k] for k, w in parameters.items()}


# ---- C2, the course's way ---------------------------------------------------------------------------------------
def compute_cost_with_regularization(A3, Y, parameters, lambd):
    m = Y.shape[1]
    W1, W2, W3 = parameters["W1"], parameters["W2"], parameters["W3"]
    cross_entropy_cost = reg_compute_cost(A3, Y)
    L2_regularization_cost = (np.sum(np.square(W1)) + np.sum(np.square(W2)) + np.sum(np.square(W3))) / m * (lambd / 2)
    return cross_entropy_cost + L2_regularization_cost


def reg_compute_cost(a3, Y):
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(a3), Y) + np.multiply(-np.log(1 - a3), 1 - Y)
    return 1. / m * np.nansum(logprobs)


def compute_cost_with_regularization_loop(A3, Y, parameters, lambd):
    """Alternative style: the layers found from the dict, the course's compute_cost lent by the grader."""
    m = Y.shape[1]
    L = len(parameters) // 2
    penalty = sum(np.sum(parameters["W" + str(l)] ** 2) for l in range(1, L + 1))
    return compute_cost(A3, Y) + lambd / (2 * m) * penalty


def backward_propagation_with_regularization(X, Y, cache, lambd):
    m = X.shape[1]
    (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3) = cache
    dZ3 = A3 - Y
    dW3 = 1. / m * np.dot(dZ3, A2.T) + (lambd / m) * W3
    db3 = 1. / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1. / m * np.dot(dZ2, A1.T) + (lambd / m) * W2
    db2 = 1. / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1. / m * np.dot(dZ1, X.T) + (lambd / m) * W1
    db1 = 1. / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dZ3": dZ3, "dW3": dW3, "db3": db3, "dA2": dA2, "dZ2": dZ2, "dW2": dW2, "db2": db2, "dA1": dA1,
            "dZ1": dZ1, "dW1": dW1, "db1": db1}


def _relu1(x):
    return np.maximum(0, x)


def _sigmoid1(x):
    return 1 / (1 + np.exp(-x))


def forward_propagation_with_dropout(X, parameters, keep_prob=0.5):
    np.random.seed(1)
    W1, b1, W2, b2, W3, b3 = (parameters[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    Z1 = np.dot(W1, X) + b1
    A1 = _relu1(Z1)
    D1 = np.random.rand(A1.shape[0], A1.shape[1])
    D1 = (D1 < keep_prob).astype(int)
    A1 = A1 * D1
    A1 = A1 / keep_prob
    Z2 = np.dot(W2, A1) + b2
    A2 = _relu1(Z2)
    D2 = np.random.rand(A2.shape[0], A2.shape[1])
    D2 = (D2 < keep_prob).astype(int)
    A2 = A2 * D2
    A2 = A2 / keep_prob
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid1(Z3)
    return A3, (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3)


def backward_propagation_with_dropout(X, Y, cache, keep_prob):
    m = X.shape[1]
    (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3) = cache
    dZ3 = A3 - Y
    dW3 = 1. / m * np.dot(dZ3, A2.T)
    db3 = 1. / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dA2 = dA2 * D2
    dA2 = dA2 / keep_prob
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1. / m * np.dot(dZ2, A1.T)
    db2 = 1. / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dA1 = dA1 * D1
    dA1 = dA1 / keep_prob
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1. / m * np.dot(dZ1, X.T)
    db1 = 1. / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dZ3": dZ3, "dW3": dW3, "db3": db3, "dA2": dA2, "dZ2": dZ2, "dW2": dW2, "db2": db2, "dA1": dA1,
            "dZ1": dZ1, "dW1": dW1, "db1": db1}


def gradient_check_n(parameters, gradients, X, Y, epsilon=1e-7, print_msg=False):
    parameters_values, _ = dictionary_to_vector(parameters)  # noqa: F821 — the course's gc_utils, lent
    grad = gradients_to_vector(gradients)  # noqa: F821
    num_parameters = parameters_values.shape[0]
    J_plus = np.zeros((num_parameters, 1))
    J_minus = np.zeros((num_parameters, 1))
    gradapprox = np.zeros((num_parameters, 1))
    for i in range(num_parameters):
        thetaplus = np.copy(parameters_values)
        thetaplus[i][0] = thetaplus[i][0] + epsilon
        J_plus[i], _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaplus))  # noqa: F821
        thetaminus = np.copy(parameters_values)
        thetaminus[i][0] = thetaminus[i][0] - epsilon
        J_minus[i], _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaminus))  # noqa: F821
        gradapprox[i] = (J_plus[i] - J_minus[i]) / (2 * epsilon)
    numerator = np.linalg.norm(grad - gradapprox)
    denominator = np.linalg.norm(grad) + np.linalg.norm(gradapprox)
    return numerator / denominator


def random_mini_batches(X, Y, mini_batch_size=64, seed=0):
    np.random.seed(seed)
    m = X.shape[1]
    mini_batches = []
    permutation = list(np.random.permutation(m))
    shuffled_X = X[:, permutation]
    shuffled_Y = Y[:, permutation].reshape((1, m))
    num_complete_minibatches = math.floor(m / mini_batch_size)
    for k in range(0, num_complete_minibatches):
        mini_batch_X = shuffled_X[:, k * mini_batch_size:(k + 1) * mini_batch_size]
        mini_batch_Y = shuffled_Y[:, k * mini_batch_size:(k + 1) * mini_batch_size]
        mini_batches.append((mini_batch_X, mini_batch_Y))
    if m % mini_batch_size != 0:
        mini_batch_X = shuffled_X[:, num_complete_minibatches * mini_batch_size:m]
        mini_batch_Y = shuffled_Y[:, num_complete_minibatches * mini_batch_size:m]
        mini_batches.append((mini_batch_X, mini_batch_Y))
    return mini_batches


def random_mini_batches_split(X, Y, mini_batch_size=64, seed=0):
    """Alternative style: np.array_split at the batch boundaries."""
    np.random.seed(seed)
    perm = np.random.permutation(X.shape[1])
    cuts = list(range(mini_batch_size, X.shape[1], mini_batch_size))
    return list(zip(np.split(X[:, perm], cuts, axis=1), np.split(Y[:, perm], cuts, axis=1)))


def initialize_velocity(parameters):
    L = len(parameters) // 2
    v = {}
    for l in range(L):
        v["dW" + str(l + 1)] = np.zeros(parameters['W' + str(l + 1)].shape)
        v["db" + str(l + 1)] = np.zeros(parameters['b' + str(l + 1)].shape)
    return v


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    L = len(parameters) // 2
    for l in range(L):
        v["dW" + str(l + 1)] = beta * v["dW" + str(l + 1)] + (1 - beta) * grads['dW' + str(l + 1)]
        v["db" + str(l + 1)] = beta * v["db" + str(l + 1)] + (1 - beta) * grads['db' + str(l + 1)]
        parameters["W" + str(l + 1)] = parameters['W' + str(l + 1)] - learning_rate * v["dW" + str(l + 1)]
        parameters["b" + str(l + 1)] = parameters['b' + str(l + 1)] - learning_rate * v["db" + str(l + 1)]
    return parameters, v


def initialize_adam(parameters):
    L = len(parameters) // 2
    v, s = {}, {}
    for l in range(L):
        v["dW" + str(l + 1)] = np.zeros(parameters["W" + str(l + 1)].shape)
        v["db" + str(l + 1)] = np.zeros(parameters["b" + str(l + 1)].shape)
        s["dW" + str(l + 1)] = np.zeros(parameters["W" + str(l + 1)].shape)
        s["db" + str(l + 1)] = np.zeros(parameters["b" + str(l + 1)].shape)
    return v, s


def make_adam(bug: str = "", returns: int = 3) -> Callable:
    def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999,
                                    epsilon=1e-8):
        L = len(parameters) // 2
        v_corrected, s_corrected = {}, {}
        tt = t + 1 if bug == "t" else t
        for l in range(L):
            for p in ("W", "b"):
                key = "d" + p + str(l + 1)
                v[key] = beta1 * v[key] + (1 - beta1) * grads[key]
                v_corrected[key] = v[key] / (1 - beta1 ** tt)
                s[key] = beta2 * s[key] + (1 - beta2) * grads[key] ** 2
                s_corrected[key] = s[key] / (1 - (beta2 if bug == "pow" else beta2 ** tt))
                denom = s_corrected[key] + epsilon if bug == "sqrt" else np.sqrt(s_corrected[key]) + epsilon
                parameters[p + str(l + 1)] = parameters[p + str(l + 1)] - learning_rate * v_corrected[key] / denom
        return (parameters, v, s, v_corrected, s_corrected) if returns == 5 else (parameters, v, s)
    return update_parameters_with_adam


def update_lr(learning_rate0, epoch_num, decay_rate):
    return learning_rate0 / (1 + decay_rate * epoch_num)


def schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    return learning_rate0 / (1 + decay_rate * np.floor(epoch_num / time_interval))


# ---- planted bugs -----------------------------------------------------------------------------------------------
def cost_sum(AL, Y):
    return np.squeeze(-np.sum(Y * np.log(AL) + (1 - Y) * np.log(1 - AL)))


def L_model_backward_sign(AL, Y, caches):
    grads = L_model_backward(AL, Y, caches)  # the course's, then dAL = Y/AL − (1−Y)/(1−AL): all negated
    return {k: -v for k, v in grads.items()}


def L_model_backward_dal_sign(AL, Y, caches):
    grads = {}
    L = len(caches)
    dAL = np.divide(Y, AL) - np.divide(1 - Y, 1 - AL)
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = \
        linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    for l in reversed(range(L - 1)):
        grads["dA" + str(l)], grads["dW" + str(l + 1)], grads["db" + str(l + 1)] = \
            linear_activation_backward(grads["dA" + str(l + 1)], caches[l], "relu")
    return grads


def momentum_no_ema(parameters, grads, v, beta, learning_rate):
    for key in list(v):
        v[key] = beta * v[key] + grads[key]
        parameters[key[1:]] = parameters[key[1:]] - learning_rate * v[key]
    return parameters, v


def l2_cost_over_m(A3, Y, parameters, lambd):
    m = Y.shape[1]
    penalty = sum(np.sum(np.square(parameters["W" + str(l)])) for l in (1, 2, 3))
    return reg_compute_cost(A3, Y) + lambd / m * penalty


def backward_l2_missing(X, Y, cache, lambd):
    return backward_propagation_with_regularization(X, Y, cache, 0.0)


def backward_dropout_no_mask(X, Y, cache, keep_prob):
    (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3) = cache
    ones = (Z1, np.ones_like(D1), A1, W1, b1, Z2, np.ones_like(D2), A2, W2, b2, Z3, A3, W3, b3)
    return backward_propagation_with_dropout(X, Y, ones, keep_prob)


def forward_dropout_no_scale(X, parameters, keep_prob=0.5):
    return _forward_dropout(X, parameters, keep_prob, scale=False)


def forward_dropout_as_drop(X, parameters, keep_prob=0.5):
    return _forward_dropout(X, parameters, keep_prob, keep=lambda D: D > keep_prob)


def _forward_dropout(X, parameters, keep_prob, scale=True, keep=None):
    np.random.seed(1)
    keep = keep or (lambda D: D < keep_prob)
    W1, b1, W2, b2, W3, b3 = (parameters[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    Z1 = np.dot(W1, X) + b1
    D1 = keep(np.random.rand(*Z1.shape)).astype(int)
    A1 = _relu1(Z1) * D1 / (keep_prob if scale else 1)
    Z2 = np.dot(W2, A1) + b2
    D2 = keep(np.random.rand(*Z2.shape)).astype(int)
    A2 = _relu1(Z2) * D2 / (keep_prob if scale else 1)
    Z3 = np.dot(W3, A2) + b3
    A3 = _sigmoid1(Z3)
    return A3, (Z1, D1, A1, W1, b1, Z2, D2, A2, W2, b2, Z3, A3, W3, b3)


def gradient_check_alias(parameters, gradients, X, Y, epsilon=1e-7):
    parameters_values, _ = dictionary_to_vector(parameters)  # noqa: F821
    grad = gradients_to_vector(gradients)  # noqa: F821
    n = parameters_values.shape[0]
    gradapprox = np.zeros((n, 1))
    for i in range(n):
        thetaplus = parameters_values  # no np.copy: the +epsilon stays in parameters_values
        thetaplus[i][0] = thetaplus[i][0] + epsilon
        J_plus, _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaplus))  # noqa: F821
        thetaminus = np.copy(parameters_values)
        thetaminus[i][0] = thetaminus[i][0] - epsilon
        J_minus, _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaminus))  # noqa: F821
        gradapprox[i] = (J_plus - J_minus) / (2 * epsilon)
    return np.linalg.norm(grad - gradapprox) / (np.linalg.norm(grad) + np.linalg.norm(gradapprox))


def mini_batches_drop_last(X, Y, mini_batch_size=64, seed=0):
    return random_mini_batches(X, Y, mini_batch_size, seed)[:X.shape[1] // mini_batch_size]


def mini_batches_overlap(X, Y, mini_batch_size=64, seed=0):
    batches = random_mini_batches(X, Y, mini_batch_size, seed)
    if X.shape[1] % mini_batch_size:  # the last batch taken as the last mini_batch_size columns: overlaps
        np.random.seed(seed)
        perm = np.random.permutation(X.shape[1])
        size = batches[-1][0].shape[1]
        tail = perm[-mini_batch_size:][:size]
        batches[-1] = (X[:, tail], Y[:, tail])
    return batches


def schedule_no_floor(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    return learning_rate0 / (1 + decay_rate * epoch_num / time_interval)


def init_no_scale(layer_dims):
    np.random.seed(3)
    return {k: (v / 0.01 if k.startswith("W") else v) for k, v in initialize_parameters_deep(layer_dims).items()}


def cost_negated(AL, Y):
    return -compute_cost(AL, Y)


def linear_backward_over_m(dZ, cache):
    dA_prev, dW, db = linear_backward(dZ, cache)
    return dA_prev / cache[0].shape[1], dW, db


def linear_activation_backward_swapped(dA, cache, activation):
    return linear_activation_backward(dA, cache, "relu" if activation == "sigmoid" else "sigmoid")


def linear_activation_forward_swapped(A_prev, W, b, activation):
    return linear_activation_forward(A_prev, W, b, "relu" if activation == "sigmoid" else "sigmoid")


def L_model_forward_relu_last(X, parameters):
    caches, A = [], X
    L = len(parameters) // 2
    for l in range(1, L + 1):
        A, cache = linear_activation_forward(A, parameters['W' + str(l)], parameters['b' + str(l)], "relu")
        caches.append(cache)
    return A, caches


def update_ascent(parameters, grads, learning_rate):
    return {k: w + learning_rate * grads["d" + k] for k, w in parameters.items()}


def momentum_grad_step(parameters, grads, v, beta, learning_rate):
    for key in list(v):
        v[key] = beta * v[key] + (1 - beta) * grads[key]
        parameters[key[1:]] = parameters[key[1:]] - learning_rate * grads[key]
    return parameters, v


def adam_eps_inside(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
    for key in list(v):
        v[key] = beta1 * v[key] + (1 - beta1) * grads[key]
        s[key] = beta2 * s[key] + (1 - beta2) * grads[key] ** 2
        parameters[key[1:]] -= learning_rate * (v[key] / (1 - beta1 ** t)) / np.sqrt(s[key] / (1 - beta2 ** t)
                                                                                    + epsilon)
    return parameters, v, s


def adam_no_correction(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
    for key in list(v):
        v[key] = beta1 * v[key] + (1 - beta1) * grads[key]
        s[key] = beta2 * s[key] + (1 - beta2) * grads[key] ** 2
        parameters[key[1:]] -= learning_rate * v[key] / (np.sqrt(s[key]) + epsilon)
    return parameters, v, s


def l2_cost_with_biases(A3, Y, parameters, lambd):
    m = Y.shape[1]
    return reg_compute_cost(A3, Y) + lambd / (2 * m) * sum(np.sum(np.square(p)) for p in parameters.values())


def backward_l2_no_m(X, Y, cache, lambd):
    grads = backward_propagation_with_regularization(X, Y, cache, 0.0)
    for l, W in ((1, cache[2]), (2, cache[6]), (3, cache[10])):
        grads["dW" + str(l)] = grads["dW" + str(l)] + lambd * W
    return grads


def backward_dropout_no_scale(X, Y, cache, keep_prob):
    return backward_propagation_with_dropout(X, Y, cache, 1.0)


def forward_dropout_times_keep(X, parameters, keep_prob=0.5):
    return _forward_dropout(X, parameters, 1 / keep_prob, keep=lambda D: D < keep_prob)


def gradient_check_alias_both(parameters, gradients, X, Y, epsilon=1e-7):
    parameters_values, _ = dictionary_to_vector(parameters)  # noqa: F821
    grad = gradients_to_vector(gradients)  # noqa: F821
    n = parameters_values.shape[0]
    gradapprox = np.zeros((n, 1))
    for i in range(n):
        thetaplus = parameters_values
        thetaplus[i][0] = thetaplus[i][0] + epsilon
        J_plus, _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaplus))  # noqa: F821
        thetaminus = parameters_values
        thetaminus[i][0] = thetaminus[i][0] - epsilon
        J_minus, _ = forward_propagation_n(X, Y, vector_to_dictionary(thetaminus))  # noqa: F821
        gradapprox[i] = (J_plus - J_minus) / (2 * epsilon)
    return np.linalg.norm(grad - gradapprox) / (np.linalg.norm(grad) + np.linalg.norm(gradapprox))


def mini_batches_unpaired(X, Y, mini_batch_size=64, seed=0):
    batches = random_mini_batches(X, Y, mini_batch_size, seed)
    perm = np.random.permutation(X.shape[1])
    shuffled_Y = Y[:, perm]
    out, start = [], 0
    for bx, _ in batches:
        out.append((bx, shuffled_Y[:, start:start + bx.shape[1]]))
        start += bx.shape[1]
    return out


def mini_batches_unshuffled(X, Y, mini_batch_size=64, seed=0):
    m = X.shape[1]
    return [(X[:, k:k + mini_batch_size], Y[:, k:k + mini_batch_size]) for k in range(0, m, mini_batch_size)]


def update_lr_paren(learning_rate0, epoch_num, decay_rate):
    return learning_rate0 / (1 + decay_rate) * epoch_num


def schedule_no_interval(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    return learning_rate0 / (1 + decay_rate * epoch_num)


def init_he(layer_dims):
    np.random.seed(3)
    return {**{f"W{l}": np.random.randn(layer_dims[l], layer_dims[l - 1]) * np.sqrt(2 / layer_dims[l - 1])
               for l in range(1, len(layer_dims))},
            **{f"b{l}": np.zeros((layer_dims[l], 1)) for l in range(1, len(layer_dims))}}


def init_uniform(layer_dims):
    np.random.seed(3)
    return {**{f"W{l}": np.random.rand(layer_dims[l], layer_dims[l - 1]) * 0.01
               for l in range(1, len(layer_dims))},
            **{f"b{l}": np.zeros((layer_dims[l], 1)) for l in range(1, len(layer_dims))}}


def adam_first_no_pow(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8):
    for key in list(v):
        v[key] = beta1 * v[key] + (1 - beta1) * grads[key]
        s[key] = beta2 * s[key] + (1 - beta2) * grads[key] ** 2
        parameters[key[1:]] -= learning_rate * (v[key] / (1 - beta1)) / (np.sqrt(s[key] / (1 - beta2 ** t))
                                                                         + epsilon)
    return parameters, v, s


def forward_dropout_over_drop(X, parameters, keep_prob=0.5):
    return _forward_dropout(X, parameters, 1 - keep_prob, keep=lambda D: D < keep_prob)


def forward_dropout_mask_all(X, parameters, keep_prob=0.5):
    return _forward_dropout(X, parameters, keep_prob, keep=lambda D: D < 2)


def linear_backward_no_m(dZ, cache):
    A_prev, W, b = cache
    return np.dot(W.T, dZ), np.dot(dZ, A_prev.T), np.sum(dZ, axis=1, keepdims=True)


def L_model_forward_sigmoid_hidden(X, parameters):
    caches, A = [], X
    L = len(parameters) // 2
    for l in range(1, L + 1):
        A, cache = linear_activation_forward(A, parameters['W' + str(l)], parameters['b' + str(l)], "sigmoid")
        caches.append(cache)
    return A, caches


def l2_cost_no_m(A3, Y, parameters, lambd):
    return reg_compute_cost(A3, Y) + lambd / 2 * sum(np.sum(np.square(parameters["W" + str(l)])) for l in (1, 2, 3))


def l2_cost_missing(A3, Y, parameters, lambd):
    return reg_compute_cost(A3, Y)


def backward_l2_double(X, Y, cache, lambd):
    grads = backward_propagation_with_regularization(X, Y, cache, lambd)
    m = X.shape[1]
    for l, W in ((1, cache[2]), (2, cache[6]), (3, cache[10])):
        grads["dW" + str(l)] = grads["dW" + str(l)] + lambd / m * W
    return grads


def gradient_check_one_eps(parameters, gradients, X, Y, epsilon=1e-7):
    return _gradient_check(parameters, gradients, X, Y, epsilon, divisor=1)


def gradient_check_norm(parameters, gradients, X, Y, epsilon=1e-7):
    return _gradient_check(parameters, gradients, X, Y, epsilon, relative_to_grad=True)


def _gradient_check(parameters, gradients, X, Y, epsilon, divisor=2, relative_to_grad=False):
    parameters_values, _ = dictionary_to_vector(parameters)  # noqa: F821
    grad = gradients_to_vector(gradients)  # noqa: F821
    gradapprox = np.zeros_like(parameters_values)
    for i in range(parameters_values.shape[0]):
        plus, minus = parameters_values.copy(), parameters_values.copy()
        plus[i, 0] += epsilon
        minus[i, 0] -= epsilon
        gradapprox[i] = (forward_propagation_n(X, Y, vector_to_dictionary(plus))[0]  # noqa: F821
                         - forward_propagation_n(X, Y, vector_to_dictionary(minus))[0]) / (divisor * epsilon)  # noqa
    numerator = np.linalg.norm(grad - gradapprox)
    if relative_to_grad:
        return numerator / np.linalg.norm(grad)
    return numerator / (np.linalg.norm(grad) + np.linalg.norm(gradapprox))


def update_no_lr(parameters, grads, learning_rate):
    return {k: w - grads["d" + k] for k, w in parameters.items()}


def init_sqrt_n(layer_dims):
    np.random.seed(1)  # the course's dnn_app_utils_v3: randn / sqrt(n_prev)
    parameters = {}
    for l in range(1, len(layer_dims)):
        parameters['W' + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])
        parameters['b' + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


CORRECT = [
    ("initialize_parameters_deep", initialize_parameters_deep),
    ("linear_forward", linear_forward),
    ("linear_activation_forward", linear_activation_forward),
    ("L_model_forward", L_model_forward),
    ("compute_cost", compute_cost),
    ("linear_backward", linear_backward),
    ("linear_activation_backward", linear_activation_backward),
    ("L_model_backward", L_model_backward),
    ("L_model_backward", L_model_backward_2017),
    ("update_parameters", update_parameters),
    ("update_parameters", update_parameters_dict),
    ("update_parameters_with_gd", update_parameters),
    ("compute_cost_with_regularization", compute_cost_with_regularization),
    ("compute_cost_with_regularization", compute_cost_with_regularization_loop),
    ("backward_propagation_with_regularization", backward_propagation_with_regularization),
    ("forward_propagation_with_dropout", forward_propagation_with_dropout),
    ("backward_propagation_with_dropout", backward_propagation_with_dropout),
    ("gradient_check_n", gradient_check_n),
    ("random_mini_batches", random_mini_batches),
    ("random_mini_batches", random_mini_batches_split),
    ("initialize_velocity", initialize_velocity),
    ("update_parameters_with_momentum", update_parameters_with_momentum),
    ("initialize_adam", initialize_adam),
    ("update_parameters_with_adam", make_adam()),
    ("update_parameters_with_adam", make_adam(returns=5)),
    ("update_lr", update_lr),
    ("schedule_lr_decay", schedule_lr_decay),
]


@pytest.mark.parametrize("kind, fn", CORRECT, ids=[f"{k}-{f.__name__}" for k, f in CORRECT])
def test_correct_implementation_passes(kind, fn):
    report = run(kind, fn)
    assert report.passed, str(report)
    assert len(report.rows) >= 1


FLOAT32 = ["linear_forward", "L_model_forward", "L_model_backward", "backward_propagation_with_regularization",
           "backward_propagation_with_dropout", "update_parameters_with_adam"]


@pytest.mark.parametrize("kind", FLOAT32)
def test_correct_implementation_passes_in_float32(kind):
    fn = dict(CORRECT)[kind]
    report = run(kind, fn, dtype="float32")
    assert report.passed, str(report)


PLANTED = [  # (kind, implementation, the cause it must name); the brief's ten first
    ("update_parameters_with_adam", make_adam("t"), "adam_t_off_by_one"),
    ("update_parameters_with_adam", make_adam("pow"), "adam_no_pow_t"),
    ("update_parameters_with_adam", make_adam("sqrt"), "adam_no_sqrt"),
    ("update_parameters_with_momentum", momentum_no_ema, "momentum_no_one_minus_beta"),
    ("compute_cost_with_regularization", l2_cost_over_m, "l2_cost_over_m"),
    ("backward_propagation_with_regularization", backward_l2_missing, "l2_grad_missing"),
    ("backward_propagation_with_dropout", backward_dropout_no_mask, "dropout_backward_no_mask"),
    ("forward_propagation_with_dropout", forward_dropout_no_scale, "dropout_no_scale"),
    ("forward_propagation_with_dropout", forward_dropout_as_drop, "dropout_keep_as_drop"),
    ("compute_cost", cost_sum, "cost_no_mean"),
    ("L_model_backward", L_model_backward_dal_sign, "dal_sign"),
    ("random_mini_batches", mini_batches_drop_last, "minibatch_drop_last"),
    ("random_mini_batches", mini_batches_overlap, "minibatch_repeat"),
    ("gradient_check_n", gradient_check_alias, "gradcheck_alias_plus"),
    ("schedule_lr_decay", schedule_no_floor, "lr_decay_no_floor"),
    ("initialize_parameters_deep", init_no_scale, "init_no_scale"),
    # further causes of the catalogue
    ("compute_cost", cost_negated, "cost_sign"),
    ("linear_backward", linear_backward_over_m, "da_prev_over_m"),
    ("linear_activation_backward", linear_activation_backward_swapped, "activation_swapped"),
    ("linear_activation_forward", linear_activation_forward_swapped, "activation_swapped"),
    ("L_model_forward", L_model_forward_relu_last, "relu_last"),
    ("update_parameters", update_ascent, "update_ascent"),
    ("update_parameters_with_gd", update_ascent, "update_ascent"),
    ("update_parameters_with_momentum", momentum_grad_step, "momentum_grad_step"),
    ("update_parameters_with_adam", adam_eps_inside, "adam_eps_inside"),
    ("update_parameters_with_adam", adam_no_correction, "adam_no_correction"),
    ("compute_cost_with_regularization", l2_cost_with_biases, "l2_cost_with_biases"),
    ("backward_propagation_with_regularization", backward_l2_no_m, "l2_grad_no_m"),
    ("backward_propagation_with_dropout", backward_dropout_no_scale, "dropout_backward_no_scale"),
    ("forward_propagation_with_dropout", forward_dropout_times_keep, "dropout_times_keep"),
    ("gradient_check_n", gradient_check_alias_both, "gradcheck_alias_both"),
    ("random_mini_batches", mini_batches_unpaired, "minibatch_unpaired"),
    ("random_mini_batches", mini_batches_unshuffled, "minibatch_no_shuffle"),
    ("update_lr", update_lr_paren, "lr_decay_paren"),
    ("schedule_lr_decay", schedule_no_interval, "lr_decay_no_interval"),
    ("initialize_parameters_deep", init_he, "init_he"),
    ("initialize_parameters_deep", init_uniform, "init_uniform"),
    ("update_parameters_with_adam", adam_first_no_pow, "adam_first_no_pow_t"),
    ("forward_propagation_with_dropout", forward_dropout_over_drop, "dropout_over_drop"),
    ("forward_propagation_with_dropout", forward_dropout_mask_all, "dropout_mask_all"),
    ("linear_backward", linear_backward_no_m, "dw_no_m"),
    ("L_model_forward", L_model_forward_sigmoid_hidden, "sigmoid_hidden"),
    ("compute_cost_with_regularization", l2_cost_no_m, "l2_cost_no_m"),
    ("compute_cost_with_regularization", l2_cost_missing, "l2_cost_missing"),
    ("backward_propagation_with_regularization", backward_l2_double, "l2_grad_double"),
    ("gradient_check_n", gradient_check_one_eps, "gradcheck_no_2eps"),
    ("gradient_check_n", gradient_check_norm, "gradcheck_norm"),
    ("update_parameters", update_no_lr, "update_no_lr"),
    ("initialize_parameters_deep", init_sqrt_n, "init_sqrt_n"),
]


@pytest.mark.parametrize("kind, fn, cause", PLANTED, ids=[c for _, _, c in PLANTED])
def test_planted_bug_is_named(kind, fn, cause):
    report = run(kind, fn)
    assert not report.passed, str(report)
    assert CAUSES[cause] in failed_causes(report), str(report)


@pytest.mark.parametrize("kind, fn, cause", PLANTED[:10], ids=[c for _, _, c in PLANTED[:10]])
def test_planted_bug_is_named_in_float32(kind, fn, cause):
    report = run(kind, fn, dtype="float32")
    assert CAUSES[cause] in failed_causes(report), str(report)


def test_every_cause_has_a_planted_bug():
    assert {cause for _, _, cause in PLANTED} == set(CAUSES)


def test_each_failed_row_of_a_planted_bug_names_a_cause_or_follows_from_one():
    report = run("update_parameters_with_adam", make_adam("t"))
    param_rows = [r for r in report.failures if not r.check.startswith(("v ", "s "))]
    assert param_rows and all(r.diagnosis == CAUSES["adam_t_off_by_one"] for r in param_rows), str(report)


@pytest.mark.parametrize("kind", sorted({k for k, _ in CORRECT}))
def test_name_implies_kind(kind):
    assert infer_kind(kind) == kind
    assert KINDS[kind].course == "dlai"


def test_user_function_that_raises_is_a_failed_row():
    def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999,
                                    epsilon=1e-8):
        raise RuntimeError("not yet")
    report = run("update_parameters_with_adam", update_parameters_with_adam)
    assert not report.passed and "RuntimeError: not yet" in str(report)


ADAM_FILE = '''
import numpy as np


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9, beta2=0.999,
                                epsilon=1e-8):
    L = len(parameters) // 2
    v_corrected = {}
    s_corrected = {}
    for l in range(L):
        for p in ("W", "b"):
            k = "d" + p + str(l + 1)
            v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
            v_corrected[k] = v[k] / (1 - beta1 ** %s)
            s[k] = beta2 * s[k] + (1 - beta2) * np.square(grads[k])
            s_corrected[k] = s[k] / (1 - beta2 ** t)
            parameters[p + str(l + 1)] -= learning_rate * v_corrected[k] / (np.sqrt(s_corrected[k]) + epsilon)
    return parameters, v, s, v_corrected, s_corrected
'''


@pytest.mark.parametrize("t, code", [("t", 0), ("(t + 1)", 1)])
def test_command_line(tmp_path, capsys, t, code):
    path = tmp_path / "optim_student.py"
    path.write_text(ADAM_FILE % t)
    assert main_user(f"{path}:update_parameters_with_adam", []) == code
    out = capsys.readouterr().out
    assert "update_parameters_with_adam" in out
    if code:
        assert CAUSES["adam_t_off_by_one"] in out


SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds"


@pytest.mark.parametrize("func", ["update_parameters_with_gd", "initialize_velocity", "update_parameters_with_momentum",
                                  "initialize_adam", "update_parameters_with_adam"])
def test_seed_003_course_functions_pass(func, capsys):
    assert main_user(f"{SEEDS / 'seed003_optimizers.py'}:{func}", []) == 0, capsys.readouterr().out


BAD_RETURNS = {"None": lambda *a, **k: None, "raises": lambda *a, **k: 1 / 0, "a float": lambda *a, **k: 3.0,
               "NaN": lambda *a, **k: float("nan"), "a pair": lambda *a, **k: (np.zeros(3), np.zeros(2)),
               "a dict": lambda *a, **k: {"W1": 1}, "a string": lambda *a, **k: "x"}


@pytest.mark.parametrize("returns", sorted(BAD_RETURNS))
@pytest.mark.parametrize("kind", sorted({k for k, _ in CORRECT}))
def test_wrong_structures_are_failed_rows_not_crashes(kind, returns):
    report = run(kind, BAD_RETURNS[returns])
    assert not report.passed and str(report) and report.to_dict()["passed"] is False
