"""Save and resume training: model, optimizer and scheduler state in one ``.npz`` file.

The file holds only arrays and JSON text, and is read with ``allow_pickle=False``: loading runs no code.
A SHA-256 digest over every entry is stored with it, so a truncated or tampered file is refused with a
``ValueError`` — and a failed load leaves the model, optimizer and scheduler exactly as they were.

Layout: ``model/<state_dict key>``, ``optim/state/<index>/<name>``, ``optim/param_groups`` (JSON),
``scheduler`` (JSON), ``meta`` (JSON: format, version, digest, and the optimizer's and scheduler's class names,
which ``load`` checks against the objects it is given).

Not saved: the ``numpy.random.Generator`` of a ``Dropout`` (or of anything else). A run that must resume
bit-identically saves ``layer.rng.bit_generator.state`` itself and restores it after ``load``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from typing import Any, BinaryIO, Dict, Optional, Tuple, Union

import numpy as np

from .nn import Module
from .optim import Optimizer
from .optim.lr_scheduler import LRScheduler

FORMAT = "handnn-checkpoint"
VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]
FileLike = Union[PathLike, BinaryIO]


def _name(path: FileLike) -> str:
    """The file's name for error messages (a file object has none: its repr)."""
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)


def _to_json(value: Any) -> Any:
    """JSON-safe form of scheduler/optimizer hyper-parameters (tuples and Counters tagged to come back)."""
    if isinstance(value, Counter):
        return {"__counter__": [[_to_json(k), v] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a checkpoint")


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if "__counter__" in value:
            return Counter({_from_json(k): v for k, v in value["__counter__"]})
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {_from_json(k): _from_json(v) for k, v in value["__dict__"]}
    return value


def _text(obj: Any) -> np.ndarray:
    return np.array(json.dumps(_to_json(obj), sort_keys=True, allow_nan=True))


def _digest(entries: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(entries):
        array = np.ascontiguousarray(entries[key])
        h.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def save(path: FileLike, model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
         scheduler: Optional[LRScheduler] = None) -> None:
    """Write the states of ``model``, ``optimizer`` and ``scheduler`` (any of them) to ``path`` (.npz)."""
    entries: Dict[str, np.ndarray] = {}
    if model is not None:
        entries.update({f"model/{k}": v for k, v in model.state_dict().items()})
    if optimizer is not None:
        sd = optimizer.state_dict()
        for index, state in sd["state"].items():
            entries.update({f"optim/state/{index}/{name}": np.asarray(v) for name, v in state.items()})
        entries["optim/param_groups"] = _text(sd["param_groups"])
    if scheduler is not None:
        entries["scheduler"] = _text(scheduler.state_dict())
    meta = {"format": FORMAT, "version": VERSION, "digest": _digest(entries)}
    # the classes, so a load into a different optimizer/scheduler is refused instead of mixing two layouts
    # (an SGD state "loads" into Adam, then its first step fails on the missing 'step')
    if optimizer is not None:
        meta["optimizer"] = type(optimizer).__name__
    if scheduler is not None:
        meta["scheduler"] = type(scheduler).__name__
    if isinstance(path, (str, os.PathLike)):
        with open(path, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **entries)
    else:  # a binary file object (``to_bytes`` writes into a BytesIO)
        np.savez(path, meta=np.array(json.dumps(meta)), **entries)


def _read(path: FileLike) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Every entry of the file and its metadata, after checking the format and digest; ``ValueError`` for anything
    unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            entries = {key: data[key] for key in data.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # the file cannot be opened: not a statement about its content
    except Exception as exc:  # noqa: BLE001
        # A damaged zip surfaces as whatever the damaged field trips: BadZipFile (CRC, sizes), EOFError,
        # NotImplementedError (a flipped compression method or version byte), ValueError (npy header),
        # AttributeError (a plain .npy file has no members)... all mean the same thing here.
        raise ValueError(f"{_name(path)} is not a readable handnn checkpoint (truncated or corrupt): "
                         f"{type(exc).__name__}: {exc}") from exc
    meta_text = entries.pop("meta", None)
    try:
        meta = json.loads(str(meta_text)) if meta_text is not None else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{_name(path)}: the checkpoint's metadata is corrupt") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{_name(path)}: the checkpoint's metadata is corrupt (got {meta!r})")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{_name(path)} is not a {FORMAT} version {VERSION} file (got {meta or 'no metadata'})")
    if meta.get("digest") != _digest(entries):
        raise ValueError(f"{_name(path)}: checksum mismatch — the checkpoint was modified or damaged")
    return entries, meta


def load(path: FileLike, model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
         scheduler: Optional[LRScheduler] = None) -> None:
    """Restore the given objects from ``path``; all of them or none (a failure restores what was changed)."""
    entries, meta = _read(path)
    for role, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        saved = meta.get(role)
        if obj is not None and saved is not None and saved != type(obj).__name__:
            raise ValueError(f"{_name(path)} holds the state of {role} class {saved}, "
                             f"but the {role} given is a {type(obj).__name__}")
    backup = (model.state_dict() if model is not None else None,
              optimizer.state_dict() if optimizer is not None else None,
              scheduler.state_dict() if scheduler is not None else None)
    try:
        if model is not None:
            model.load_state_dict({k[len("model/"):]: v for k, v in entries.items() if k.startswith("model/")})
        if optimizer is not None:
            optimizer.load_state_dict(_optimizer_state(entries, path))
        if scheduler is not None:
            if "scheduler" not in entries:
                raise ValueError(f"{_name(path)} holds no scheduler state")
            scheduler.load_state_dict(_from_json(json.loads(str(entries["scheduler"]))))
    except Exception:
        model_sd, optim_sd, sched_sd = backup
        if model is not None:
            model.load_state_dict(model_sd)
        if optimizer is not None:
            optimizer.load_state_dict(optim_sd)
        if scheduler is not None:
            scheduler.load_state_dict(sched_sd)
        raise


def _optimizer_state(entries: Dict[str, np.ndarray], path: FileLike) -> Dict[str, Any]:
    if "optim/param_groups" not in entries:
        raise ValueError(f"{_name(path)} holds no optimizer state")
    state: Dict[int, Dict[str, np.ndarray]] = {}
    for key, value in entries.items():
        if key.startswith("optim/state/"):
            _, _, index, name = key.split("/", 3)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": _from_json(json.loads(str(entries["optim/param_groups"])))}


def to_bytes(model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
             scheduler: Optional[LRScheduler] = None) -> bytes:
    """The checkpoint as bytes (for tests and in-memory snapshots)."""
    buf = io.BytesIO()
    save(buf, model, optimizer, scheduler)  # type: ignore[arg-type]
    return buf.getvalue()
