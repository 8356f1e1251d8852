"""Shared test settings.

Tests use tiny problems, where torch's intra-op threads only add overhead (and, with
other processes on a 2-core machine, oversubscription stalls of 10x); one thread keeps
the suite fast and its timings stable.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread in every test module, whatever an earlier one set (on a
    shared, oversubscribed CPU, OpenMP's spinning threads make tiny networks up to
    100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
