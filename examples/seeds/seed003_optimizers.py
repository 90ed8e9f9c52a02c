"""Seed 003 (``../shared/seeds/003_486b6e433aa40ccb.txt``, "Initialization, Gradient Checking and Optimization"
lab report, deeplearning.ai's assignment): its gradient-descent, momentum and Adam updates, transcribed faithfully.

The report's code is OCR'd: ``str(1+1)`` is ``str(l+1)`` (the letter l), ``np. zeros`` is ``np.zeros``, and the
line ``v = v["db" + str(1+1)] = v["db" + str(1+1)]/(1-(beta1)**t)`` is ``v_corrected["db" + str(l+1)] = ...`` (as
its dW twin above it); those are read back, nothing else is changed. The report omits the ``def`` lines, the
layer loop, the returns and Adam's final parameter update (deeplearning.ai's
``W -= lr * v_corrected / (sqrt(s_corrected) + epsilon)``): those are marked ``# glue``.

deeplearning.ai keeps parameters in dicts (``W1``, ``b1``, ...); the checker calls CS231n's
``update(w, dw, config) -> (next_w, config)``. The adapters at the end (``sgd``, ``sgd_momentum``, ``adam``, all
glue) wrap one weight matrix in those dicts and keep the velocity / moments in ``config`` under CS231n's keys.

Run it against torch::

    handnn-verify --user examples/seeds/seed003_optimizers.py:sgd_momentum --momentum-style dlai
    handnn-verify --user examples/seeds/seed003_optimizers.py:adam

What the checker finds: the updates equal torch's SGD(lr·(1−β), momentum=β) and Adam; read as CS231n momentum
(``--momentum-style cs231n``) the trajectory differs and the diagnosis names the moving-average convention.
"""
import numpy as np


def update_parameters_with_gd(parameters, grads, learning_rate):  # glue: the def line and the loop bounds
    L = len(parameters) // 2
    for l in range(L):
        ### START CODE HERE ### (approx. 2 lines)
        parameters["W" + str(l+1)] = parameters["W" + str(l+1)] - learning_rate*grads["dW" + str(l+1)]
        parameters["b" + str(l+1)] = parameters["b" + str(l+1)] -learning_rate*grads["db" + str(l+1)]
        ### END CODE HERE ###
    return parameters  # glue: the return line


def initialize_velocity(parameters):  # glue: the def line and the loop bounds
    L = len(parameters) // 2
    v = {}
    for l in range(L):
        ### START CODE HERE ### (approx. 2 lines)
        v["dW" + str(l+1)] = np.zeros(parameters['W' + str(l+1)].shape)
        v["db" + str(l+1)] = np.zeros(parameters['b' + str(l+1)].shape)
        ### END CODE HERE ###
    return v  # glue: the return line


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):  # glue: def line, loop bounds
    L = len(parameters) // 2
    for l in range(L):
        ### START CODE HERE ### (approx. 4 lines)

        # compute velocities

        v["dW" + str(l+1)] = beta*v["dW" + str(l + 1)]+(1-beta)*grads['dW' + str(l+1)]

        v["db" + str(l+1)] = beta*v["db" + str(l + 1)]+(1-beta)*grads['db' + str(l+1)]

        # update parameters

        parameters["W" + str(l+1)] = parameters['W' + str(l+1)] - learning_rate*v["dW" + str(l + 1)]

        parameters["b" + str(l+1)] = parameters['b' + str(l+1)] - learning_rate*v["db" + str(l + 1)]

        ### END CODE HERE ###
    return parameters, v  # glue: the return line


