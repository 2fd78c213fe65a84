"""Reading what a storyteller produced: a run folder, or a folder of ``{story_id}.txt`` files.

* a **run folder** (``storyreasoning tell-dataset --out``): ``manifest.json`` says who
  told the stories and how; ``records.jsonl`` holds one raw output per story id;
  stories in ``errors.jsonl`` without a record failed and count as missing. It is read
  with the run reader (:func:`storyreasoning.tell.run.load_run`: a line at a time, keeping
  only each story's raw text) and its rule for damaged files: a damaged line is skipped
  with a warning naming its line, its story counts as missing, and the stories after it
  are read as usual (``damaged`` lists the lines);
* a **folder of text files**, one ``{story_id}.txt`` per story with the raw model
  output, as the original evaluation read them (no manifest; the folder name labels it).

Both give a :class:`RunOutputs`.
"""

from __future__ import annotations

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
    damaged: list[str] = field(default_factory=list)  # "records.jsonl line 7: not JSON (…)", passed over

    def describe(self) -> dict:
        teller = self.manifest.get("teller", {})
        return {
            "path": str(self.path),
            "label": self.label,
            "kind": self.kind,
            "outputs": len(self.outputs),
            "failed": len(self.failed),
            "damaged_lines": list(self.damaged),
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
    from ..tell.run import MANIFEST, load_run

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
        run = load_run(path, fields=("raw",))  # damaged lines: a warning each, with its line number
        outputs = {record["story_id"]: record["raw"] for record in run.records}
        failed = {
            sid: str(error.get("error", "")) for sid, error in run.failures.items() if sid not in outputs
        }
        damaged = [f"{bad.path.name} line {bad.line}: {bad.problem}" for bad in run.damaged]
        label = label or _label(path, run.manifest)
        return RunOutputs(path, label, outputs, run.manifest, failed, "run", damaged)
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
