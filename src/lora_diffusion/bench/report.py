"""Targets and the markdown table of a benchmark result (``bench.json`` -> ``bench.md``)."""

from __future__ import annotations

from typing import Any

from .harness import ratio


def reference(name: str, timed: dict[str, Any]) -> str:
    """The full fine-tuning entry a training time is read against: ``full+bf16`` for a method
    timed under bf16 autocast (``<method>+bf16``) where the bench timed it, else ``full``: a
    bf16 step is never compared with an fp32 one."""
    return "full+bf16" if name.endswith("+bf16") and "full+bf16" in timed else "full"


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the performance issue: measured value, bound, met or not."""
    out = []

    def add(name: str, value: float, bound: float, unit: str = "x", higher: bool = False, part: str = "") -> None:
        met = value >= bound if higher else value <= bound
        out.append({"target": name, "value": value, "bound": bound, "unit": unit, "met": bool(met),
                    **({"higher": True} if higher else {}), **({"part": part} if part else {})})

    tr, mem, inf = r.get("training", {}), r.get("memory", {}), r["inference"]
    lat = inf["latency"]
    for name in [m for m in tr if m.startswith("trajectory")]:  # the paper's and each benchmarked preset
        ref = reference(name, tr)
        if ref in tr:
            add(f"{name} train step / {'full FT' if ref == 'full' else ref}",
                ratio(tr[name]["median_s"], tr[ref]["median_s"]), 0.40)
    if "trajectory" in mem and "full" in mem:
        add("trajectory peak training memory / full FT",
            ratio(mem["trajectory"]["training_memory_mb"], mem["full"]["training_memory_mb"]), 0.35)
    add("trajectory generation latency / frozen base", ratio(lat["trajectory"]["median_s"], lat["base"]["median_s"]), 1.02)
    add("merged weight LoRA generation latency / frozen base",
        ratio(lat["lora-merged"]["median_s"], lat["base"]["median_s"]), 1.02)
    add(f"trunk passes per sample (bound: {inf['response_tokens']} response tokens)",
        inf["trunk_passes"]["event-driven"]["rows_per_sample"], inf["response_tokens"], unit="")
    add(f"mixed batch of {r['config']['tasks']} adapters / one adapter", inf["multitask"]["ratio"], 1.10)
    if "trajectory" in tr:
        add("trajectory adapter file (MB)", tr["trajectory"]["bytes_on_disk"] / 1e6, 5.0, unit=" MB")
    if r.get("decoding", {}).get("latency") and not r.get("latency"):  # a bench.json of an earlier version
        d, batch = r["decoding"], r["config"].get("decoding_batch")
        s = d["latency"]["setting"]
        add(f"trajectory generation latency / frozen base at {s} (batch {batch})",
            d["latency"]["trajectory_vs_base"]["ratio"], 1.02, part="decoding")
        add("noise floor of that latency ratio: |frozen base / frozen base - 1| (%)",
            100 * abs(d["latency"]["noise"]["ratio"] - 1.0), 1.0, unit="%", part="decoding")
    if r.get("latency"):
        lat = r["latency"]
        for s, t in lat["settings"].items():
            add(f"trajectory generation latency / frozen base at {s} (batch {lat['batch']}, {lat['rounds']} rounds)",
                t["trajectory_vs_base"]["ratio"], 1.02, part="latency")
            add(f"noise floor at {s}: |frozen base / frozen base - 1| (%)",
                100 * abs(t["noise"]["ratio"] - 1.0), 1.0, unit="%", part="latency")
    return out


def latency_markdown(r: dict[str, Any]) -> list[str]:
    """The bench's latency part: trajectory vs frozen base per setting, with the noise floor."""
    lat, c = r["latency"], r["config"]
    lines = ["", f"## Latency: trajectory vs frozen base (batch {lat['batch']}, length {c['length']}: "
             f"{lat['response_tokens']} generated; T = {c['num_steps']}; {lat['rounds']} interleaved rounds)", "",
             "| setting | passes / sample | base ms / sample | trajectory ms / sample | trajectory / base | "
             "per-round [min, max] | base again / base (noise floor) | per-round [min, max] |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, t in lat["settings"].items():
        tb, nz = t["trajectory_vs_base"], t["noise"]
        lines.append(f"| {s} | {t['passes_per_sample']['trajectory']:.2f} | {t['base_ms_per_sample']:.1f} | "
                     f"{t['trajectory_ms_per_sample']:.1f} | {tb['ratio']:.4f}x | [{tb['round_min']:.3f}, "
                     f"{tb['round_max']:.3f}] | {nz['ratio']:.4f}x ({100 * abs(nz['ratio'] - 1):.2f}%) | "
                     f"[{nz['round_min']:.3f}, {nz['round_max']:.3f}] |")
    return lines


def decoding_markdown(r: dict[str, Any]) -> list[str]:
    """The bench's decoding part: throughput per setting (and, in a bench.json of an earlier
    version, trajectory vs frozen base at one setting with its noise floor)."""
    d, c = r["decoding"], r["config"]
    lat = d.get("latency")
    lines = ["", f"## Parallel decoding (batch {c.get('decoding_batch')}, length {c['length']}: {c['prompt']} prompt "
             f"tokens, {d['response_tokens']} generated; T = {c['num_steps']}; the trajectory method)", "",
             "| setting | trunk calls | passes / sample | ms / sample: median [min, max] | samples/s | vs exact | "
             "per-round ratio [min, max] |", "|---|---:|---:|---:|---:|---:|---:|"]
    b = c.get("decoding_batch") or 1
    for name, t in d["settings"].items():
        q = t["throughput_vs_exact"]
        lines.append(f"| {name} | {t['calls']} | {t['passes_per_sample']:.2f} | {1000 * t['median_s'] / b:.1f} "
                     f"[{1000 * t['min_s'] / b:.1f}, {1000 * t['max_s'] / b:.1f}] | {t['samples_per_s']:.2f} | "
                     f"{q['ratio']:.2f}x | [{q['round_min']:.2f}, {q['round_max']:.2f}] |")
    if not lat:
        return lines
    tb, noise = lat["trajectory_vs_base"], lat["noise"]
    lines += ["", f"Trajectory / frozen base at {lat['setting']}: {tb['ratio']:.3f}x (per-round median "
              f"{tb['round_median']:.3f}, range [{tb['round_min']:.3f}, {tb['round_max']:.3f}]); trunk passes per "
              f"sample: base {lat['passes_per_sample']['base']:.2f}, trajectory "
              f"{lat['passes_per_sample']['trajectory']:.2f}. Noise floor: the frozen base timed twice in the same "
              f"rounds gives {noise['ratio']:.3f}x ({100 * abs(noise['ratio'] - 1):.2f}%; per-round range "
              f"[{noise['round_min']:.3f}, {noise['round_max']:.3f}]) over {lat['base']['runs']} rounds."]
    return lines


def _fmt(v: float, unit: str) -> str:
    return f"{v:.3f}{unit}" if unit == "x" else f"{v:.2f}{unit}"


def markdown(r: dict[str, Any]) -> str:
    c, m = r["config"], r["hardware"]
    lines = ["# Benchmark", "",
             f"Base `{c['base']}`; machine: {m['platform']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads"
             f"{', OMP_PROC_BIND=' + m['omp_proc_bind'] if m.get('omp_proc_bind') else ''}, "
             f"CUDA {'yes: ' + m.get('gpu', '') if m['cuda'] else 'no'}; commit `{r.get('git_commit')}`.",
             "Times are medians of interleaved rounds in one process (read the ratios on a CPU).",
             *[f"The {part} figures are kept from the run at commit `{commit}`." for part, commit in
               r.get("parts_reused", {}).items()], "",
             "## Targets", "", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['value'], t['unit'])} | "
                     f"{'>= ' if t.get('higher') else ''}{_fmt(t['bound'], t['unit'])} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    tr, mem = r.get("training", {}), r.get("memory", {})
    if tr:
        lines += ["", f"## Training step (batch {c['train_batch']} x {c['train_length']} tokens)", "",
                  "| method | trainable | step (s) | vs full | peak RSS (MB) | training memory (MB) | vs full | bytes on disk |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, t in tr.items():
            mm, ref = mem.get(name), tr.get(reference(name, tr))
            ref_mem = mem.get("full", {}).get("training_memory_mb")
            memory = (f"{mm['peak_rss_mb']:.0f} | {mm['training_memory_mb']:.0f} | "
                      f"{ratio(mm['training_memory_mb'], ref_mem or 0):.2f}x") if mm else "- | - | -"  # not measured
            lines.append(
                f"| {name} | {t['trainable_parameters']:,} | {t['median_s']:.3f} | "
                f"{ratio(t['median_s'], ref['median_s']) if ref else float('nan'):.2f}x | {memory} | "
                f"{t['bytes_on_disk']:,} |")
        lines += ["", "Step ratios of a `+bf16` entry (trained under bfloat16 autocast) are against `full+bf16` where it "
                  "was timed.", "", "Training memory = peak RSS minus RSS after imports (weights, gradients, optimiser state, "
                  "activations); each method measured in its own process."]
    inf = r["inference"]
    base = inf["latency"]["base"]["median_s"]
    lines += ["", f"## Generation (batch {c['batch']}, length {c['length']}: {c['prompt']} prompt tokens, "
              f"{inf['response_tokens']} generated; T = {c['num_steps']})", "",
              "| configuration | per sample (ms) | vs frozen base |", "|---|---:|---:|"]
    for name, t in inf["latency"].items():
        lines.append(f"| {name} | {1000 * t['per_sample_s']:.1f} | {ratio(t['median_s'], base):.3f}x |")
    lines += ["", "| sampler | trunk calls per batch | trunk passes per sample |", "|---|---:|---:|"]
    for name, p in inf["trunk_passes"].items():
        lines.append(f"| {name} | {p['calls']} | {p['rows_per_sample']:.1f} |")
    mt = inf["multitask"]
    lines += ["", "## One trunk pass for many tasks", "", "| batch | median (s) |", "|---|---:|"]
    lines += [f"| {name} | {t['median_s']:.3f} |" for name, t in mt["times"].items()]
    lines += ["", f"ratio: {mt['ratio']:.3f}x", ""]
    if r.get("decoding"):
        lines += decoding_markdown(r) + [""]
    if r.get("latency"):
        lines += latency_markdown(r) + [""]
    return "\n".join(lines)
