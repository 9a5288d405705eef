"""bench/finetune_memory.py's recipes on the tiny model, in this process: what its GPU rows would run, on the CPU.

Full fine-tuning, LoRA and the 8-bit AdamW row go through ``finetune.py train``'s own pieces (the
wrapper factory, ``add_trainable_adapters``, ``LoraCheckpoints``, ``export_lora``); the figures
checked are the ones that do not depend on the machine: what is trained, the optimizer state it
gets, and which checkpoint is the smaller.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.finetune_memory import GIB, adamw_8bit_class, parse_args, run


@pytest.fixture(scope="module")
def measured(small_hub: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full and one rank-4 LoRA row on latents (2 steps each), and the 8-bit AdamW row, as the JSON file has them."""
    output = tmp_path_factory.mktemp("bench") / "finetune_memory.json"
    outcomes = run(parse_args(["--tiny", "--batch-sizes", "", "--lora-ranks", "4", "--lora-batch-sizes", "",
                               "--output", str(output)]))  # fmt: skip
    assert [(o.recipe, o.status) for o in outcomes if o.optimizer == "AdamW"] == [("full", "ok"), ("LoRA rank 4", "ok")]
    return json.loads(output.read_text())


def row(measured: dict, recipe: str) -> dict:
    (found,) = [r for r in measured["results"] if r["recipe"] == recipe]
    return found


def test_lora_rows_train_the_adapters_alone_without_an_ema(measured) -> None:
    full, lora = measured["parameters"]["full"], measured["parameters"]["LoRA rank 4"]
    assert full["ema_total"] == full["dit_total"] > 0 and lora["ema_total"] == 0
    assert 0 < lora["optimizer_covers_trainable"] < full["optimizer_covers_trainable"] / 4
    assert lora["dit_trainable"] > 0 and lora["conditioner_registered_trainable"] > 0  # both parts adapted
    assert lora["vae_trainable"] == lora["t5_encoder_trainable"] == 0
    assert lora["dit_total"] - lora["dit_trainable"] == full["dit_total"]  # the base is all there, frozen


@pytest.mark.parametrize("recipe", ["full", "LoRA rank 4"])
def test_only_trained_parameters_get_adamw_state(measured, recipe) -> None:
    """Two fp32 moments per trainable parameter: the frozen base gets no state although the optimizer covers it."""
    result = row(measured, recipe)
    assert result["optimizer_steps_applied"] == len(result["step_times_s"]) == 2
    assert round(result["optimizer_state_gib"] * GIB) == 2 * 4 * result["trainable_parameters"]


def test_a_lora_checkpoint_is_a_fraction_of_a_full_one_and_its_adapter_file_is_written(measured) -> None:
    full, lora = row(measured, "full"), row(measured, "LoRA rank 4")
    assert 0 < lora["adapter_file_mib"] < lora["checkpoint_mib"] < full["checkpoint_mib"] / 5
    assert full["adapter_file_mib"] is None


def test_the_8bit_adamw_row_says_why_it_did_not_run_here(measured) -> None:
    expected = "bitsandbytes not installed" if adamw_8bit_class() is None else "not run (bitsandbytes' 8-bit AdamW needs a CUDA device)"
    result = row(measured, "full, AdamW8bit")
    assert (result["status"], result["optimizer"], result["median_step_s"]) == (expected, "AdamW8bit", None)
