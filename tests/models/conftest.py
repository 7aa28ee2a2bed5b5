"""Shared set-up of the model tests: torch's CPU threads.

A test module that sets ``TORCH_THREADS = N`` runs each test with at most N threads (1: exactly
one); every module's tests get torch's thread count put back afterwards, so a test that sets its
own (the fitting tests) or a module's cap never leaks into the next module."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _torch_threads(request):
    torch = sys.modules.get("torch")  # a module that does not use torch is left alone
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    cap = getattr(request.module, "TORCH_THREADS", None)
    if cap is not None:
        torch.set_num_threads(max(1, min(cap, before)))
    yield
    torch.set_num_threads(before)
