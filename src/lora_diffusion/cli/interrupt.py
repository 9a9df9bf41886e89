"""The one line printed on Ctrl-C: where training stopped, its last checkpoint, and the exact
command that resumes it (the same command with ``--resume``; a study resumes by itself)."""

from __future__ import annotations

import shlex

RESUMABLE = ("finetune", "pretrain")


def resume_command(command: str, argv: list[str]) -> str:
    args = [a for a in argv if a != "--overwrite"]
    if command in RESUMABLE and "--resume" not in args:
        args.append("--resume")
    return shlex.join(["lora-diffusion", *args])


def interrupted_message(command: str, argv: list[str], err: BaseException) -> str:
    from ..training.trainer import TrainingInterrupted

    if not isinstance(err, TrainingInterrupted):
        if command in (*RESUMABLE, "study", "demo"):
            return "interrupted before training started; nothing of this run was saved"
        if command == "evaluate":
            return ("interrupted; no result was written (outputs are written atomically, at the end); the "
                    f"finished batches are kept: run the same command again to go on: {shlex.join(['lora-diffusion', *argv])}")
        return "interrupted; nothing was written (outputs are written atomically, at the end)"
    where = f"interrupted at step {err.step}" + (f" ({err.phase})" if err.phase else "")
    if err.checkpoint is None:
        return (f"{where}; no checkpoint was saved yet (train.save_every), so there is nothing to resume: "
                f"run the same command again to start over (in {err.output_dir})")
    return f"{where}; last checkpoint: {err.checkpoint}; resume with: {resume_command(command, argv)}"
