"""Reading what a storyteller produced: a run folder, or a folder of ``{story_id}.txt`` files.

* a **run folder** (``storyreasoning tell-dataset --out``): ``manifest.json`` says who
  told the stories and how; ``records.jsonl`` holds one raw output per story id;
  stories in ``errors.jsonl`` without a record failed and count as missing;
* a **folder of text files**, one ``{story_id}.txt`` per story with the raw model
  output, as the original evaluation read them (no manifest; the folder name labels it).

Both give a :class:`RunOutputs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError


@dataclass
class RunOutputs:
    """The raw outputs of one run, by story id, with what is known of how they were made."""

    path: Path
    label: str
    outputs: dict[str, str]
    manifest: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # story id -> error message
    kind: str = "run"  # "run" | "texts"

    def describe(self) -> dict:
        teller = self.manifest.get("teller", {})
        return {
            "path": str(self.path),
            "label": self.label,
            "kind": self.kind,
            "outputs": len(self.outputs),
            "failed": len(self.failed),
            "teller": teller,
            "sampling": self.manifest.get("sampling"),
            "dataset": self.manifest.get("dataset"),
        }


def _label(path: Path, manifest: dict) -> str:
    teller = manifest.get("teller") or {}
    model = teller.get("model")
    return f"{path.name} ({model})" if model and model not in path.name else path.name


def load_outputs(path: str | Path, *, label: str | None = None) -> RunOutputs:
    """The outputs in ``path``: a run folder or a folder of ``{story_id}.txt`` files."""
    from ..tell.run import ERRORS, MANIFEST, read_run

    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"run {path} does not exist; give a tell-dataset --out folder or a folder of .txt outputs"
        )
    if not path.is_dir():
        raise UsageError(
            f"run {path} is a file; give a tell-dataset --out folder or a folder of {{story_id}}.txt files"
        )
    if (path / MANIFEST).is_file():
        manifest, records = read_run(path)
        outputs = {}
        for record in records:
            if "story_id" in record and isinstance(record.get("raw"), str):
                outputs[str(record["story_id"])] = record["raw"]
        failed: dict[str, str] = {}
        errors = path / ERRORS
        if errors.is_file():
            for line in errors.read_text(encoding="utf-8").splitlines():
                try:
                    error = json.loads(line)
                except json.JSONDecodeError:
                    continue
                sid = str(error.get("story_id"))
                if sid not in outputs:
                    failed[sid] = str(error.get("error", ""))
        return RunOutputs(path, label or _label(path, manifest), outputs, manifest, failed, "run")
    texts = sorted(path.glob("*.txt"))
    if not texts:
        raise UsageError(
            f"{path} is neither a run folder (no manifest.json) nor a folder of {{story_id}}.txt outputs"
        )
    outputs = {}
    for file in texts:
        try:
            outputs[file.stem] = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    return RunOutputs(path, label or path.name, outputs, {}, {}, "texts")
