"""``handnn.checkpoint``, numpy only: resume bit-identically, a format that loads with ``allow_pickle=False``, and
damaged, tampered or mismatched files refused with a clear error that leaves every object untouched.

The model is ``Sequential(Linear, BatchNorm1d, ReLU, Dropout, Linear)``, so the checkpoint carries BatchNorm's
running statistics and an optimizer state for every parameter.

Dropout's ``numpy.random.Generator`` is deliberately NOT in the checkpoint (torch's ``state_dict`` does not hold the
RNG either: that is ``torch.get_rng_state()``'s job). The resume tests therefore save the Dropout's
``rng.bit_generator.state`` next to the checkpoint and put it into the fresh Dropout after ``load`` — what a training
script that wants a bit-identical resume has to do — and ``test_resume_without_the_rng_state_differs`` shows that
skipping it changes the masks, so this is a real part of the resume, not a formality.
"""
from __future__ import annotations

import copy
import io
import json
import zipfile
from collections import Counter
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

from handnn import checkpoint, nn, optim
from handnn.optim import lr_scheduler

D, H, K, BATCH, N_DATA = 3, 7, 2, 16, 48
STEPS, RESUME_AT = 40, 17


def _model(rng: np.random.Generator, hidden: int = H) -> nn.Sequential:
    dropout = nn.Dropout(0.25, rng=np.random.default_rng(rng.integers(2**63)))
    return nn.Sequential(nn.Linear(D, hidden, bias=False, rng=rng), nn.BatchNorm1d(hidden), nn.ReLU(), dropout,
                         nn.Linear(hidden, K, rng=rng))


SETUPS: Dict[str, Tuple[Callable, Callable]] = {
    "Adam-amsgrad+StepLR": (lambda ps: optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=1e-3),
                            lambda o: lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    "SGD-momentum+MultiStepLR": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                 lambda o: lr_scheduler.MultiStepLR(o, [5, 20, 20], gamma=0.5)),
    "RMSprop-centered+ReduceLROnPlateau": (lambda ps: optim.RMSprop(ps, lr=1e-2, centered=True, momentum=0.5),
                                           lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=2)),
    "AdamW+CosineAnnealingLR": (lambda ps: optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.99)),
                                lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=15)),
    "Adagrad+ExponentialLR": (lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=1e-2, initial_accumulator_value=0.1),
                              lambda o: lr_scheduler.ExponentialLR(o, gamma=0.97)),
}


class Run:
    """A model, its optimizer and scheduler, and the data; ``train`` runs steps [start, stop)."""

    def __init__(self, setup: str, init_seed: int, data_seed: int) -> None:
        make_opt, make_sched = SETUPS[setup]
        self.model = _model(np.random.default_rng(init_seed))
        self.opt = make_opt(self.model.parameters())
        self.sched = make_sched(self.opt)
        data = np.random.default_rng(data_seed)
        self.x = data.normal(0.5, 2.0, (N_DATA, D))
        self.y = data.integers(0, K, N_DATA)
        self.batches = [data.choice(N_DATA, BATCH, replace=False) for _ in range(STEPS)]
        self.loss_fn = nn.CrossEntropyLoss()

    @property
    def dropout(self) -> nn.Dropout:
        return self.model[3]

    def train(self, start: int, stop: int) -> List[float]:
        losses = []
        for t in range(start, stop):
            idx = self.batches[t]
            self.opt.zero_grad()
            loss = self.loss_fn(self.model(self.x[idx]), self.y[idx])
            self.model.backward(self.loss_fn.backward())
            self.opt.step()
            if isinstance(self.sched, lr_scheduler.ReduceLROnPlateau):
                self.sched.step(loss)
            else:
                self.sched.step()
            losses.append(loss)
        return losses

    def snapshot(self) -> Dict[str, Any]:
        """Everything a load could change, as copies (the Dropout's generator state included)."""
        return copy.deepcopy({"model": self.model.state_dict(), "optim": self.opt.state_dict(),
                              "sched": self.sched.state_dict(), "rng": self.dropout.rng.bit_generator.state})


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bit-identical: arrays by value, dtype and shape; containers recursively; floats exactly."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{where}: values differ"
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} vs {b!r}"


