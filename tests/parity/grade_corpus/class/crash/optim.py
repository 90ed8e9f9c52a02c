"""A correct CS231n assignment-2 optim.py, written compactly."""
import numpy as np


def sgd(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    return w - config["learning_rate"] * dw, config


def sgd_momentum(w, dw, config=None):
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config["velocity"] = config["momentum"] * config.get("velocity", np.zeros_like(w)) - config["learning_rate"] * dw
    return w + config["velocity"], config


def rmsprop(w, dw, config=None):
    config = {} if config is None else config
    for key, value in (("learning_rate", 1e-2), ("decay_rate", 0.99), ("epsilon", 1e-8)):
        config.setdefault(key, value)
    cache = config.get("cache", np.zeros_like(w))
    cache = config["decay_rate"] * cache + (1 - config["decay_rate"]) * dw * dw
    config["cache"] = cache
    return w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"]), config


def adam(w, dw, config=None):
    config = {} if config is None else config
    for key, value in (("learning_rate", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-8), ("t", 0)):
        config.setdefault(key, value)
    b1, b2 = config["beta1"], config["beta2"]
    t = config["t"] = config["t"] + 1
    m = config["m"] = b1 * config.get("m", np.zeros_like(w)) + (1 - b1) * dw
    v = config["v"] = b2 * config.get("v", np.zeros_like(w)) + (1 - b2) * dw ** 2
    step = config["learning_rate"] * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + config["epsilon"])
    return w - step, config
