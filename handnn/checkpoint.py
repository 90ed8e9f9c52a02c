"""Save and resume training: model, optimizer and scheduler state in one ``.npz`` file.

The file holds only arrays and JSON text, and is read with ``allow_pickle=False``: loading runs no code.
A SHA-256 digest over every entry is stored with it, so a truncated or tampered file is refused with a
``ValueError`` — and a failed load leaves the model, optimizer and scheduler exactly as they were.

Layout: ``model/<state_dict key>``, ``optim/state/<index>/<name>``, ``optim/param_groups`` (JSON),
``scheduler`` (JSON), ``meta`` (JSON: format, version, digest).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections import Counter
from typing import Any, Dict, Optional, Union

import numpy as np

from .nn import Module
from .optim import Optimizer
from .optim.lr_scheduler import LRScheduler

FORMAT = "handnn-checkpoint"
VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]


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


def save(path: PathLike, model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
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
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **entries)


def _read(path: PathLike) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            entries = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{os.fspath(path)!s} is not a readable handnn checkpoint (truncated or corrupt): {exc}") \
            from exc
    meta_text = entries.pop("meta", None)
    try:
        meta = json.loads(str(meta_text)) if meta_text is not None else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{os.fspath(path)!s}: the checkpoint's metadata is corrupt") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{os.fspath(path)!s} is not a {FORMAT} version {VERSION} file (got {meta or 'no metadata'})")
    if meta.get("digest") != _digest(entries):
        raise ValueError(f"{os.fspath(path)!s}: checksum mismatch — the checkpoint was modified or damaged")
    return entries


def load(path: PathLike, model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
         scheduler: Optional[LRScheduler] = None) -> None:
    """Restore the given objects from ``path``; all of them or none (a failure restores what was changed)."""
    entries = _read(path)
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
                raise ValueError(f"{os.fspath(path)!s} holds no scheduler state")
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


def _optimizer_state(entries: Dict[str, np.ndarray], path: PathLike) -> Dict[str, Any]:
    if "optim/param_groups" not in entries:
        raise ValueError(f"{os.fspath(path)!s} holds no optimizer state")
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
