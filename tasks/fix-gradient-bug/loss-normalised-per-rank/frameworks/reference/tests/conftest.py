"""Skips `@pytest.mark.gpu` tests, with the reason shown, when no CUDA device is visible."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: none visible (run on a GPU machine to include it)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
