"""``checkpoint.save`` to a path is atomic, numpy only: a save that fails or is killed never damages the previous
checkpoint.

Every test saves a good checkpoint of a trained ``Linear, BatchNorm1d, ReLU, Linear`` model with Adam and StepLR (so
model, optimizer and scheduler states are all in it), records its bytes, trains one more step, and then makes the
second save fail: a writer that raises part-way (disk full, Ctrl-C), a file-size limit in a child process (EFBIG),
a child killed with SIGKILL while it writes. Afterwards the old file must be bit-identical, still load into fresh
objects with the first save's states, and (except after SIGKILL) no temporary file may remain.

A save killed outright cannot clean up: its ``.<name>.<random>.tmp`` stays beside the checkpoint and can be deleted.

The failing writer wraps the file object handed to ``np.savez`` (the call that writes the archive), so the same
tests run against any ``save`` that writes through ``np.savez`` — the one that wrote into the target in place fails
all of them.
"""
from __future__ import annotations

import copy
import errno
import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

import handnn
from handnn import checkpoint, nn, optim
from handnn.optim import lr_scheduler

NAME = "ck.npz"
BATCH = 8


def _trained(rng: np.random.Generator, hidden: int = 4, steps: int = 2) -> Tuple[nn.Module, Any, Any]:
    """A model, Adam and StepLR after ``steps`` training steps on data drawn from ``rng``."""
    model = nn.Sequential(nn.Linear(3, hidden, rng=rng), nn.BatchNorm1d(hidden), nn.ReLU(),
                          nn.Linear(hidden, 2, rng=rng))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(steps):
        _step(rng, model, opt, sched)
    return model, opt, sched


def _step(rng: np.random.Generator, model: nn.Module, opt: Any, sched: Any) -> None:
    loss_fn = nn.CrossEntropyLoss()
    opt.zero_grad()
    loss_fn(model(rng.normal(size=(BATCH, 3))), rng.integers(0, 2, BATCH))
    model.backward(loss_fn.backward())
    opt.step()
    sched.step()


def _states(model: nn.Module, opt: Any, sched: Any) -> Dict[str, Any]:
    return copy.deepcopy({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict()})


def _same(a: Any, b: Any) -> bool:
    """Bit-identical: arrays by dtype, shape and value; containers recursively; everything else by ``==``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class Previous:
    """The first, good checkpoint at ``path``: its bytes and the states it holds; ``objects`` trained one step
    further, so a second save would write different content."""

    def __init__(self, directory: Path, rng: np.random.Generator) -> None:
        self.path = directory / NAME
        self.objects = _trained(rng)
        checkpoint.save(self.path, *self.objects)
        self.data = self.path.read_bytes()
        self.states = _states(*self.objects)
        _step(rng, *self.objects)
        assert not _same(_states(*self.objects), self.states), "the extra step must change the states"

    def assert_intact(self, seed: int) -> None:
        """Bit-identical, and loads into fresh objects (other initial values) with the first save's states."""
        assert self.path.read_bytes() == self.data, "the previous checkpoint's bytes changed"
        fresh = _trained(np.random.default_rng(seed + 1), steps=1)
        checkpoint.load(self.path, *fresh)
        assert _same(_states(*fresh), self.states)


@pytest.fixture
def previous(tmp_path, rng) -> Previous:
    return Previous(tmp_path, rng)


def _others(directory: Path) -> List[str]:
    """Every name in ``directory`` except the checkpoint's (temporary files included: they start with a dot)."""
    return sorted(p.name for p in directory.iterdir() if p.name != NAME)


# ---- 1. the writer fails part-way -----------------------------------------------------------------------------------
class _FailingFile:
    """A file object that takes ``limit`` bytes, then raises ``error`` (the bytes up to the limit are written, as on
    a disk that fills up). ``once``: later writes go through (an interrupt); otherwise they raise again (still full)."""

    def __init__(self, fh: Any, limit: int, error: Callable[[], BaseException], once: bool) -> None:
        self.fh, self.limit, self.error, self.once, self.written = fh, limit, error, once, 0

    def write(self, data: Any) -> int:
        data = memoryview(data).cast("B")
        room = self.limit - self.written
        if len(data) > room:
            if room > 0:
                self.fh.write(data[:room])
                self.written += room
            if self.once:
                self.limit = sys.maxsize
            raise self.error()
        self.written += len(data)
        return self.fh.write(data)

    def __getattr__(self, name: str) -> Any:  # tell, seek, flush... of the real file
        return getattr(self.fh, name)


