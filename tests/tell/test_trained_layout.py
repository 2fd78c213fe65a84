"""A model folder storyreasoning trained is asked in the layout it was trained with.

``train sft --order text-first`` puts the prompt before the frames in every training example and
records ``settings.order`` in ``final/storyreasoning.json`` (a merged folder keeps it).
``tell --model FOLDER`` and ``tell-dataset --model FOLDER`` take that order unless ``--order`` (or a
config file) gives one; a hub id, or a folder no training wrote, is asked images-first as before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from storyreasoning.data import write_folders
from storyreasoning.tell.base import Prompt, Sampling

from ..conftest import run_cli
from ..data.fixtures import fixture_samples

GREEDY = Sampling(temperature=0, max_new_tokens=8)
# a quick prompt, yet enough of each frame that the layout changes the tiny model's output
SMALL = 16 * 28 * 28


def manifest(order: str, *, mode: str = "full") -> dict:
    """``final/storyreasoning.json`` as ``train sft`` writes it (train/job.py ``finish``)."""
    from storyreasoning.train.settings import SFTSettings

    settings = SFTSettings(source="data", out=Path("runs/x"), order=order, mode=mode)
    return {"kind": "sft", "base_model": settings.to_dict()["model"], "revision": None, "commit": None,
            "mode": mode, "adapter": mode == "lora", "settings": settings.to_dict(), "fit": {},
            "parameters": {}, "steps": 1, "metrics": {}, "resumed_from": None, "invocations": 1}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_qwen, tmp_path_factory) -> Path:
    """The tiny model as a ``train sft --mode full --order text-first`` run's ``final/``."""
    final = tmp_path_factory.mktemp("run") / "final"
    shutil.copytree(tiny_qwen, final)
    (final / "storyreasoning.json").write_text(json.dumps(manifest("text-first"), indent=2), encoding="utf-8")
    return final


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[Path]:
    import numpy as np

    folder = tmp_path_factory.mktemp("frames")
    noise = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(folder / f"{i + 1}.png")
        Image.fromarray(noise.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def told(trained, frames) -> dict[str, str]:
    """The greedy output of the trained folder in each order, as the teller is asked directly."""
    from storyreasoning.tell.local import TransformersTeller

    with TransformersTeller(str(trained), device="cpu", min_pixels=SMALL, max_pixels=SMALL) as teller:
        raws = {
            order: teller.tell(frames, prompt=Prompt(order=order), sampling=GREEDY).raw
            for order in ("images-first", "text-first")
        }
    # the premise: the layout changes what this model says, so the output tells which it was asked in
    assert raws["images-first"] != raws["text-first"]
    return raws


def tell_json(model: Path, frames: list[Path], capsys, **options) -> tuple[str, str]:
    """``tell FRAMES --model MODEL --json`` run in this process: the raw output and the stderr."""
    from storyreasoning.tell.commands import tell
    from storyreasoning.tell.settings import TellSettings

    capsys.readouterr()
    settings = TellSettings(
        images=tuple(frames), model=str(model), device="cpu", min_pixels=SMALL, max_pixels=SMALL,
        temperature=0, max_new_tokens=GREEDY.max_new_tokens, as_json=True, **options,
    )  # fmt: skip
    assert tell(settings) == 0
    out = capsys.readouterr()
    return json.loads(out.out)["raw"], out.err


def test_a_folder_trained_text_first_is_asked_text_first(trained, frames, told, capsys):
    raw, err = tell_json(trained, frames, capsys)
    assert raw == told["text-first"]
    assert err.count(f"order text-first, as {trained} was trained") == 1


def test_an_order_given_wins_over_the_trained_one(trained, frames, told, capsys):
    raw, err = tell_json(trained, frames, capsys, order="images-first")
    assert raw == told["images-first"]
    assert "was trained" not in err


def test_a_folder_no_training_wrote_is_asked_images_first_as_before(tiny_qwen, frames, capsys):
    """The tiny model has no storyreasoning.json: today's default, and nothing more said."""
    from storyreasoning.tell.local import TransformersTeller

    with TransformersTeller(str(tiny_qwen), device="cpu", min_pixels=SMALL, max_pixels=SMALL) as teller:
        expected = teller.tell(frames, prompt=Prompt(), sampling=GREEDY).raw
    raw, err = tell_json(Path(tiny_qwen), frames, capsys)
    assert raw == expected
    assert "order" not in err


def test_where_the_order_comes_from(tmp_path, trained):
    """A hub id and a folder without a training record keep images-first; a merged folder or a LoRA
    ``final/`` says its training's order; an option given always wins."""
    from storyreasoning.tell.commands import prompt_layout
    from storyreasoning.tell.local import trained_order
    from storyreasoning.tell.settings import TellDatasetSettings, TellSettings

    adapter = tmp_path / "lora" / "final"
    adapter.mkdir(parents=True)
    (adapter / "storyreasoning.json").write_text(
        json.dumps(manifest("text-first", mode="lora")), encoding="utf-8"
    )
    merged = tmp_path / "merged"  # train merge of an adapter that had no record: no settings
    merged.mkdir()
    (merged / "storyreasoning.json").write_text(
        json.dumps({"kind": "merge", "adapter": False}), encoding="utf-8"
    )
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "storyreasoning.json").write_text('{"settings": {"order": "sideways"', encoding="utf-8")
    assert trained_order(str(trained)) == "text-first"
    assert trained_order(str(adapter)) == "text-first"
    for model in ("daniel3303/QwenStoryteller2", str(merged), str(damaged), str(tmp_path / "absent")):
        assert trained_order(model) is None

    said: list[str] = []
    for cls, made in (
        (TellSettings, {"images": ()}),
        (TellDatasetSettings, {"source": "d", "out": tmp_path}),
    ):
        assert cls(**made).order is None  # not given: the model's, else images-first
        assert prompt_layout(cls(**made, model=str(adapter)), said.append).order == "text-first"
        assert said.pop() == f"order text-first, as {adapter} was trained" and not said
        given = cls(**made, model=str(adapter), order="images-first")
        assert prompt_layout(given, said.append) == given and not said
        hub = cls(**made, model="daniel3303/QwenStoryteller2")
        assert prompt_layout(hub, said.append).order == "images-first" and not said
        assert prompt_layout(cls(**made), said.append).order == "images-first" and not said
        # a server or the baseline is not the folder: its record is not theirs
        baseline = cls(**made, model=str(adapter), teller="baseline")
        assert prompt_layout(baseline, said.append).order == "images-first" and not said
    # the Python API, without the command: today's default
    assert TellSettings(images=(), model=str(adapter)).as_prompt().order == "images-first"


