"""Fixtures: tiny checkpoints in each layout (built by ``_tiny_checkpoints``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _tiny_checkpoints import build_pylate, build_stanford


@pytest.fixture(scope="session")
def stanford_dir(tmp_path_factory) -> Path:
    return build_stanford(tmp_path_factory.mktemp("stanford"))


@pytest.fixture(scope="session")
def pylate_dir(tmp_path_factory) -> Path:
    return build_pylate(tmp_path_factory.mktemp("pylate"))


@pytest.fixture()
def copy_dir(tmp_path):
    """Copy a checkpoint directory into tmp_path (to damage it)."""

    def _copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tiny models gain nothing from threads; on a shared, loaded CPU every OpenMP
    barrier waits for a descheduled thread. The encoders use whatever torch is set to."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
