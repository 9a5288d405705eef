"""Backend numeric flags for CUDA generation: float32 stays float32 (the VAE's waveform included).

``configure_backends`` only sets flags, so it runs here without a GPU; the flags are restored after
each test because they are process-wide.
"""

from __future__ import annotations

import pytest
import torch

from stable_audio_tools_ext.model.loading import configure_backends

FLAGS = (
    (torch.backends.cudnn, "allow_tf32"),  # the float32 VAE convolutions
    (torch.backends.cuda.matmul, "allow_tf32"),  # the DiT with --precision fp32
    (torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction"),  # T5, and the DiT with --precision fp16
    (torch.backends.cudnn, "benchmark"),  # autotuning: kernels could change from run to run
)


@pytest.fixture
def all_flags_on():
    """Every flag on (PyTorch's default for cuDNN TF32 and fp16 reductions); restored afterwards."""
    saved = [getattr(owner, name) for owner, name in FLAGS]
    for owner, name in FLAGS:
        setattr(owner, name, True)
    yield
    for (owner, name), value in zip(FLAGS, saved):
        setattr(owner, name, value)


def test_cuda_generation_switches_tf32_reduced_reductions_and_autotuning_off(all_flags_on) -> None:
    configure_backends(torch.device("cuda"))
    assert {name: getattr(owner, name) for owner, name in FLAGS} == {
        "allow_tf32": False, "allow_fp16_reduced_precision_reduction": False, "benchmark": False,
    }  # fmt: skip
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32  # both allow_tf32 flags


def test_other_devices_leave_the_flags_alone(all_flags_on) -> None:
    configure_backends(torch.device("cpu"))
    assert all(getattr(owner, name) for owner, name in FLAGS)