ERRORS = {
    "ENOSPC": (lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), False),
    "KeyboardInterrupt": (KeyboardInterrupt, True),
}


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.999], ids=lambda f: f"at{f:g}")
@pytest.mark.parametrize("error", list(ERRORS))
def test_writer_failing_part_way_keeps_the_previous_checkpoint(previous, monkeypatch, tmp_path, seed, error,
                                                               fraction):
    """The archive writer raises after ``fraction`` of the new checkpoint's bytes (0: before the first byte; 0.999:
    in the zip's central directory): the error reaches the caller, the previous file is intact, no temporary file."""
    make_error, once = ERRORS[error]
    limit = int(len(checkpoint.to_bytes(*previous.objects)) * fraction)
    real_savez = np.savez
    monkeypatch.setattr(np, "savez",
                        lambda file, *args, **kwds: real_savez(_FailingFile(file, limit, make_error, once), *args,
                                                               **kwds))
    expected = OSError if error == "ENOSPC" else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        checkpoint.save(previous.path, *previous.objects)
    if error == "ENOSPC":
        assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    previous.assert_intact(seed)
    assert _others(tmp_path) == []


# ---- child processes ------------------------------------------------------------------------------------------------
# A child builds a bigger model the same way (hidden units from argv), so its checkpoint is larger than the first.
CHILD_SETUP = """
import os, sys
import numpy as np
from handnn import checkpoint, nn, optim
from handnn.optim import lr_scheduler

def trained(seed, hidden):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(3, hidden, rng=rng), nn.BatchNorm1d(hidden), nn.ReLU(),
                          nn.Linear(hidden, 2, rng=rng))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(rng.normal(size=(8, 3))), rng.integers(0, 2, 8))
    model.backward(loss_fn.backward())
    opt.step()
    sched.step()
    return model, opt, sched

path, seed, hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
objects = trained(seed, hidden)
size = len(checkpoint.to_bytes(*objects))
"""


def _child(script: str, *args: Any) -> subprocess.Popen:
    """``python -c CHILD_SETUP + script args...``, importing the same handnn as this process."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(handnn.__file__).resolve().parents[1])] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.Popen([sys.executable, "-c", CHILD_SETUP + script, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- 2. a file-size limit -------------------------------------------------------------------------------------------
FSIZE_CHILD = """
import resource, signal
limit = size // 2
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
try:
    checkpoint.save(path, *objects)
except OSError as exc:
    outcome = exc.errno
else:
    outcome = "saved"
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print(size, limit, outcome)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
def test_file_size_limit_keeps_the_previous_checkpoint(previous, tmp_path, seed):
    """A child under RLIMIT_FSIZE of half its checkpoint's size saves over the file: EFBIG, the previous file is
    intact, no temporary file."""
    child = _child(FSIZE_CHILD, previous.path, seed + 2, 512)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    size, limit, outcome = out.split()
    assert int(limit) < int(size)
    assert outcome == str(errno.EFBIG), f"the save should fail with EFBIG, got {outcome}"
    previous.assert_intact(seed)
    assert _others(tmp_path) == []


