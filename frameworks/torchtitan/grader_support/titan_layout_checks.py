"""Layout checks the fix-gradient-bug tasks on TorchTitan share: one step of the tiny Qwen3-MoE at ep=2
and at dp=2 (2 gloo processes each, one torchrun per layout) against one device: the loss and gradients
before clipping, the gradient norm on every rank, and the clipped gradients (clipping active).
A task's hidden test module imports them (`from titan_layout_checks import *`); pytest collects them there.
"""

from __future__ import annotations

import pytest
import titan_case as case

__all__ = [
    "reference",
    "ep2",
    "dp2",
    "test_clipping_is_active_in_the_reference",
    "test_grad_norm_on_every_rank_equals_one_device",
    "test_clipped_gradients_equal_one_device",
    "test_loss_and_gradients_before_clipping_equal_one_device",
]

GRAD_REL = 1e-5  # gold: 6e-7 worst per parameter
NORM_REL = 1e-5  # gold: 1.6e-7 (norm), 3e-7 (clipped gradients); norm from local expert shards: 4e-4


@pytest.fixture(scope="module")
def reference():
    return case.one_device()


@pytest.fixture(scope="module")
def ep2(reference, tmp_path_factory):
    return case.run_layout("ep2", reference, tmp_path_factory.mktemp("ep2"))


@pytest.fixture(scope="module")
def dp2(reference, tmp_path_factory):
    return case.run_layout("dp2", reference, tmp_path_factory.mktemp("dp2"))


def test_clipping_is_active_in_the_reference(reference):
    assert reference["norm"] > 2 * case.MAX_NORM


@pytest.mark.parametrize("layout", ["ep2", "dp2"])
def test_grad_norm_on_every_rank_equals_one_device(layout, request, reference):
    norms = request.getfixturevalue(layout)["norms"]
    assert all(abs(n - reference["norm"]) <= NORM_REL * reference["norm"] for n in norms), (norms, reference["norm"])


@pytest.mark.parametrize("layout", ["ep2", "dp2"])
def test_clipped_gradients_equal_one_device(layout, request, reference):
    diff, name = case.worst(request.getfixturevalue(layout)["clipped"], reference["clipped"])
    assert diff < NORM_REL, f"worst relative clipped-gradient difference {diff:.2e} at {name}"


@pytest.mark.parametrize("layout", ["ep2", "dp2"])
def test_loss_and_gradients_before_clipping_equal_one_device(layout, request, reference):
    result = request.getfixturevalue(layout)
    assert abs(result["loss"] - reference["loss"]) <= 1e-5 * abs(reference["loss"])
    diff, name = case.worst(result["grads"], reference["grads"])
    assert diff < GRAD_REL, f"worst relative gradient difference {diff:.2e} at {name}"
