"""The algorithm records: one per module, complete, and a chooser that names none."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import ndconv
from ndconv import functional as F
from ndconv.algorithms import ALGORITHMS, choose
from ndconv.algorithms import direct
from ndconv.algorithms.record import ARRAY_API, Algorithm, register

SRC = pathlib.Path(ndconv.__file__).parent / "core" / "algorithms"


def test_every_record_is_complete_and_lives_in_its_module():
    for name, algo in ALGORITHMS.items():
        assert isinstance(algo, Algorithm) and algo.name == name
        module = __import__(f"ndconv.algorithms.{name}", fromlist=["ALGORITHM"])
        assert module.ALGORITHM is algo
        for field in ("supports", "run", "estimate", "reason", "mixes_nonfinite",
                      "workspace_bytes"):
            assert callable(getattr(algo, field)), (name, field)
        # NumPy only (CPU code), NumPy and the portable path, or a library's own
        assert algo.arrays in (("numpy",), ("numpy", ARRAY_API), (name,)), (name, algo.arrays)


def test_a_record_without_an_estimate_is_refused_at_registration():
    with pytest.raises(TypeError, match="estimate.*never be chosen"):
        Algorithm(name="nocost", supports=direct.supports, run=direct.run,
                  estimate=None, reason=direct.reason)
    with pytest.raises(TypeError, match="not an Algorithm record"):
        register(direct.ALGORITHM, direct)  # a module is not a record
    with pytest.raises(ValueError, match="two algorithms are named 'direct'"):
        register(direct.ALGORITHM, direct.ALGORITHM)
    with pytest.raises(TypeError, match="error_growth"):
        Algorithm(name="x", supports=direct.supports, run=direct.run,
                  estimate=direct.estimate, reason=direct.reason, error_growth=1.0)


def test_chooser_and_dispatcher_name_no_method():
    """No method's name appears as a string in choose.py or algorithms/__init__.py."""
    for path in (SRC / "choose.py", SRC / "__init__.py"):
        tree = ast.parse(path.read_text())
        consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        named = consts & set(ALGORITHMS)
        assert not named, (path.name, named)


def test_a_new_record_is_chosen_with_its_own_reason(monkeypatch):
    """Registering a record is all it takes: the chooser estimates it and quotes it."""
    fake = Algorithm(
        name="instant", supports=lambda spec: (True, "anything"), run=direct.run,
        estimate=lambda spec: 1e-12, reason=lambda spec: "it is instant",
    )
    monkeypatch.setitem(ALGORITHMS, "instant", fake)
    x, w = np.zeros((1, 1, 16, 16), np.float32), np.zeros((1, 1, 3, 3), np.float32)
    spec = F._conv_spec(x, w, 1, 1, 1, 1, "zeros")
    choose._choose_cached.cache_clear()
    try:
        method, reason = choose.choose(spec)
    finally:
        choose._choose_cached.cache_clear()
    assert method == "instant" and "(it is instant)" in reason
