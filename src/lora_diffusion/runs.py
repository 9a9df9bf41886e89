"""A run's output directory: fresh, interrupted or finished, and what ``--resume`` and
``--overwrite`` may do with it (``finetune`` and ``pretrain``).

- A directory holding an earlier run's outputs (a finished run's ``result.json`` /
  ``pretrain_summary.json``, an adapter or model, or checkpoints) is refused unless
  ``--resume`` (continue it) or ``--overwrite`` (discard it, once every input has been
  checked and just before training starts) is given.
- ``--resume`` needs a checkpoint (or a finished run), and the configuration recorded with
  it must equal the new one except for the fields in ``RESUME_IGNORED``, which change how a
  run is logged and saved, never what it computes; a difference is refused naming the dotted
  fields. A finished run is never retrained nor re-recorded: ``--resume`` of it returns what
  it recorded and writes nothing.
- The directory must be writable (checked before any work).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError
from .training.checkpoint import STATE_FILE, list_checkpoints
from .utils.io import check_writable_dir

log = logging.getLogger(__name__)

# How a run is logged and saved, never what it computes: a resumed run may change them.
RESUME_IGNORED = ("output_dir", "train.log_every", "train.save_every", "train.keep_checkpoints", "train.tensorboard")
WHOLE = ("method_options", "task_overrides", "method_lr", "task_seeds")  # mappings compared as one value


class RunStateError(FileExistsError):
    """The output directory holds a run that this command may not continue or replace."""


@dataclass
class RunDir:
    path: Path
    finished: Path | None  # the record of a finished run
    outputs: list[Path] = field(default_factory=list)  # what an earlier run left (checkpoints aside)
    checkpoints: list[Path] = field(default_factory=list)


def inspect_run(path: str | Path, finished_marker: str, outputs: tuple[str, ...]) -> RunDir:
    path = Path(path)
    marker = path / finished_marker
    found = [path / n for n in outputs if (path / n).exists()]
    return RunDir(path, marker if marker.is_file() else None, found, list_checkpoints(path / "checkpoints"))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and k not in WHOLE:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# Fields added after runs had been recorded whose default is not what the older versions did: an
# older record without the field is read as holding this value (the rank penalty was in the loss
# before ``rank_penalty`` existed; its default became the proximal step).
LEGACY_VALUES: dict[str, Any] = {"method_config.rank_penalty": "loss"}


def _plain(tree: dict[str, Any]) -> dict[str, Any]:
    return flatten(json.loads(json.dumps(tree, default=str)))


def config_diff(stored: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = RESUME_IGNORED,
                defaults: dict[str, Any] | None = None) -> list[str]:
    """Dotted fields whose values differ. Sections only one side has (a config recorded by an
    older version) are not compared. A field the stored record lacks (added by a later version)
    is read as its ``LEGACY_VALUES`` entry, else as its value in ``defaults`` (the nested
    defaults of the configuration: a field added later defaults to the older behaviour). Where
    both sides record the method's resolved options (``method_config``) those are compared and
    the overrides they came from (``method_options``) are not."""
    a, b = _plain(stored), _plain(new)
    known = _plain(defaults or {})
    for key, value in LEGACY_VALUES.items():
        known[key] = value
    tops_a, tops_b = {k.split(".")[0] for k in a}, {k.split(".")[0] for k in b}
    both = tops_a & tops_b
    if "method_config" in both:  # the resolved options are compared field by field, not the overrides given
        ignore = (*ignore, "method_options")
    keys = sorted(k for k in set(a) | set(b) if k.split(".")[0] in both)
    return [k for k in keys if k not in ignore and a.get(k, known.get(k, "<absent>")) != b.get(k, "<absent>")]


def _describe(diff: list[str], stored: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = _plain(stored), _plain(new)
    shown = [f"{k} ({a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r})" for k in diff[:6]]
    return ", ".join(shown) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")


def stored_config(run: RunDir) -> tuple[dict[str, Any] | None, Path | None]:
    """The configuration recorded by the run: its finished record's ``config``, else the
    newest checkpoint's ``run_config``."""
    sources = ([run.finished] if run.finished else []) + [c / STATE_FILE for c in reversed(run.checkpoints)]
    for source in sources:
        try:
            data = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunStateError(f"{source}: unreadable ({err}); cannot tell how the run was configured") from None
        key = "config" if source == run.finished else "run_config"
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            return data[key], source
    return None, None


