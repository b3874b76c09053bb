"""Shared pytest setup for the Python model tests: `cd models && python3 -m pytest -q` (the
pytest settings in models/pyproject.toml put models/ on the import path; this folder's helper
module uniter_testing is importable as pytest imports the tests from here).
"""
import os

import pytest
import torch

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
def two_torch_threads():
    """Convolutional work is fastest with 2 torch threads here; the detector modules use it
    (pytestmark = pytest.mark.usefixtures("two_torch_threads"))."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def uniter_bin():
    b = os.environ.get("UNITER_BIN")
    if not b:
        pytest.skip("UNITER_BIN is not set: run these through `make test-py` (it builds "
                    "bin/uniter and sets UNITER_BIN and UNITER_ORT_LIBRARY)")
    if not os.access(b, os.X_OK):
        pytest.fail(f"UNITER_BIN={b} is not an executable")
    return b
