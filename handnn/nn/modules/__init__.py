from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import Sequential
from .dropout import Dropout
from .flatten import Flatten
from .linear import Identity, Linear
from .loss import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm

__all__ = ["Module", "Sequential", "Linear", "Identity", "Flatten", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
           "GELU", "Softmax", "LogSoftmax", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout",
           "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss",
           "CrossEntropyLoss"]
