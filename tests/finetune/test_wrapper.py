"""stable-audio-tools' training wrapper as ``finetune.py train`` builds it, in this process, on the tiny model.

Built through upstream's real ``create_training_wrapper_from_config`` from the tiny hub model's own
config (SAO 1.0's ``training`` section, no ``timestep_sampler``: the Sobol sampler), and its real
T5 conditioner. Two "ranks" are two calls with different ranks in one process, as each rank of a
job makes the same call with its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stable_audio_tools_ext.finetune.training import training_wrapper
from stable_audio_tools_ext.finetune.upstream import encode_text_as_in_generation
from stable_audio_tools_ext.model.loading import create_model

CONDITIONS = [{"prompt": "rain on a tin roof", "seconds_start": 0, "seconds_total": 1},
              {"prompt": "a dog barks — café", "seconds_start": 3, "seconds_total": 9}]  # fmt: skip


@pytest.fixture(scope="module")
def config(small_hub: Path) -> dict:
    return json.loads(next(small_hub.rglob("model_config.json")).read_text())


@pytest.fixture(scope="module")
def model(config: dict) -> torch.nn.Module:
    return create_model(config)


def draws(config: dict, model: torch.nn.Module, rank: int, start_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first timesteps the wrapper's sampler gives one rank in one stretch, and its first noise."""
    wrapper = training_wrapper(config, model, pre_encoded=False, seed=42, rank=rank, start_step=start_step)
    assert wrapper.timestep_sampler == "uniform"  # SAO 1.0's config names none: the Sobol engine draws them
    return wrapper.rng.draw(4)[:, 0], torch.randn(4)


def test_ranks_and_a_resumed_stretch_draw_their_own_timesteps_and_noise(config, model) -> None:
    first = draws(config, model, rank=0, start_step=0)
    runs = {"rank 0": first, "rank 1": draws(config, model, rank=1, start_step=0),
            "rank 0 resumed at step 500": draws(config, model, rank=0, start_step=500)}  # fmt: skip
    for what, (timesteps, noise) in runs.items():
        assert ((timesteps >= 0) & (timesteps < 1)).all(), what
        for other, (other_timesteps, other_noise) in runs.items():
            if other != what:
                assert not torch.isclose(timesteps[:, None], other_timesteps[None]).any(), (what, other)
                assert not torch.equal(noise, other_noise), (what, other)
    again = draws(config, model, rank=0, start_step=0)
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])  # still reproducible from --seed


@pytest.mark.parametrize("precision", [torch.bfloat16, torch.float16])
def test_training_encodes_prompts_exactly_as_generation_under_mixed_precision(config, precision) -> None:
    """Under Lightning's autocast the T5 conditioner gives generate.py's embeddings, and keeps its weights."""
    model = create_model(config)
    conditioner = model.conditioner.conditioners["prompt"]
    weights = {name: value.clone() for name, value in conditioner.model.state_dict().items()}
    generation = model.conditioner(CONDITIONS, "cpu")["prompt"]  # as generate.py runs it: float16, no autocast
    encode_text_as_in_generation(model)
    encode_text_as_in_generation(model)  # idempotent
    with torch.autocast("cpu", dtype=precision):  # what Lightning's bf16-mixed / 16-mixed wrap a training step in
        training = model.conditioner(CONDITIONS, "cpu")["prompt"]
    assert torch.equal(training[0], generation[0]) and torch.equal(training[1], generation[1])
    assert all(torch.equal(value, weights[name]) for name, value in conditioner.model.encoder.state_dict().items())
