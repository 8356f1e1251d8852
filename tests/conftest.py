"""Shared test settings.

Tests use tiny problems, where torch's intra-op threads only add overhead (and, with
other processes on a 2-core machine, oversubscription stalls of 10x); one thread keeps
the suite fast and its timings stable.
"""

import torch

torch.set_num_threads(1)
