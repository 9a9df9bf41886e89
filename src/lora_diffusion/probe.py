"""Probes of the frozen base: what a classifier reading the frozen trunk's features reaches.

A method that keeps the trunk frozen and reads its hidden states (the trajectory method and its
``paper`` / ``lean`` / ``mix`` variants) predicts a label from what the trunk computes on x_T: the
prompt clean and the response position masked, at t = T. Fitting classifiers to those features
with every training row tells what such a reader can get out of them, beside what full
fine-tuning gets by changing them (methods that change the trunk's computation, as BitFit,
prefix tuning, weight LoRA, adapters and the ``deep`` variant do, are not bounded by it).

Features, per layer l = 0 (embeddings) .. n, of a row with prompt positions P and response
position m (the label word's, masked):

    f_l = [ h^l_m ,  (1/|P|) sum_{i in P} h^l_i ]          (2 D values)

Feature sets: ``head`` (h^n_m: what the output head reads), ``last`` (f_n) and ``all``
(f_0 .. f_n concatenated, (n + 1) 2 D values). Classifiers: multinomial logistic regression on
standardised features, its inverse regularisation C chosen on the validation rows (carved from
train with the seed, never the reported split), and an MLP (one hidden layer, early stopping on
a tenth of the training rows) on ``all``. Also the untrained base's own answer: the head's
argmax over the label words at m.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import ConfigError
from .data.encoding import pad_collate
from .prompt_cache import prompt_layout

FEATURE_SETS = ("head", "last", "all")
C_GRID = (0.01, 0.1, 1.0)


@dataclass
class Features:
    """Frozen features of a split: ``layers`` (N, n + 1, 2, D) (response position, prompt mean per
    layer), ``labels`` (N,), ``zero_shot`` (N,) the base head's label (argmax over the label words)."""

    layers: np.ndarray
    labels: np.ndarray
    zero_shot: np.ndarray

    def select(self, name: str) -> np.ndarray:
        """(N, F) features of set ``name`` (``head``, ``last`` or ``all``)."""
        n = len(self.layers)
        if name == "head":
            return self.layers[:, -1, 0]
        if name == "last":
            return self.layers[:, -1].reshape(n, -1)
        if name == "all":
            return self.layers.reshape(n, -1)
        raise ConfigError(f"feature set {name!r}: choose from {', '.join(FEATURE_SETS)}", field="features")


@torch.no_grad()
def frozen_features(backbone, data, label_token_ids: dict[int, int], batch_size: int = 64) -> Features:
    """Features of every row of ``data`` (classification rows: one response position, a
    ``label``) from one frozen trunk pass at t = T with the response position masked."""
    backbone.eval()
    T = backbone.diffusion.num_steps
    labels_sorted = sorted(label_token_ids)
    word_ids = torch.tensor([label_token_ids[k] for k in labels_sorted])
    feats, labels, zero = [], [], []
    for start in range(0, len(data), batch_size):
        batch = pad_collate([data[i] for i in range(start, min(start + batch_size, len(data)))], backbone.pad_token_id)
        gmask, attn = batch["generate_mask"].bool(), batch["attention_mask"]
        if "label" not in batch or bool((gmask.sum(1) != 1).any()):
            raise ConfigError("probes need a classification task (one label word per row)", field="task")
        x_t = batch["input_ids"].masked_fill(gmask, backbone.mask_token_id)
        steps = torch.full((x_t.shape[0],), T)
        with prompt_layout(backbone, gmask, attn):
            last, states = backbone.hidden_states(x_t, attn, steps, all_layers=True)
        rows, pos = torch.arange(x_t.shape[0]), gmask.float().argmax(1)
        instr = batch["instruction_mask"].float()[..., None]
        per_layer = [torch.stack([h[rows, pos], (h * instr).sum(1) / instr.sum(1).clamp(min=1)], 1) for h in states]
        feats.append(torch.stack(per_layer, 1).float())
        labels.append(batch["label"])
        scores = backbone.head(last[rows, pos])[:, word_ids]
        zero.append(torch.tensor(labels_sorted)[scores.argmax(-1)])
    return Features(torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(zero).numpy())