def initialize_adam(parameters):  # glue: the def line and the loop bounds
    L = len(parameters) // 2
    v = {}
    s = {}
    for l in range(L):
        ### START CODE HERE ### (approx. 4 lines)

        v["dW" + str(l+1)] = np.zeros(parameters["W" + str(l+1)].shape)

        v["db" + str(l+1)] = np.zeros(parameters["b" + str(l+1)].shape)

        s["dW" + str(l+1)] = np.zeros(parameters["W" + str(l+1)].shape)

        s["db" + str(l+1)] = np.zeros(parameters["b" + str(l+1)].shape)

        ### END CODE HERE ###
    return v, s  # glue: the return line


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01,  # glue: the def line,
                                beta1=0.9, beta2=0.999, epsilon=1e-8):           # deeplearning.ai's defaults
    L = len(parameters) // 2  # glue: the loop bounds and the corrected-moment dicts
    v_corrected = {}
    s_corrected = {}
    for l in range(L):
        ### START CODE HERE ### (approx. 2 lines)
        v["dW" + str(l+1)] = beta1*v["dW" + str(l+1)] + (1-beta1)*grads['dW' + str(l+1)]
        v["db" + str(l+1)] = beta1*v["db" + str(l+1)] + (1-beta1)*grads['db' + str(l+1)]
        ### END CODE HERE ###
        # Compute bias-corrected first moment estimate. Inputs: "v, betal, t". Output: "v correct
        ### START CODE HERE ### (approx. 2 lines)
        v_corrected["dW" + str(l+1)] = v["dW" + str(l+1)]/(1-(beta1)**t)
        v_corrected["db" + str(l+1)] = v["db" + str(l+1)]/(1-(beta1)**t)
        ### END CODE HERE ###
        # Moving average of the squared gradients. Inputs: "s, grads, beta2". Output: "s".
        ### START CODE HERE ### (approx. 2 lines)
        s["dW" + str(l+1)] = beta2*s["dW" + str(l+1)] + (1-beta2)*(grads['dW' + str(l+1)]**2)
        s["db" + str(l+1)] = beta2*s["db" + str(l + 1)] + (1-beta2)*(grads['db' + str(l+1)]**2)
        ### END CODE HERE ###
        # Compute bias-corrected second raw moment estimate. Inputs: "s, beta2, t". Output: "s_co.
        ### START CODE HERE ### (approx. 2 lines)
        s_corrected["dW" + str(l+1)] = s["dW" + str(l+1)]/(1-(beta2)**t)
        s_corrected["db" + str(l+1)] = s["db" + str(l+1)]/(1-(beta2)**t)
        ### END CODE HERE ###
        # glue: the parameter update is not in the report; deeplearning.ai's two lines
        parameters["W" + str(l+1)] = parameters["W" + str(l+1)] - learning_rate*v_corrected["dW" + str(l+1)]/(
            np.sqrt(s_corrected["dW" + str(l+1)]) + epsilon)
        parameters["b" + str(l+1)] = parameters["b" + str(l+1)] - learning_rate*v_corrected["db" + str(l+1)]/(
            np.sqrt(s_corrected["db" + str(l+1)]) + epsilon)
    return parameters, v, s  # glue: the return line


# ---- glue: CS231n's update(w, dw, config) -> (next_w, config) around the functions above ------------------------
def _one_layer(w, dw):
    """deeplearning.ai's dicts for one weight matrix (an empty bias, so L = len(parameters) // 2 = 1)."""
    return {"W1": w, "b1": np.zeros(0, w.dtype)}, {"dW1": dw, "db1": np.zeros(0, w.dtype)}


def sgd(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    parameters, grads = _one_layer(w, dw)
    parameters = update_parameters_with_gd(parameters, grads, config["learning_rate"])
    return parameters["W1"], config


def sgd_momentum(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    parameters, grads = _one_layer(w, dw)
    v = config.get("_v") or initialize_velocity(parameters)
    parameters, v = update_parameters_with_momentum(parameters, grads, v, config["momentum"], config["learning_rate"])
    config["_v"], config["velocity"] = v, v["dW1"]
    return parameters["W1"], config


def adam(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    parameters, grads = _one_layer(w, dw)
    v, s = config.get("_vs") or initialize_adam(parameters)
    config["t"] = config.get("t", 0) + 1  # deeplearning.ai's training loop: t = t + 1 before the update
    parameters, v, s = update_parameters_with_adam(parameters, grads, v, s, config["t"], config["learning_rate"],
                                                   config["beta1"], config["beta2"], config["epsilon"])
    config["_vs"], config["m"], config["v"] = (v, s), v["dW1"], s["dW1"]
    return parameters["W1"], config
