"""handnn is numpy only: it imports and trains with torch unavailable, and never touches NumPy's global RNG.

The static checks read every file under ``handnn/`` with :mod:`ast` (so a comment or a docstring mentioning
torch is fine, while ``import torch`` anywhere, even inside a function, is not); the checker itself is tested
on planted snippets so it is known to be able to fail.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "handnn"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: the only attributes of numpy.random a layer may use: explicit generators, never the global state
ALLOWED_NP_RANDOM = {"default_rng", "Generator", "SeedSequence", "BitGenerator", "PCG64", "PCG64DXSM", "Philox",
                     "SFC64", "MT19937"}

BLOCKED_TORCH_SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import numpy as np
    import handnn
    from handnn import nn
    for info in pkgutil.walk_packages(handnn.__path__, "handnn."):
        importlib.import_module(info.name)  # every submodule imports without torch

    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(6, 5, rng=rng), nn.BatchNorm1d(5), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(5, 1, rng=rng))
    loss_fn = nn.MSELoss()
    x, y = rng.normal(size=(9, 6)), rng.normal(size=(9, 1))
    losses = []
    for _ in range(20):
        losses.append(loss_fn(model(x), y))
        model.zero_grad()
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.data -= 0.1 * p.grad
    assert losses[-1] < losses[0], losses
    clone = nn.Sequential(nn.Linear(6, 5, rng=rng), nn.BatchNorm1d(5), nn.ReLU(),
                          nn.Dropout(0.3, rng=rng), nn.Linear(5, 1, rng=rng))
    clone.load_state_dict(model.state_dict())
    model.eval(); clone.eval()
    assert np.array_equal(model(x), clone(x))
    assert sys.modules["torch"] is None
    print("ok", len(losses))
""")


def test_import_and_train_with_torch_blocked():
    result = subprocess.run([sys.executable, "-c", BLOCKED_TORCH_SCRIPT], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 20"


def violations(source: str) -> List[str]:
    """Every torch import and every use of NumPy's global RNG in ``source``."""
    tree = ast.parse(source)
    numpy_names, random_names, found = set(), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    found.append(f"line {node.lineno}: import {alias.name}")
                elif alias.name == "numpy":
                    numpy_names.add(alias.asname or "numpy")
                elif alias.name == "numpy.random":
                    if alias.asname:
                        random_names.add(alias.asname)
                    else:
                        numpy_names.add("numpy")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "torch":
                found.append(f"line {node.lineno}: from {node.module} import ...")
            elif node.module == "numpy":
                random_names.update(a.asname or a.name for a in node.names if a.name == "random")
            elif node.module == "numpy.random":
                found.extend(f"line {node.lineno}: from numpy.random import {a.name}" for a in node.names
                             if a.name not in ALLOWED_NP_RANDOM)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        is_random = (isinstance(base, ast.Name) and base.id in random_names) or (
            isinstance(base, ast.Attribute) and base.attr == "random"
            and isinstance(base.value, ast.Name) and base.value.id in numpy_names)
        if is_random and node.attr not in ALLOWED_NP_RANDOM:
            found.append(f"line {node.lineno}: numpy.random.{node.attr}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_torch_and_no_global_rng(path):
    assert violations(path.read_text()) == []


def test_the_package_was_found():
    assert PACKAGE / "__init__.py" in SOURCES and PACKAGE / "nn" / "modules" / "module.py" in SOURCES


@pytest.mark.parametrize("snippet", [
    "import torch",
    "import torch.nn as tnn",
    "from torch import nn",
    "def f():\n    import torch.nn.functional as F",
    "import numpy as np\nnp.random.seed(0)",
    "import numpy as np\nx = np.random.rand(3)",
    "import numpy as np\nx = np.random.randn(3)",
    "import numpy as np\nx = np.random.normal(size=3)",
    "import numpy as np\nnp.random.shuffle(x)",
    "import numpy as np\nstate = np.random.get_state()",
    "import numpy as np\nr = np.random.RandomState(0)",
    "import numpy\nx = numpy.random.uniform()",
    "import numpy.random\nx = numpy.random.random()",
    "import numpy.random as npr\nx = npr.binomial(1, 0.5)",
    "from numpy import random\nx = random.permutation(3)",
    "from numpy.random import rand",
])
def test_checker_catches(snippet):
    assert violations(snippet)


@pytest.mark.parametrize("snippet", [
    "import numpy as np\nrng = np.random.default_rng(0)",
    "import numpy as np\ndef f(rng: np.random.Generator) -> None:\n    rng.normal(size=3)",
    "from numpy.random import default_rng",
    '"""Never `import torch` here: np.random.seed is global state."""',
])
def test_checker_accepts(snippet):
    assert violations(snippet) == []


def test_the_package_ships_py_typed():
    """handnn is fully type-hinted: the PEP 561 marker makes type checkers read the hints (packaged in pyproject)."""
    import importlib.resources
    from pathlib import Path

    assert importlib.resources.files("handnn").joinpath("py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'handnn = ["py.typed"]' in pyproject


def test_the_seed_examples_name_their_seeds_relative_to_the_repository():
    """No machine's absolute path in the examples: the seeds are named by ../shared/seeds/NAME."""
    import re
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples" / "seeds"
    for path in examples.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        first_line = text.split("\n", 1)[0]
        assert "``../shared/seeds/" in first_line and not re.search(r"``/\w", first_line), path.name


def test_the_torch_side_installs_under_a_name_of_its_own():
    """The wheel holds handnn and handnn_reference (the repository's reference/ folder), never a top-level package
    as generic as ``reference``; every package folder is listed; the command-line entry point uses the installed
    name. (pyproject.toml read with a regex: tomllib is Python 3.11+.)"""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    listed = re.search(r"^packages = \[(.*?)\]", text, flags=re.M | re.S).group(1)
    packages = set(re.findall(r'"([\w.]+)"', listed))
    expected = {".".join(p.parent.relative_to(root).parts) for p in root.glob("handnn/**/__init__.py")}
    expected |= {".".join(["handnn_reference", *p.parent.relative_to(root / "reference").parts])
                 for p in root.glob("reference/**/__init__.py")}
    assert packages == expected
    assert 'package-dir = {"handnn_reference" = "reference"}' in text
    assert 'handnn-verify = "handnn_reference.report:main"' in text