def fit_probes(train: Features, validation: Features, test: Features, seed: int = 0, mlp: bool = True,
               c_grid: tuple[float, ...] = C_GRID) -> list[dict[str, Any]]:
    """One row per (feature set, classifier): the choice made on ``validation`` and the accuracy
    on ``test`` of that choice only (the others' test accuracies are never computed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = [{"features": "-", "classifier": "base head (untrained)", "dims": 0, "choice": "-",
            "validation_accuracy": float((validation.zero_shot == validation.labels).mean()),
            "test_accuracy": float((test.zero_shot == test.labels).mean()), "seconds": 0.0}]
    for name in FEATURE_SETS:
        start, tried = time.perf_counter(), {}
        for c in c_grid:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            clf.fit(train.select(name), train.labels)
            tried[c] = (float(clf.score(validation.select(name), validation.labels)), clf)
        c_best = max(tried, key=lambda c: (tried[c][0], -c))  # ties: the stronger regularisation
        val, clf = tried[c_best]
        out.append({"features": name, "classifier": "logistic regression", "dims": train.select(name).shape[1],
                    "choice": f"C={c_best:g} of {list(c_grid)}", "validation_accuracy": val,
                    "validation_by_choice": {f"C={c:g}": v for c, (v, _) in tried.items()},
                    "test_accuracy": float(clf.score(test.select(name), test.labels)),
                    "seconds": time.perf_counter() - start})
    if mlp:
        start = time.perf_counter()
        clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True,
                                                            max_iter=100, random_state=seed))
        clf.fit(train.select("all"), train.labels)
        out.append({"features": "all", "classifier": "MLP (256 hidden, early stopping)",
                    "dims": train.select("all").shape[1], "choice": "-",
                    "validation_accuracy": float(clf.score(validation.select("all"), validation.labels)),
                    "test_accuracy": float(clf.score(test.select("all"), test.labels)),
                    "seconds": time.perf_counter() - start})
    return out


def probe_markdown(result: dict[str, Any]) -> str:
    r = result["rows"]
    lines = [f"# Frozen-feature probes: {result['task']}", "",
             f"Base `{result['base']}`; features from one frozen trunk pass at t = T (the label position masked); "
             f"{r['train']} training rows, {r['validation']} validation rows (carved from train, seed "
             f"{result['seed']}; every choice made there), reported split `{result['eval_split']}` "
             f"({r['test']} rows, each classifier evaluated once).", "",
             "| features | classifier | dims | choice | validation acc. | reported-split acc. | fit (s) |",
             "|---|---|---:|---|---:|---:|---:|"]
    for p in result["probes"]:
        lines.append(f"| {p['features']} | {p['classifier']} | {p['dims']} | {p['choice']} | "
                     f"{100 * p['validation_accuracy']:.1f} | {100 * p['test_accuracy']:.1f} | {p['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def run_probe(task: str, base: str, data_root: str, output_dir: str, validation_rows: int = 1000, seed: int = 42,
              max_train_rows: int = 0, eval_rows: int = 0, mlp: bool = True, overwrite: bool = False,
              batch_size: int = 64, data_dir: str = "") -> dict[str, Any]:
    """Probes of ``base`` on ``task`` (its train rows less the seeded validation rows, as a
    ``finetune`` run with the same ``validation_rows`` and seed carves them; its reported
    split), written to ``output_dir``/probe.{json,md}; an existing result is kept unless
    ``overwrite``. ``data_dir``: the task's folder (default: its folder under ``data_root``)."""
    from pathlib import Path

    from .config import from_dict
    from .data.sources import subsample
    from .finetune import FinetuneConfig, encode_for, max_positions, split_validation
    from .hub import load_base
    from .utils.io import atomic_write_json, atomic_write_text, check_writable_dir
    from .utils.repro import provenance

    out = check_writable_dir(output_dir, "--output-dir")
    if (out / "probe.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'probe.json'} exists: pass --overwrite to replace it")
    if validation_rows < 1:
        raise ConfigError(f"validation_rows: the probes choose on validation rows, got {validation_rows}",
                          field="validation_rows")
    cfg = from_dict(FinetuneConfig, {"base": base, "task": task, "data_root": data_root, "data_dir": data_dir,
                                      "output_dir": str(out)})
    backbone = load_base(base)
    tok, positions = backbone.tokenizer, max_positions(backbone)
    prepared = cfg.data_source(tok, positions)
    if prepared.kind != "classification":
        raise ConfigError(f"task {task!r} is {prepared.kind}: probes need a classification task", field="task")
    train_ex, val_ex = split_validation(prepared.train, validation_rows, seed)
    encoded = {name: encode_for(prepared, ex, tok, positions) for name, ex in
               (("train", train_ex[: max_train_rows or None]), ("validation", val_ex),
                ("test", subsample(prepared.eval, eval_rows)))}
    start = time.perf_counter()
    feats = {k: frozen_features(backbone, v, v.label_token_ids, batch_size) for k, v in encoded.items()}
    result = {"task": task, "base": base, "eval_split": prepared.eval_split, "seed": seed,
              "rows": {k: len(v) for k, v in encoded.items()}, "feature_seconds": time.perf_counter() - start,
              "probes": fit_probes(feats["train"], feats["validation"], feats["test"], seed=seed, mlp=mlp),
              "config": {"validation_rows": validation_rows, "max_train_rows": max_train_rows, "eval_rows": eval_rows,
                         "c_grid": list(C_GRID), "mlp": mlp, "data_root": data_root, "data_dir": data_dir},
              **provenance(seed, base=base)}
    atomic_write_json(Path(out) / "probe.json", result)
    atomic_write_text(Path(out) / "probe.md", probe_markdown(result))
    return result


def summary_markdown(results: list[dict[str, Any]]) -> str:
    """One table over tasks: each probe's reported-split accuracy (the choice made on validation)."""
    names = [(p["features"], p["classifier"]) for p in results[0]["probes"]]
    lines = ["| task | train rows | reported split | " + " | ".join(f"{c} ({f})" if f != "-" else c for f, c in names)
             + " |", "|---|---:|---|" + "---:|" * len(names)]
    for r in results:
        acc = {(p["features"], p["classifier"]): p["test_accuracy"] for p in r["probes"]}
        lines.append(f"| {r['task']} | {r['rows']['train']:,} | {r['eval_split']} ({r['rows']['test']:,}) | "
                     + " | ".join(f"{100 * acc[n]:.1f}" if n in acc else "-" for n in names) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m lora_diffusion.probe DIR... : the summary table of probe.json files
    import json
    import sys
    from pathlib import Path

    print(summary_markdown([json.loads((Path(d) / "probe.json").read_text()) for d in sys.argv[1:]]), end="")
