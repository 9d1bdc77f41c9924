"""Shared engine test fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny nets gain nothing from threads, and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
