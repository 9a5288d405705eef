"""The studio in a real browser: headless Debian Chromium driven by Playwright against ``run_gradio.py``.

The app runs as a subprocess on 127.0.0.1 with the small-window tiny model (offline hub) and one
LoRA adapter (``--lora``, so the page has a strength slider). Every request the page makes is
recorded, and the tests fail if any goes anywhere but the app.
"""

from __future__ import annotations

import io
import re

import pytest
import soundfile as sf

from stable_audio_tools_ext.model.lora import write_lora
from tests.adapters import CONFIG, random_tensors
from tests.studio.browser import chromium_page, copy_if_requested, studio_server

pytest.importorskip("playwright.sync_api", reason="install the test extra: pip install -e '.[test]'")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def studio(small_hub_env, chromium, small_model, tmp_path_factory) -> str:
    """The app on the small-window model with an adapter named ``tin-roof`` at strength 1; takes ``chromium``
    first, as a first install takes a while."""
    base = tmp_path_factory.mktemp("browser")
    adapter = base / "tin-roof.safetensors"
    write_lora(adapter, random_tensors(small_model.model, seed=51), CONFIG)
    with studio_server(small_hub_env, base / "studio-tmp", "--lora", str(adapter)) as url:
        yield url


def test_generate_tab_plays_and_serves_the_clip(studio, chromium, tmp_path) -> None:
    outside: list[str] = []
    with chromium_page(chromium, tmp_path / "profile", studio.rstrip("/"), outside) as page:
        page.goto(studio)
        expect(page.locator("#lora-strength-1")).to_contain_text("tin-roof", timeout=TIMEOUT_MS)  # named by its file
        page.locator("#prompt textarea").fill("rain on a tin roof")
        for slider, value in (("#seconds-total", "2"), ("#steps", "8"), ("#variations", "2"), ("#lora-strength-1", "0.25")):
            field = page.locator(f"{slider} input[type=number]")
            field.fill(value)
            field.press("Enter")
        page.locator("#seed input").fill("1234")
        page.locator("#generate-button").click()

        page.locator("#audio-2 audio").first.wait_for(state="attached", timeout=TIMEOUT_MS)
        page.locator("#spectrogram-2 img").first.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert page.locator("#seed-used input, #seed-used textarea").first.input_value() == "1234"
        assert "seeds 1234..1235" in page.locator("#generate-status").inner_text()
        assert page.locator("#variation-3").is_hidden()
        link = page.locator("#download-1 a").first.get_attribute("href")
        response = page.request.get(link)
        assert response.ok, link
        data, rate = sf.read(io.BytesIO(response.body()), dtype="float32")
        assert rate == 44100 and data.shape == (2 * 44100, 2)  # seconds_total 2, stereo: trimmed like --clip-length
        assert abs(data).max() > 0
        assert '"seed": 1235' in page.locator("#params-2").inner_text()
        assert '"strength": 0.25' in page.locator("#params-2").inner_text()  # the slider's strength was used

        page.locator("#export").get_by_text("Export for generate.py").click()
        leaf = page.locator("#leaf-name input, #leaf-name textarea").first
        expect(leaf).to_have_value("audition", timeout=TIMEOUT_MS)  # the accordion's content is rendered
        for _ in range(40):  # a late update from the generation can reset the field: type until it sticks
            leaf.fill("sfx/rain")
            page.wait_for_timeout(500)
            if leaf.input_value() == "sfx/rain":
                page.wait_for_timeout(1000)
                if leaf.input_value() == "sfx/rain":
                    break
        expect(leaf).to_have_value("sfx/rain")
        page.locator("#export-button").click()
        exported = page.locator("#export-yaml")
        expect(exported).to_contain_text("sfx:", timeout=TIMEOUT_MS)  # the code block fills in after the reply
        for line in ("rain:", "seed: 1234", "n_samples: 2", "--clip-length"):  # the seed used, fixed in the export
            expect(exported).to_contain_text(line)
        download = page.locator("#export-file a").first  # the whole file (the editor renders only the lines in view)
        expect(download).to_have_attribute("href", re.compile("tree.yaml"), timeout=TIMEOUT_MS)
        tree = page.request.get(download.get_attribute("href")).text()
        assert "    lora: tin-roof.safetensors\n    lora_strength: 0.25\n" in tree  # the adapter at the slider's strength

        page.wait_for_timeout(500)  # let the waveform finish drawing
        shot = tmp_path / "studio-generate.png"
        page.screenshot(path=str(shot), full_page=True)
        copy_if_requested(shot)
    assert shot.stat().st_size > 0
    assert outside == [], f"the page contacted other hosts: {outside}"


INVALID_TREE = """\
music:
  drum:
    loop:
      prompt: 128 BPM tech house drum loop
      secons_total: 2
sfx:
  rain: {prompt: rain on a roof, seconds_total: ten}
"""


def test_batch_tab_shows_every_yaml_error_with_its_path(studio, chromium, tmp_path) -> None:
    outside: list[str] = []
    with chromium_page(chromium, tmp_path / "profile", studio.rstrip("/"), outside) as page:
        page.goto(studio)
        page.get_by_role("tab", name="Batch").click()
        page.locator("#batch-yaml .cm-content").fill(INVALID_TREE)
        page.locator("#validate-button").click()
        page.wait_for_function(
            "() => document.querySelector('#batch-status textarea').value.includes('problems')", timeout=TIMEOUT_MS
        )
        status = page.locator("#batch-status textarea").input_value()
        page.screenshot(path=str(tmp_path / "studio-batch-errors.png"), full_page=True)
    assert "2 problems in tree.yaml" in status
    assert "tree.yaml:5: music/drum/loop/secons_total: unknown leaf field; did you mean 'seconds_total'?" in status
    assert "tree.yaml:7: sfx/rain/seconds_total: expected a number, got str 'ten'" in status
    assert outside == [], f"the page contacted other hosts: {outside}"
