"""Layers as torch names them: thin modules over :mod:`handnn.functional`."""
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules_all
from . import utils
from .parameter import Parameter

__all__ = ["Parameter", *_modules_all]