# ---- resume -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", list(SETUPS))
def test_resume_is_bit_identical(setup, seed, tmp_path):
    """Train 40 steps; or train 17, save, load into FRESH objects (other initial values), restore the Dropout's
    generator state, train 23 more: every loss, parameter, buffer, optimizer state entry, param group and the
    scheduler state are bit-identical to the uninterrupted run."""
    whole = Run(setup, init_seed=seed, data_seed=seed + 1)
    losses = whole.train(0, STEPS)

    first = Run(setup, init_seed=seed, data_seed=seed + 1)
    head = first.train(0, RESUME_AT)
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, first.model, first.opt, first.sched)
    rng_state = copy.deepcopy(first.dropout.rng.bit_generator.state)

    resumed = Run(setup, init_seed=seed + 2, data_seed=seed + 1)
    assert not np.array_equal(resumed.model[0].weight.data, first.model[0].weight.data)
    checkpoint.load(path, resumed.model, resumed.opt, resumed.sched)
    _assert_same(resumed.snapshot()["optim"], first.snapshot()["optim"], "optimizer right after load")
    resumed.dropout.rng.bit_generator.state = rng_state
    tail = resumed.train(RESUME_AT, STEPS)

    assert head + tail == losses
    _assert_same(resumed.snapshot(), whole.snapshot(), setup)
    lr_at_resume = first.opt.param_groups[0]["lr"]
    assert whole.opt.param_groups[0]["lr"] != lr_at_resume, "the lr must change after the resume point"


def test_resume_without_the_rng_state_differs(seed, tmp_path):
    """The Dropout generator is not in the checkpoint: resuming without restoring it draws other masks."""
    whole = Run("SGD-momentum+MultiStepLR", init_seed=seed, data_seed=seed + 1)
    whole.train(0, STEPS)
    first = Run("SGD-momentum+MultiStepLR", init_seed=seed, data_seed=seed + 1)
    first.train(0, RESUME_AT)
    buffer = io.BytesIO(checkpoint.to_bytes(first.model, first.opt, first.sched))
    resumed = Run("SGD-momentum+MultiStepLR", init_seed=seed + 2, data_seed=seed + 1)
    checkpoint.load(buffer, resumed.model, resumed.opt, resumed.sched)
    resumed.train(RESUME_AT, STEPS)
    assert not np.array_equal(resumed.model[4].weight.data, whole.model[4].weight.data)


# ---- the file format ------------------------------------------------------------------------------------------------
def _trained(setup: str = "Adam-amsgrad+StepLR", seed: int = 0, steps: int = 9) -> Run:
    run = Run(setup, init_seed=seed, data_seed=seed + 1)
    run.train(0, steps)
    return run


