"""Stand-in for deeplearning.ai's ``opt_utils`` (Improving Deep Neural Networks, week 2: Optimization methods)."""
import numpy as np

from _dlai import (backward_propagation, course_data, forward_propagation, predict, predict_dec,  # noqa: F401
                   relu, sigmoid, update_parameters)


def initialize_parameters(layer_dims):
    """He initialisation (sqrt(2 / fan-in)), b zero; seeded with 3 as in the course."""
    np.random.seed(3)
    parameters = {}
    L = len(layer_dims)
    for l in range(1, L):
        parameters["W" + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) * np.sqrt(2 / layer_dims[l - 1])
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def compute_cost(a3, Y):
    """The cross-entropy cost summed over the examples (the course's model divides by m per epoch)."""
    logprobs = np.multiply(-np.log(a3), Y) + np.multiply(-np.log(1 - a3), 1 - Y)
    cost_total = np.sum(logprobs)
    return cost_total


def load_params_and_grads(seed=1):
    """Random W1, b1, W2, b2 and their gradients, as the course's test cells use."""
    np.random.seed(seed)
    W1 = np.random.randn(2, 3)
    b1 = np.random.randn(2, 1)
    W2 = np.random.randn(3, 3)
    b2 = np.random.randn(3, 1)
    dW1 = np.random.randn(2, 3)
    db1 = np.random.randn(2, 1)
    dW2 = np.random.randn(3, 3)
    db2 = np.random.randn(3, 1)
    return W1, b1, W2, b2, dW1, db1, dW2, db2


def load_dataset():
    course_data("opt_utils.load_dataset")
