"""Save and resume training: model, optimizer and scheduler state in one ``.npz`` file.

The file holds only arrays and JSON text, and is read with ``allow_pickle=False``: loading runs no code.
A SHA-256 digest over every entry is stored with it, so a truncated or tampered file is refused with a
``ValueError`` — and a failed load leaves the model, optimizer and scheduler exactly as they were.

Layout: ``model/<state_dict key>``, ``optim/state/<index>/<name>``, ``optim/param_groups`` (JSON),
``scheduler`` (JSON), ``meta`` (JSON: format, version, digest, and the optimizer's and scheduler's class names,
which ``load`` checks against the objects it is given).

Saving to a path never damages the previous checkpoint: ``save`` writes a temporary file ``.<name>.<random>.tmp``
in the same directory, syncs it to disk and renames it over the target, so a save that fails or is killed leaves the
old file intact (a process killed outright can leave that temporary file behind: it is safe to delete).

Not saved: the ``numpy.random.Generator`` of a ``Dropout`` (or of anything else). A run that must resume
bit-identically saves ``layer.rng.bit_generator.state`` itself and restores it after ``load``.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import stat
from collections import Counter
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple, Union

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


def _create_temporary(directory: str, name: str) -> Tuple[int, str]:
    """A new, uniquely named ``.<name>.<random>.tmp`` in ``directory``, opened for writing: (descriptor, path).

    Created with mode 0o666 like ``open(path, "wb")``, so the process umask applies in the kernel (``mkstemp``'s
    0o600 would need the umask, which can only be read by setting it: a race with other threads)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    if len(os.fsencode(name)) > 200:  # keep the temporary's name within the 255 bytes a file system allows
        name = name[:50]
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", os.path.join(directory, f".{name}.*.tmp"))


def _fsync_directory(directory: str) -> None:
    """Make the rename durable. Windows cannot open a directory (its file systems journal the rename): skipped."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it and rename it onto ``path``; on any error (or
    ``KeyboardInterrupt``) remove the temporary file, leave ``path`` as it was and re-raise."""
    target = os.path.realpath(path)  # a symlink: its target is replaced, the link stays
    directory, name = os.path.split(target)
    try:
        old: Optional[os.stat_result] = os.stat(target)
    except FileNotFoundError:
        old = None  # a new file: 0o666 & ~umask, from _create_temporary
    # what open(path, "wb") refused, save refuses before writing anything: a directory, and a file we may not
    # write (a checkpoint made read-only to protect it)
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    if old is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
    try:
        fd, temporary = _create_temporary(directory, name)
    except OSError as exc:  # e.g. the directory does not exist: name the file asked for, not the temporary
        exc.filename = os.fspath(path)
        raise
    try:
        try:
            fh = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with fh:
            if old is not None:  # replacing a file: keep its permissions
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                else:
                    os.chmod(temporary, stat.S_IMODE(old.st_mode))
            write(fh)
            fh.flush()
            os.fsync(fd)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def save(path: FileLike, model: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
         scheduler: Optional[LRScheduler] = None) -> None:
    """Write the states of ``model``, ``optimizer`` and ``scheduler`` (any of them) to ``path`` (.npz).

    ``path`` is the file's exact name (no ``.npz`` is appended), or a binary file object that is written into.
    A path is replaced atomically: if the save fails (disk full, file-size limit, an exception, the process killed),
    the previous file at ``path`` is left untouched.

    Details: the new checkpoint is written to ``.<name>.<random>.tmp`` in the same directory, fsynced, renamed over
    ``path``, and the directory fsynced. Replacing keeps the old file's permission bits (not its owner; a hard link
    to the old file keeps the old content); a new file gets ``0o666 & ~umask``, as from ``open(path, "wb")``. A
    symlink is followed: its target is replaced, the link kept. A directory or a file we may not write is refused
    (IsADirectoryError, PermissionError) as ``open`` refused it."""
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
        _replace_atomically(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)), **entries))
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