# ---- 3. SIGKILL while writing ---------------------------------------------------------------------------------------
PAUSE_CHILD = """
import time
marker = sys.argv[4]

class Pausing:
    # after half the checkpoint, flush it to the file, tell the parent the file's size (marker), wait to be killed
    def __init__(self, fh):
        self.fh, self.written = fh, 0
    def write(self, data):
        n = self.fh.write(data)
        self.written += len(memoryview(data).cast("B"))
        if self.written >= size // 2:
            self.fh.flush()
            with open(marker + ".part", "w") as note:
                note.write(f"{os.fstat(self.fh.fileno()).st_size} {size}")
            os.replace(marker + ".part", marker)
            time.sleep(600)
        return n
    def __getattr__(self, name):
        return getattr(self.fh, name)

real_savez = np.savez
np.savez = lambda file, *args, **kwds: real_savez(Pausing(file), *args, **kwds)
checkpoint.save(path, *objects)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_during_save_keeps_the_previous_checkpoint(previous, tmp_path, seed):
    """A child saving a ~7 MB checkpoint over the file is SIGKILLed half-way through writing it (it pauses there,
    so the kill always lands mid-write): the previous file is intact. The temporary file stays behind, named
    ``.ck.npz.<random>.tmp``, holding the bytes written so far."""
    marker = tmp_path.parent / f"{tmp_path.name}-paused"  # outside the checkpoint's directory
    child = _child(PAUSE_CHILD, previous.path, seed + 2, 32768, marker)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"the child ended (status {child.returncode}) before pausing: {child.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the child did not reach the middle of its save within 60 s")
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    on_disk, size = map(int, marker.read_text().split())
    assert len(previous.data) < on_disk < size
    previous.assert_intact(seed)
    leftovers = _others(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{NAME}.") and leftovers[0].endswith(".tmp"), leftovers
    assert (tmp_path / leftovers[0]).stat().st_size == on_disk


# ---- 4. the success path --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_save_replaces_the_file(previous, tmp_path, seed, as_str):
    """Saving over the checkpoint writes the new states (they load), under the exact name, no temporary left."""
    checkpoint.save(str(previous.path) if as_str else previous.path, *previous.objects)
    assert previous.path.read_bytes() != previous.data
    fresh = _trained(np.random.default_rng(seed + 1), steps=1)
    checkpoint.load(previous.path, *fresh)
    assert _same(_states(*fresh), _states(*previous.objects))
    assert _others(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=oct)
def test_replacing_keeps_the_mode(previous, mode):
    os.chmod(previous.path, mode)
    checkpoint.save(previous.path, *previous.objects)
    assert stat.S_IMODE(previous.path.stat().st_mode) == mode


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_new_file_gets_the_mode_open_gives(tmp_path, rng, umask):
    """A new checkpoint has ``0o666 & ~umask``, the mode ``open(path, "wb")`` gives."""
    objects = _trained(rng)
    old_umask = os.umask(umask)
    try:
        checkpoint.save(tmp_path / NAME, *objects)
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / NAME).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / NAME).stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_exact_name_without_npz(tmp_path, rng):
    """No ``.npz`` is appended (``np.savez`` given a str path would append it)."""
    objects = _trained(rng)
    checkpoint.save(str(tmp_path / "ck"), *objects)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    fresh = _trained(np.random.default_rng(1), steps=1)
    checkpoint.load(tmp_path / "ck", *fresh)
    assert _same(_states(*fresh), _states(*objects))


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlink_target_is_replaced(previous, tmp_path, seed):
    """Saving through a symlink replaces the file it points to; the link stays a link to it."""
    link = tmp_path / "link.npz"
    link.symlink_to(NAME)
    checkpoint.save(link, *previous.objects)
    assert link.is_symlink() and os.readlink(link) == NAME
    fresh = _trained(np.random.default_rng(seed + 1), steps=1)
    checkpoint.load(previous.path, *fresh)
    assert _same(_states(*fresh), _states(*previous.objects))
    assert _others(tmp_path) == ["link.npz"]


def test_file_objects_and_to_bytes(rng):
    """A binary file object is written into, as before; ``to_bytes`` gives the same kind of archive."""
    objects = _trained(rng)
    buffer = io.BytesIO()
    checkpoint.save(buffer, *objects)
    for data in (buffer.getvalue(), checkpoint.to_bytes(*objects)):
        fresh = _trained(np.random.default_rng(1), steps=1)
        checkpoint.load(io.BytesIO(data), *fresh)
        assert _same(_states(*fresh), _states(*objects))


def test_missing_directory(tmp_path, rng):
    """A directory that does not exist: FileNotFoundError naming the path asked for; nothing is created."""
    path = tmp_path / "absent" / NAME
    with pytest.raises(FileNotFoundError, match="absent"):
        checkpoint.save(path, *_trained(rng))
    assert list(tmp_path.iterdir()) == []


def test_directory_target_refused(tmp_path, rng):
    """A path that is a directory: IsADirectoryError (as ``open(path, "wb")``), nothing written."""
    with pytest.raises(IsADirectoryError):
        checkpoint.save(tmp_path, *_trained(rng))
    assert list(tmp_path.iterdir()) == []


def test_read_only_checkpoint_refused(previous, tmp_path, monkeypatch):
    """A checkpoint this process may not write is refused with PermissionError (as ``open(path, "wb")`` refused it),
    unchanged. The permission is what ``os.access`` reports: root may write a 0o444 file, so the test makes
    ``os.access`` answer as it does for an ordinary user, instead of depending on who runs it."""
    os.chmod(previous.path, 0o444)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode & os.W_OK and os.path.samefile(
        path, previous.path) else real_access(path, mode, **kw))
    with pytest.raises(PermissionError):
        checkpoint.save(previous.path, *previous.objects)
    assert previous.path.read_bytes() == previous.data
    assert _others(tmp_path) == []
