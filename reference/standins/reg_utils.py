"""Stand-in for deeplearning.ai's ``reg_utils`` (Improving Deep Neural Networks, week 1: Regularization)."""
import numpy as np

from _dlai import (backward_propagation, course_data, forward_propagation, predict, predict_dec,  # noqa: F401
                   relu, sigmoid, update_parameters)


def initialize_parameters(layer_dims):
    """W scaled by 1/sqrt(fan-in), b zero; seeded with 3 as in the course."""
    np.random.seed(3)
    parameters = {}
    L = len(layer_dims)
    for l in range(1, L):
        parameters["W" + str(l)] = np.random.randn(layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def compute_cost(a3, Y):
    """The cross-entropy cost, averaged over the m examples."""
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(a3), Y) + np.multiply(-np.log(1 - a3), 1 - Y)
    cost = 1. / m * np.nansum(logprobs)
    return cost


def load_2D_dataset():
    course_data("reg_utils.load_2D_dataset")


def load_dataset():
    course_data("reg_utils.load_dataset")