def prepare_run(path: str | Path, *, resume: bool, overwrite: bool, config: dict[str, Any], finished_marker: str,
                outputs: tuple[str, ...], command: str, defaults: dict[str, Any] | None = None) -> str:
    """Check the output directory before any work: ``"fresh"`` (start; with ``overwrite``
    the caller discards the earlier run just before training), ``"resume"`` (continue from
    the newest checkpoint) or ``"finished"`` (``resume`` of a finished run: nothing to do).
    ``defaults``: the configuration's defaults, for records made before a field existed
    (``config_diff``)."""
    path = Path(path)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: give one")
    check_writable_dir(path, "output_dir")
    run = inspect_run(path, finished_marker, outputs)
    if overwrite:
        return "fresh"
    if resume:
        if not run.finished and not run.checkpoints:
            what = f" (it holds {', '.join(p.name for p in run.outputs)})" if run.outputs else ""
            raise RunStateError(f"nothing to resume: {path} holds no checkpoint{what}; run without --resume to "
                                "start a new run" + (", with --overwrite to discard what is there" if what else ""))
        stored, source = stored_config(run)
        if stored is None:
            log.warning("%s records no configuration (saved by an older version): not compared", path)
        else:
            diff = config_diff(stored, config, defaults=defaults)
            if diff:
                raise RunStateError(
                    f"--resume with another configuration than the run's ({source}): {_describe(diff, stored, config)}; "
                    f"resume with the run's own settings, or start a new run in another --output-dir")
        return "finished" if run.finished else "resume"
    if run.finished:
        raise RunStateError(f"{path} holds a finished run ({run.finished.name}): pass --overwrite to replace it, "
                            f"or choose another --output-dir (nothing was written)")
    if run.checkpoints:
        raise RunStateError(f"{path} already holds checkpoints of a run (newest {run.checkpoints[-1].name}): pass "
                            f"--resume to continue it, --overwrite to start over, or choose another --output-dir "
                            f"(nothing was written)")
    if run.outputs:
        raise RunStateError(f"{path} holds the outputs of an earlier {command} run "
                            f"({', '.join(p.name for p in run.outputs)}): pass --overwrite to replace them, or "
                            f"choose another --output-dir (nothing was written)")
    return "fresh"


def clear_run(path: str | Path, outputs: tuple[str, ...]) -> None:
    """Discard an earlier run's outputs and checkpoints (``--overwrite``, after every check;
    under DDP the main process deletes and the others wait)."""
    path = Path(path)
    targets = [path / n for n in (*outputs, "checkpoints") if (path / n).exists()]
    targets += sorted(path.glob("predictions_*.jsonl"))
    if not targets:
        return
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        for target in targets:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    state.wait_for_everyone()


def check_same_base(result_path: str | Path, base: str) -> None:
    """A finished run kept by a study must have run on the weights ``base`` holds now: a run
    that recorded another base's digest is refused (a base rebuilt on a new machine under the
    same path is not the same base); one that recorded none (made before runs recorded it) is
    kept and counted as such by ``base_weights_summary``."""
    from .utils.repro import base_record

    recorded = (json.loads(Path(result_path).read_text()).get("base_weights") or {}).get("sha256")
    current = base_record(base)["sha256"]
    if recorded and current and recorded != current:
        raise ConfigError(f"{result_path}: made on base weights {recorded[:12]}, but {base} now holds "
                          f"{current[:12]}: write this study to another output_dir (or remove the run)", field="base")


def base_of(result: dict[str, Any]) -> str | None:
    """The SHA-256 prefix (12) of the base a run recorded, None for a run made before runs
    recorded it."""
    sha = (result.get("base_weights") or {}).get("sha256")
    return sha[:12] if sha else None


def base_weights_summary(study_dir: str | Path) -> str:
    """One line for a report: the bases a study's runs were made on (``base_weights`` in each
    ``result.json``), by SHA-256 prefix and count."""
    counts: dict[str | None, int] = {}
    for path in sorted(Path(study_dir).rglob("result.json")):
        key = base_of(json.loads(path.read_text()))
        counts[key] = counts.get(key, 0) + 1
    parts = [f"`{k}` ({n} runs)" for k, n in counts.items() if k]
    if counts.get(None):
        parts.append(f"not recorded ({counts[None]} runs, made before runs recorded their base's digest)")
    line = "Base weights (SHA-256 of the base's weight files, `base_weights` in each result.json): " + "; ".join(parts)
    if len([k for k in counts if k]) > 1:
        return line + ". More than one: compare runs made on one base only."
    if len(counts) > 1:  # one digest and runs without one
        return line + (". A run without a digest may have been made on another base: compare it with the others "
                       "only where re-runs of its cells reproduce it (`python -m lora_diffusion.reproduction`).")
    return line + "."
