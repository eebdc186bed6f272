"""Shared test fixtures.

``fresh_seed``: tests of the network run on fresh random inputs every time (a fixed seed
could hide a bug that only some inputs trigger). The seed is drawn per test, reported
when the test fails, and can be pinned with SAMIC_TEST_SEED=<n> to reproduce a failure.
Opt-in (``pytestmark = pytest.mark.usefixtures("fresh_seed")``) so that other test
modules keep torch's default deterministic generator.
"""
import os
import secrets

import pytest
import torch


@pytest.fixture
def fresh_seed(request) -> int:
    seed = int(os.environ.get("SAMIC_TEST_SEED") or secrets.randbits(31))
    torch.manual_seed(seed)
    request.node.samic_seed = seed
    return seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    seed = getattr(item, "samic_seed", None)
    if report.failed and seed is not None:
        report.sections.append(("random seed", f"torch seed {seed}; reproduce with SAMIC_TEST_SEED={seed}"))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64 (0 when both are 0)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    denom = expected.norm().item()
    diff = (actual - expected).norm().item()
    return diff / denom if denom > 0 else diff
