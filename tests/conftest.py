import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small order-1 synthetic dataset (vocab 65) that tiny models learn in seconds."""
    from data import synthetic
    return synthetic.generate(str(tmp_path_factory.mktemp("data") / "tiny"), V=64, k=1, s=8, alpha=0.5,
                              n_train=60_000, n_val=8_192, seed=3)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core CPU one descheduled thread stalls
    every op (measured: 10-30x slower with 2 threads under load). Modules opt in with
    pytestmark = pytest.mark.usefixtures("one_thread")."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
