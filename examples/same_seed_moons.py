"""Same seed, same numbers: a torch training script and its handnn twin, nothing copied between them.

Both sides get only the integer ``seed``. torch: ``torch.manual_seed(seed)`` before building the model (its weights
and every dropout mask come from torch's default generator) and ``DataLoader(..., shuffle=True,
generator=torch.Generator().manual_seed(seed))`` for the batch order. handnn: ``TorchGenerator(seed)`` for the model
(weights and masks) and another ``TorchGenerator(seed)`` for ``minibatches``. The network is the seeds' moons MLP
[2, 20, 3, 1] with dropout after each hidden ReLU, trained with SGD on mini-batches, in float64. The data set is
``handnn.data.make_moons`` on both sides (a numpy generator seeded with the same integer).

Run: ``python examples/same_seed_moons.py [--seed 0] [--epochs 20]``. It prints, after building and after every
epoch, the largest difference between the two sides' weights, masks, batch orders and losses.
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List

import numpy as np

from handnn import data, nn, optim
from handnn.random import TorchGenerator

LAYERS = (2, 20, 3, 1)
DROP = 0.3
BATCH = 64
LR = 0.2


def handnn_run(seed: int, epochs: int) -> Dict[str, List[np.ndarray]]:
    """Train the handnn network; record the initial weights, every mask, every batch order, every loss."""
    x, y = data.make_moons(300, noise=0.2, rng=np.random.default_rng(seed))
    y = y[:, None].astype(np.float64)
    g = TorchGenerator(seed)  # plays torch's default generator: weights, then the dropout masks
    model = nn.Sequential(nn.Linear(2, 20, rng=g), nn.ReLU(), nn.Dropout(DROP, rng=g),
                          nn.Linear(20, 3, rng=g), nn.ReLU(), nn.Dropout(DROP, rng=g), nn.Linear(3, 1, rng=g))
    record: Dict[str, List[np.ndarray]] = {"initial": [p.data.copy() for p in model.parameters()],
                                           "masks": [], "orders": [], "losses": []}
    loss_fn, opt = nn.BCEWithLogitsLoss(), optim.SGD(model.parameters(), lr=LR)
    batches = TorchGenerator(seed)  # plays the DataLoader's generator
    for _ in range(epochs):
        order = batches.dataloader_order(len(x))
        record["orders"].append(order)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            model.backward(loss_fn.backward())
            opt.step()
            record["masks"] += [model[2].mask.copy(), model[5].mask.copy()]
            record["losses"].append(np.float64(loss))
    record["final"] = [p.data.copy() for p in model.parameters()]
    return record


def torch_run(seed: int, epochs: int) -> Dict[str, List[np.ndarray]]:
    """The same training written as a plain torch script."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data.make_moons(300, noise=0.2, rng=np.random.default_rng(seed))
    dataset = TensorDataset(torch.arange(len(x)), torch.from_numpy(x), torch.from_numpy(y[:, None].astype(np.float64)))
    torch.manual_seed(seed)
    dropouts = [torch.nn.Dropout(DROP), torch.nn.Dropout(DROP)]
    model = torch.nn.Sequential(torch.nn.Linear(2, 20, dtype=torch.float64), torch.nn.ReLU(), dropouts[0],
                                torch.nn.Linear(20, 3, dtype=torch.float64), torch.nn.ReLU(), dropouts[1],
                                torch.nn.Linear(3, 1, dtype=torch.float64))
    record: Dict[str, List[np.ndarray]] = {"initial": [p.detach().numpy().copy() for p in model.parameters()],
                                           "masks": [], "orders": [], "losses": []}
    masks: List[np.ndarray] = []
    for layer in dropouts:  # read each mask off the dropout's output: kept = non-zero; -1 where the input was 0
        layer.register_forward_hook(lambda m, inp, out: masks.append(
            np.where(inp[0].detach().numpy() == 0, -1, out.detach().numpy() != 0).astype(np.int8)))
    loss_fn, opt = torch.nn.BCEWithLogitsLoss(), torch.optim.SGD(model.parameters(), lr=LR)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        order = []
        for idx, xb, yb in loader:
            order.append(idx.numpy())
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            record["losses"].append(np.float64(loss.item()))
        record["orders"].append(np.concatenate(order))
    record["masks"] = masks
    record["final"] = [p.detach().numpy().copy() for p in model.parameters()]
    return record


def differences(ours: Dict[str, List[np.ndarray]], theirs: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    """The largest absolute difference per recorded item (masks and orders: the count of differing entries)."""
    out = {}
    for key in ("initial", "final", "losses"):
        out[key] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ours[key], theirs[key]))
    for key in ("masks", "orders"):
        if len(ours[key]) != len(theirs[key]):
            out[key] = float("inf")
            continue
        # torch's masks are read off outputs: -1 marks an element whose input was 0, where any mask gives 0
        out[key] = float(sum(np.count_nonzero((a != b) & (b != -1)) for a, b in zip(ours[key], theirs[key])))
    out["mask elements compared"] = float(sum(np.count_nonzero(b != -1) for b in theirs["masks"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    ours, theirs = handnn_run(args.seed, args.epochs), torch_run(args.seed, args.epochs)
    diff = differences(ours, theirs)
    steps = len(ours["losses"])
    print(f"seed {args.seed}, {args.epochs} epochs ({steps} steps, {len(ours['masks'])} dropout masks)")
    print(f"initial weights: max |handnn - torch| = {diff['initial']:.3g}  (bit-for-bit: {diff['initial'] == 0})")
    print(f"dropout masks:   {diff['masks']:.0f} differing elements of {diff['mask elements compared']:.0f} "
          "(those with a non-zero input)")
    print(f"batch orders:    {diff['orders']:.0f} differing positions")
    print(f"losses:          max |handnn - torch| = {diff['losses']:.3g}  (last loss {ours['losses'][-1]:.6f})")
    print(f"final weights:   max |handnn - torch| = {diff['final']:.3g}")
    same = diff["initial"] == 0 and diff["masks"] == 0 and diff["orders"] == 0
    return 0 if same and diff["final"] < 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
