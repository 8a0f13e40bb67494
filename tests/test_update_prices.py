"""scripts/update_prices.py: regenerating the bundled table from LiteLLM's file reproduces it,
aliases included."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import litellm
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "update_prices.py"
REFERENCE = Path(litellm.__file__).parent / "model_prices_and_context_window_backup.json"


def generate(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_regenerating_from_the_same_litellm_file_reproduces_the_bundled_table(tmp_path):
    out = tmp_path / "prices.json"
    result = generate(REFERENCE, out)
    assert result.returncode == 0, result.stderr
    assert "3592 models and 98 aliases" in result.stdout
    bundled = json.loads(
        resources.files("budget_manager.costs").joinpath("prices.json").read_text()
    )
    generated = json.loads(out.read_text())
    assert generated["models"] == bundled["models"]
    assert generated["metadata"]["source_sha256"] == bundled["metadata"]["source_sha256"]
    assert bundled["metadata"]["aliases"] == 98
    assert bundled["models"]["deepseek/deepseek-pro-latest"] == {
        "alias_of": "deepseek/deepseek-v4-pro"
    }


def test_aliases_are_kept_when_they_lead_to_a_kept_model(tmp_path):
    chat = {"mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    models = {f"model-{i}": dict(chat, litellm_provider="x") for i in range(100)}
    source = tmp_path / "source.json"
    source.write_text(
        json.dumps(
            {
                **models,
                "painter": {"mode": "image_generation", "output_cost_per_image": 0.04},
                "latest": {"alias_of": "model-1"},
                "best": {"alias_of": "latest"},
                "painter-latest": {"alias_of": "painter"},
                "dangling": {"alias_of": "gone"},
                "loop-a": {"alias_of": "loop-b"},
                "loop-b": {"alias_of": "loop-a"},
            }
        )
    )
    out = tmp_path / "prices.json"
    result = generate(source, out)
    assert result.returncode == 0, result.stderr
    kept = json.loads(out.read_text())["models"]
    assert kept["latest"] == {"alias_of": "model-1"}
    assert kept["best"] == {"alias_of": "latest"}
    assert not {"painter", "painter-latest", "dangling", "loop-a", "loop-b"} & set(kept)
    for name in ("dangling", "loop-a", "loop-b"):
        assert f"dropped alias {name!r}" in result.stderr
