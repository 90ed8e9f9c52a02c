"""handnn: neural-network components in plain NumPy with hand-written backward passes, equal to PyTorch.

>>> import numpy as np
>>> from handnn import nn
>>> layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
>>> layer(np.ones((4, 3))).shape
(4, 2)
"""
from . import functional, gradcheck, init, nn

__version__ = "0.1.0"
__all__ = ["functional", "gradcheck", "init", "nn", "__version__"]
