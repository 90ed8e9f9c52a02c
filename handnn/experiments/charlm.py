"""A character-level language model: Embedding → 2-layer LSTM (or GRU) → Linear, the courses' sequence chapter.

Setup: the opening of Lewis Carroll's *Alice's Adventures in Wonderland* (1865, public domain; :data:`TEXT`),
characters as class indices, the last 10 % held out. A step trains on ``batch_size`` windows of ``seq_len``
characters drawn at seeded random offsets of the training part, predicting every next character: cross-entropy
over all ``batch_size · seq_len`` positions, Adam (lr 3e-3), gradients clipped to a total 2-norm of 1
(``nn.utils.clip_grad_norm_``) before each update. Two variants from the same seed: an LSTM and a GRU of the same
size. Every 50 steps the next-character accuracy on the held-out text is evaluated; at the end a greedy continuation
of a prompt is generated.

``--backend torch`` trains the torch twins on the same windows (``tests/parity/test_sequence_trajectories.py``
holds the two equal after every step).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import nn, optim
from . import _plot
from ._common import (NO_PROGRESS, Backend, Dataset, HandnnBackend, Progress, Result, Run, class_accuracy,
                      fmt_accuracy, fmt_loss, format_table, generator)

NAME = "charlm"
SUMMARY = "a character-level language model: Embedding, 2-layer LSTM or GRU, Linear; Adam with gradient clipping"
DEFAULT_ITERATIONS = 400
VARIANTS: Tuple[str, ...] = ("LSTM", "GRU")
EVERY = 50  # steps between two held-out accuracy measurements

#: the training text: the first paragraphs of chapter I of *Alice's Adventures in Wonderland* (public domain)
TEXT = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: "
    "once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations "
    "in it, 'and what is the use of a book,' thought Alice 'without pictures or conversations?' "
    "So she was considering in her own mind (as well as she could, for the hot day made her feel very sleepy and "
    "stupid), whether the pleasure of making a daisy-chain would be worth the trouble of getting up and picking "
    "the daisies, when suddenly a White Rabbit with pink eyes ran close by her. "
    "There was nothing so very remarkable in that; nor did Alice think it so very much out of the way to hear the "
    "Rabbit say to itself, 'Oh dear! Oh dear! I shall be late!' (when she thought it over afterwards, it occurred "
    "to her that she ought to have wondered at this, but at the time it all seemed quite natural); but when the "
    "Rabbit actually took a watch out of its waistcoat-pocket, and looked at it, and then hurried on, Alice started "
    "to her feet, for it flashed across her mind that she had never before seen a rabbit with either a "
    "waistcoat-pocket, or a watch to take out of it, and burning with curiosity, she ran across the field after "
    "it, and fortunately was just in time to see it pop down a large rabbit-hole under the hedge. "
    "In another moment down went Alice after it, never once considering how in the world she was to get out again. "
    "The rabbit-hole went straight on like a tunnel for some way, and then dipped suddenly down, so suddenly that "
    "Alice had not a moment to think about stopping herself before she found herself falling down a very deep well. "
    "Either the well was very deep, or she fell very slowly, for she had plenty of time as she went down to look "
    "about her and to wonder what was going to happen next. First, she tried to look down and make out what she "
    "was coming to, but it was too dark to see anything; then she looked at the sides of the well, and noticed "
    "that they were filled with cupboards and book-shelves; here and there she saw maps and pictures hung upon "
    "pegs. She took down a jar from one of the shelves as she passed; it was labelled 'ORANGE MARMALADE', but to "
    "her great disappointment it was empty: she did not like to drop the jar for fear of killing somebody "
    "underneath, so managed to put it into one of the cupboards as she fell past it."
)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    iterations: int = DEFAULT_ITERATIONS
    seq_len: int = 32
    batch_size: int = 16
    embedding_dim: int = 16
    hidden_size: int = 64
    num_layers: int = 2
    lr: float = 3e-3
    max_norm: float = 1.0
    prompt: str = "Alice was "
    generate: int = 60

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1 or self.seq_len >= len(TEXT) // 2:
            raise ValueError(f"seq_len and batch_size must be positive and seq_len below {len(TEXT) // 2}, but got "
                             f"{self.seq_len} and {self.batch_size}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="characters per window (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per step (default %(default)s)")
    parser.add_argument("--hidden", type=int, default=d.hidden_size, help="hidden size (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam's lr (default %(default)s)")
    parser.add_argument("--max-norm", type=float, default=d.max_norm,
                        help="gradient clipping's total 2-norm (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(seed=args.seed, iterations=args.iterations or DEFAULT_ITERATIONS, seq_len=args.seq_len,
                  batch_size=args.batch_size, hidden_size=args.hidden, lr=args.lr, max_norm=args.max_norm)


def vocabulary(text: str = TEXT) -> str:
    """The distinct characters of ``text``, sorted: character ``vocabulary()[i]`` is class ``i``."""
    return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.array([index[ch] for ch in text], dtype=np.int64)


class CharLM(nn.Module):
    """``logits = Linear(RNN(Embedding(tokens)))`` for every position: tokens (N, T) int → logits (N·T, V).

    ``backward(dlogits)`` runs the three backward passes in reverse (the embedding takes no input gradient:
    it returns None, as every module with integer input does).
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, cell: str = "LSTM",
                 *, dtype=np.float64, rng: Optional[np.random.Generator] = None) -> None:
        super().__init__()
        if cell not in ("LSTM", "GRU", "RNN"):
            raise ValueError(f"cell must be 'LSTM', 'GRU' or 'RNN', but got {cell!r}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, dtype=dtype, rng=rng)
        self.rnn = getattr(nn, cell)(embedding_dim, hidden_size, num_layers, batch_first=True, dtype=dtype, rng=rng)
        self.head = nn.Linear(hidden_size, vocab_size, dtype=dtype, rng=rng)

    def forward(self, tokens: np.ndarray) -> np.ndarray:
        out, _ = self.rnn(self.embedding(tokens))
        self._cache = out.shape
        return self.head(out.reshape(-1, out.shape[-1]))

    def backward(self, grad_output: np.ndarray) -> None:
        shape = self._saved()
        dout = self.head.backward(grad_output).reshape(shape)
        dx, _ = self.rnn.backward(dout, None)
        return self.embedding.backward(dx)


def windows(tokens: np.ndarray, seq_len: int, count: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """``count`` windows at random offsets: inputs (count, seq_len) and their next characters, the targets
    flattened to (count · seq_len,) as the logits are."""
    starts = rng.integers(0, len(tokens) - seq_len, count)
    x = np.stack([tokens[s:s + seq_len] for s in starts])
    y = np.stack([tokens[s + 1:s + seq_len + 1] for s in starts])
    return x, y.reshape(-1)


def load_data(config: Config) -> Dataset:
    """The encoded text split 90 / 10; the held-out part as consecutive windows of ``seq_len``."""
    vocab = vocabulary()
    tokens = encode(TEXT, vocab)
    cut = int(0.9 * len(tokens))
    train, test = tokens[:cut], tokens[cut:]
    n = (len(test) - 1) // config.seq_len
    x_test = test[:n * config.seq_len].reshape(n, config.seq_len)
    y_test = test[1:n * config.seq_len + 1].reshape(-1)
    return Dataset(train[None, :], train[None, 1:], x_test, y_test)


def model(config: Config, cell: str) -> CharLM:
    """The network of the module docstring, torch's initialisation drawn from the experiment's seed."""
    return CharLM(len(vocabulary()), config.embedding_dim, config.hidden_size, config.num_layers, cell,
                  rng=generator(config.seed, "init"))


def greedy(trainer, prompt: str, count: int, vocab: str) -> str:
    """``prompt`` continued by ``count`` characters, each the most likely next one (the whole prefix re-read)."""
    tokens = list(encode(prompt, vocab))
    for _ in range(count):
        logits = trainer.logits(np.array([tokens], dtype=np.int64))
        tokens.append(int(np.argmax(logits[-1])))
    return "".join(vocab[t] for t in tokens)


def run(config: Config, backend: Optional[Backend] = None, progress: Progress = NO_PROGRESS,
        variants: Sequence[str] = VARIANTS) -> Result:
    """Train each variant ``config.iterations`` steps on the same windows; the loss of every step, the held-out
    next-character accuracy every :data:`EVERY` steps (``result.extra['accuracy']``) and a greedy continuation of
    the prompt (``result.extra['sample']``)."""
    backend = backend or HandnnBackend()
    start = time.perf_counter()
    data = load_data(config)
    vocab = vocabulary()
    train = data.x_train[0]
    runs, curves, samples = [], {}, {}
    for variant in variants:
        net = model(config, variant)
        trainer = backend.trainer(net, nn.CrossEntropyLoss(), optim.Adam(net.parameters(), lr=config.lr),
                                  max_norm=config.max_norm)
        rng = generator(config.seed, "batches")
        losses, steps, accuracies = np.empty(config.iterations), [], []
        progress.start(f"{NAME} [{backend.name}] {variant}", config.iterations)
        for i in range(config.iterations):
            x, y = windows(train, config.seq_len, config.batch_size, rng)
            losses[i] = trainer.step(x, y)
            if (i + 1) % EVERY == 0 or i + 1 == config.iterations:
                steps.append(i + 1)
                accuracies.append(class_accuracy(trainer.logits(data.x_test), data.y_test))
                progress.update(i)
        progress.finish()
        x, y = windows(train, config.seq_len, 64, generator(config.seed, "test-data"))
        runs.append(Run(variant, losses, class_accuracy(trainer.logits(x), y), accuracies[-1], trainer.state_dict()))
        curves[variant] = (np.array(steps), np.array(accuracies))
        samples[variant] = greedy(trainer, config.prompt, config.generate, vocab)
    return Result(NAME, backend.name, config, runs, data, seconds=time.perf_counter() - start,
                  extra={"accuracy": curves, "sample": samples})


def describe(config: Config) -> str:
    c = config
    return (f"{NAME}: Alice in Wonderland, chapter I ({len(TEXT)} characters, {len(vocabulary())} distinct, 90 % "
            f"train), Embedding({c.embedding_dim}) → {c.num_layers}-layer LSTM/GRU({c.hidden_size}) → Linear, "
            f"{c.batch_size} windows of {c.seq_len} per step, Adam lr {c.lr:g}, clip_grad_norm_({c.max_norm:g}), "
            f"{c.iterations} steps, --seed {c.seed}")


def table(result: Result, *, reported: bool = True) -> str:
    """cell | final loss (mean of the last 50 steps) | train / held-out next-character accuracy | sample."""
    rows = [[r.name, fmt_loss(float(np.mean(r.losses[-EVERY:]))), fmt_accuracy(r.train_accuracy),
             fmt_accuracy(r.test_accuracy), repr(result.extra["sample"][r.name])] for r in result.runs]
    return format_table(["cell", "final loss", "train acc", "test acc", "greedy continuation"], rows)


def notes(config: Config) -> str:
    return "\n".join([
        "accuracy: the next character predicted (argmax) at every position; train on 64 random windows, test on "
        "the held-out 10 %",
        f"clipping: nn.utils.clip_grad_norm_(parameters, {config.max_norm:g}) before every Adam step",
    ])


def plot(result: Result, directory: Path, suffix: str = "") -> List[Path]:
    """``charlm_loss{suffix}.png`` (per step) and ``charlm_accuracy{suffix}.png`` (held out, every 50 steps)."""
    return [_plot.loss_curves(result, directory / f"{NAME}_loss{suffix}.png", xlabel="step"),
            _plot.accuracy_curves(result.extra["accuracy"], directory / f"{NAME}_accuracy{suffix}.png",
                                  title=f"{NAME}: held-out next-character accuracy ({result.backend})")]