def test_tell_dataset_records_the_order_it_asked_in(trained, tmp_path, capsys):
    from storyreasoning.settings import from_config
    from storyreasoning.tell.commands import tell_dataset
    from storyreasoning.tell.settings import TellDatasetSettings

    write_folders(fixture_samples(1), tmp_path / "stories")
    common = dict(source=str(tmp_path / "stories"), model=str(trained), device="cpu", min_pixels=SMALL,
                  max_pixels=SMALL, temperature=0, max_new_tokens=4)  # fmt: skip
    capsys.readouterr()
    assert tell_dataset(TellDatasetSettings(out=tmp_path / "run", **common)) == 0
    assert capsys.readouterr().err.count(f"order text-first, as {trained} was trained") == 1
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["prompt"]["order"] == "text-first"
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["order"] == "text-first"

    config = tmp_path / "config.yaml"  # a config file's order wins too
    config.write_text("order: images-first\n", encoding="utf-8")
    assert tell_dataset(from_config(TellDatasetSettings, config, out=tmp_path / "again", **common)) == 0
    assert "was trained" not in capsys.readouterr().err
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["prompt"]["order"] == "images-first"


@pytest.mark.slow  # a real process loading the model: CI runs it in its slow pass
def test_the_command_line_order_wins(trained, frames, told):
    common = ["--model", str(trained), "--device", "cpu", "--min-pixels", str(SMALL), "--max-pixels", str(SMALL),
              "--temperature", "0", "--max-new-tokens", str(GREEDY.max_new_tokens), "--json"]  # fmt: skip
    for flags, order in (((), "text-first"), (("--order", "images-first"), "images-first")):
        result = run_cli("tell", *map(str, frames), *common, *flags)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["raw"] == told[order]
        assert ("was trained" in result.stderr) is not flags
