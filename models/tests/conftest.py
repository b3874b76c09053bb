"""Shared pytest setup for the Python model tests.

Puts models/ on sys.path so `from uniter.model import ...` works whether pytest runs from
models/ (`cd models && python3 -m pytest -q tests`) or from the repository root.
"""
import os
import sys

import pytest
import torch

TESTS = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(TESTS)
REPO = os.path.dirname(MODELS)
for p in (MODELS, TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

torch.set_num_threads(1)


def pytest_terminal_summary(terminalreporter):
    """Prints the worst differences the model/export tests measured (no -s needed)."""
    from uniter_testing import MEASURED
    if not MEASURED:
        return
    tr = terminalreporter
    tr.section("UNITER parity: worst differences measured")
    for (what, output), v in sorted(MEASURED.items()):
        tr.write_line(f"{what:44s} {output:22s} {v:.3e}")


@pytest.fixture(scope="module")
def uniter_bin():
    b = os.environ.get("UNITER_BIN")
    if not b:
        pytest.skip("UNITER_BIN is not set: run these through `make test-py` (it builds "
                    "bin/uniter and sets UNITER_BIN and UNITER_ORT_LIBRARY)")
    if not os.access(b, os.X_OK):
        pytest.fail(f"UNITER_BIN={b} is not an executable")
    return b