def test_file_loads_without_pickle_and_holds_only_plain_arrays(tmp_path):
    """Every entry reads with ``allow_pickle=False``; no object arrays; the documented layout and metadata."""
    run = _trained()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, run.model, run.opt, run.sched)
    with np.load(path, allow_pickle=False) as data:
        entries = {key: data[key] for key in data.files}
    assert all(a.dtype.kind in "fiuU" for a in entries.values()), {k: a.dtype for k, a in entries.items()}
    model_keys = {f"model/{k}" for k in run.model.state_dict()}
    state_keys = {f"optim/state/{i}/{name}" for i, s in run.opt.state_dict()["state"].items() for name in s}
    assert set(entries) == {"meta", "optim/param_groups", "scheduler"} | model_keys | state_keys
    meta = json.loads(str(entries["meta"]))
    assert meta["format"] == "handnn-checkpoint" and meta["version"] == 1
    assert meta["optimizer"] == "Adam" and meta["scheduler"] == "StepLR"
    assert entries["optim/state/0/step"].dtype == np.float32
    assert entries["model/1.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("setup", list(SETUPS))
def test_round_trip_keeps_hyper_parameter_types(setup):
    """Tuples (betas), Counters (milestones) and inf (ReduceLROnPlateau's best) come back as they went in."""
    run = _trained(setup)
    fresh = Run(setup, init_seed=5, data_seed=6)
    checkpoint.load(io.BytesIO(checkpoint.to_bytes(run.model, run.opt, run.sched)), fresh.model, fresh.opt,
                    fresh.sched)
    _assert_same(fresh.opt.state_dict(), run.opt.state_dict(), "optimizer")
    _assert_same(fresh.sched.state_dict(), run.sched.state_dict(), "scheduler")
    if "betas" in fresh.opt.param_groups[0]:
        assert isinstance(fresh.opt.param_groups[0]["betas"], tuple)
    if isinstance(fresh.sched, lr_scheduler.MultiStepLR):
        assert fresh.sched.milestones == Counter({5: 1, 20: 2})


def test_model_only_checkpoint(tmp_path):
    """Any subset can be saved and loaded: a model alone."""
    run = _trained()
    path = tmp_path / "model.npz"
    checkpoint.save(path, run.model)
    fresh = Run("Adam-amsgrad+StepLR", init_seed=3, data_seed=4)
    checkpoint.load(path, fresh.model)
    _assert_same(fresh.model.state_dict(), run.model.state_dict())


# ---- damaged, tampered and mismatched files -------------------------------------------------------------------------
@pytest.fixture
def saved() -> Tuple[bytes, Run]:
    """A checkpoint of a trained run, and a different trained run to load it into."""
    source = _trained(seed=0)
    target = _trained(seed=7, steps=5)
    return checkpoint.to_bytes(source.model, source.opt, source.sched), target


def _refused(data: bytes, target: Run, error, match: str, **objects) -> None:
    """Loading ``data`` raises ``error`` matching ``match`` and changes nothing in ``target``."""
    objects = objects or {"model": target.model, "optimizer": target.opt, "scheduler": target.sched}
    before = target.snapshot()
    with pytest.raises(error, match=match):
        checkpoint.load(io.BytesIO(data), **objects)
    _assert_same(target.snapshot(), before, "after a refused load")


def _member_data(data: bytes, name: str) -> Tuple[int, int]:
    """(start, stop) of an uncompressed zip member's bytes (the .npy file: header then array data)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = np.frombuffer(data[info.header_offset + 26:info.header_offset + 30], dtype="<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)
    assert info.compress_type == zipfile.ZIP_STORED
    return start, start + info.compress_size


def _rewrite(data: bytes, change: Callable[[Dict[str, np.ndarray]], None], fix_digest: bool) -> bytes:
    """A well-formed npz with the entries of ``data`` changed by ``change``; the digest re-computed or left stale."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        entries = {key: npz[key] for key in npz.files}
    meta = json.loads(str(entries.pop("meta")))
    change(entries)
    if fix_digest:
        meta["digest"] = checkpoint._digest(entries)
    out = io.BytesIO()
    np.savez(out, meta=np.array(json.dumps(meta)), **entries)
    return out.getvalue()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(saved, fraction):
    data, target = saved
    _refused(data[:int(len(data) * fraction)], target, ValueError, "truncated or corrupt")


def test_one_array_byte_changed(saved, rng):
    """A byte changed inside an array's data: refused (the zip CRC, or the digest), for every array tried."""
    data, target = saved
    for name in ("model/0.weight.npy", "model/1.running_var.npy", "optim/state/3/exp_avg_sq.npy"):
        start, stop = _member_data(data, name)
        position = int(rng.integers(stop - 8, stop))  # inside the last element of the array
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        _refused(bytes(damaged), target, ValueError, "truncated or corrupt|checksum mismatch")


def test_any_byte_changed_is_refused_or_harmless(saved, rng):
    """300 random positions, headers included: a changed byte either gives a ValueError, or lies in a zip header
    field that is never read (a timestamp, the local copy of a name) and the content loaded is the original."""
    data, target = saved
    reference = Run("Adam-amsgrad+StepLR", init_seed=5, data_seed=6)
    checkpoint.load(io.BytesIO(data), reference.model, reference.opt, reference.sched)
    expected = reference.snapshot()
    refused = 0
    for position in rng.choice(len(data), 300, replace=False):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        before = target.snapshot()
        try:
            checkpoint.load(io.BytesIO(bytes(damaged)), target.model, target.opt, target.sched)
        except ValueError:
            refused += 1
            _assert_same(target.snapshot(), before, f"refused load, byte {position}")
            continue
        loaded = target.snapshot()
        loaded["rng"] = expected["rng"]  # never part of the checkpoint
        _assert_same(loaded, expected, f"accepted load, byte {position}")
    assert refused > 150


def test_changed_value_in_a_well_formed_file(saved):
    """A consistent zip whose array differs from the one the digest was computed over."""
    data, target = saved

    def change(entries):
        entries["optim/state/2/exp_avg"] = entries["optim/state/2/exp_avg"] * 1.0001

    _refused(_rewrite(data, change, fix_digest=False), target, ValueError, "checksum mismatch")


@pytest.mark.parametrize("entry", ["optim/state/0/exp_avg", "model/1.running_var", "scheduler"])
def test_missing_entry(saved, entry):
    """An entry removed from the file (digest left as written): refused."""
    data, target = saved
    _refused(_rewrite(data, lambda e: e.pop(entry), fix_digest=False), target, ValueError, "checksum mismatch")


@pytest.mark.parametrize("entry,error,match", [
    ("model/1.running_var", RuntimeError, r'Missing key\(s\) in state_dict: "1.running_var"'),
    ("optim/param_groups", ValueError, "holds no optimizer state"),
    ("scheduler", ValueError, "holds no scheduler state"),
])
def test_missing_entry_with_a_valid_digest(saved, entry, error, match):
    """A well-formed file that lacks an entry (as another tool could write it): a clear error, and the model and
    optimizer loaded before the failing part are rolled back."""
    data, target = saved
    _refused(_rewrite(data, lambda e: e.pop(entry), fix_digest=True), target, error, match)


def test_wrong_architecture(saved):
    """A hidden size of 5 instead of 7: RuntimeError naming the mismatch; nothing changed."""
    data, _ = saved
    target = Run("Adam-amsgrad+StepLR", init_seed=3, data_seed=4)
    target.model = _model(np.random.default_rng(3), hidden=5)
    target.opt = optim.Adam(target.model.parameters(), lr=1e-2, amsgrad=True)
    target.sched = lr_scheduler.StepLR(target.opt, step_size=7)
    target.train(0, 3)
    _refused(data, target, RuntimeError, r"size mismatch for 0.weight: copying a param with shape \(7, 3\)")


def test_missing_layer(saved):
    """A model without the BatchNorm (so its last Linear is '3'): missing and unexpected keys; nothing changed."""
    data, target = saved
    model = nn.Sequential(nn.Linear(D, H, bias=False, rng=np.random.default_rng(1)), nn.ReLU(),
                          nn.Dropout(0.25, rng=np.random.default_rng(2)), nn.Linear(H, K, rng=np.random.default_rng(3)))
    before = copy.deepcopy(model.state_dict())
    expected = (r'Missing key\(s\) in state_dict: "3.weight", "3.bias"(.|\n)*'
                r'Unexpected key\(s\) in state_dict: "1.weight", "1.bias", "1.running_mean"')
    with pytest.raises(RuntimeError, match=expected):
        checkpoint.load(io.BytesIO(data), model)
    _assert_same(model.state_dict(), before)


def test_optimizer_group_mismatch_rolls_the_model_back(saved):
    """The model loads, then the optimizer (two param groups instead of one) fails: the model is restored."""
    data, target = saved
    params = list(target.model.parameters())
    target.opt = optim.Adam([{"params": params[:2]}, {"params": params[2:]}], lr=1e-2, amsgrad=True)
    target.sched = lr_scheduler.StepLR(target.opt, step_size=7)
    target.train(0, 2)
    _refused(data, target, ValueError, "different number of parameter groups")


def test_different_optimizer_class(saved):
    """An Adam checkpoint into SGD is refused before anything changes, instead of mixing the two layouts (SGD's
    groups would get Adam's state; an SGD state in Adam fails on the first step, on the missing 'step')."""
    data, _ = saved
    target = Run("SGD-momentum+MultiStepLR", init_seed=3, data_seed=4)
    target.train(0, 3)
    _refused(data, target, ValueError, "holds the state of optimizer class Adam, but the optimizer given is a SGD")


def test_different_scheduler_class(saved):
    """A StepLR state into a MultiStepLR is refused (``__dict__.update`` would silently merge the two)."""
    data, target = saved
    target.sched = lr_scheduler.MultiStepLR(target.opt, [4, 8])
    target.train(5, 8)
    _refused(data, target, ValueError, "holds the state of scheduler class StepLR, but the scheduler given is a "
             "MultiStepLR")


def test_not_a_checkpoint(saved, tmp_path):
    """A plain npz, a .npy file, random bytes: ValueError; a missing file: FileNotFoundError."""
    _, target = saved
    plain = io.BytesIO()
    np.savez(plain, x=np.ones(3))
    _refused(plain.getvalue(), target, ValueError, "is not a handnn-checkpoint version 1 file")
    npy = io.BytesIO()
    np.save(npy, np.ones(3))
    _refused(npy.getvalue(), target, ValueError, "truncated or corrupt")
    _refused(np.random.default_rng(0).bytes(500), target, ValueError, "truncated or corrupt")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "absent.npz", target.model)
