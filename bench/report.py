"""The issue's targets, checked against a results dict, and the Markdown report.

    python -m bench.report bench/results/2025-01-01.json   # re-renders the .md next to it
"""

import json
import os
import sys

TARGETS = [
    # name, what, kind ("ratio" = at least x baseline, "min" = at least value, "max" = at most value), target
    ("pipeline", "Pipeline chars/s vs baseline (shakespeare lines, cold: cache=False)", "ratio", 20.0),
    ("pipeline_cached", "Pipeline chars/s vs baseline (same, default cache=True: epochs 2+)", "ratio", 20.0),
    ("training", "Training real chars/s vs baseline (LSTM 128, best batch)", "ratio", 10.0),
    ("padding", "Padding with bucketing (worst batch size)", "max", 0.10),
    ("quality", "Validation bits/char lower than baseline at equal time", "min", 0.5),
    ("generation_single", "Generation, 1 prompt: chars/s vs baseline (default graph)", "ratio", 2500.0),
    ("generation_single_xla", "Generation, 1 prompt: chars/s vs baseline (jit_compile=True)", "ratio", 2500.0),
    ("generation_batch", "Generation, 64 prompts: aggregate chars/s (default graph)", "min", 200_000.0),
    ("generation_batch_xla", "Generation, 64 prompts: aggregate chars/s (jit_compile=True)", "min", 200_000.0),
    ("tflite_step", "TFLite step median latency (us), default model", "max", 50.0),
]


def _get(results, section, key):
    value = (results.get(section) or {}).get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def targets(results):
    values = {
        "pipeline": _get(results, "pipeline", "ratio"),
        "pipeline_cached": _get(results, "pipeline", "ratio_cached"),
        "training": _get(results, "training", "ratio_best"),
        "padding": _get(results, "training", "padding_bucketed_max"),
        "quality": _get(results, "quality", "improvement_bits_per_char"),
        "generation_single": _get(results, "generation", "single_ratio"),
        "generation_single_xla": _get(results, "generation", "single_xla_ratio"),
        "generation_batch": _get(results, "generation", "package_batch_chars_per_s"),
        "generation_batch_xla": _get(results, "generation", "package_batch_xla_chars_per_s"),
        "tflite_step": _get(results, "generation", "tflite_step_median_us"),
    }
    out = []
    for name, what, kind, target in TARGETS:
        value = values[name]
        if value is None:
            met, of_target = None, None
        elif kind == "max":
            met, of_target = value <= target, (value / target if target else None)
        else:
            met, of_target = value >= target, value / target
        out.append({"name": name, "what": what, "kind": kind, "target": target, "value": value,
                    "value_over_target": of_target, "met": met})
    return out


# -- Markdown ----------------------------------------------------------------------
def _n(x, digits=0, pct=False):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if pct:
        return f"{x:.1%}"
    if abs(x) >= 1e4 or digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def _x(x):
    return "n/a" if x is None else f"{x:,.1f}x"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _target_value(t):
    v = t["value"]
    if v is None:
        return "n/a"
    if t["name"] in ("pipeline", "pipeline_cached", "training", "generation_single", "generation_single_xla"):
        return _x(v)
    if t["name"] == "padding":
        return _n(v, pct=True)
    if t["name"] == "quality":
        return f"{v:+.3f} bits/char"
    if t["name"] == "tflite_step":
        return f"{v:.1f} us"
    return _n(v)


def _target_goal(t):
    goal = {"ratio": f">= {t['target']:,.0f}x", "min": f">= {t['target']:,g}", "max": f"<= {t['target']:,g}"}[t["kind"]]
    return {"padding": "< 10%", "tflite_step": "<= 50 us", "quality": ">= 0.5 bits/char"}.get(t["name"], goal)


def _code(code):
    if not code or not code.get("commit"):
        return "not a git checkout"
    return f"commit {code['commit'][:12]}" + (" with uncommitted changes" if code.get("dirty") else "")


def markdown(results):
    meta = results.get("meta", {})
    m, v = meta.get("machine", {}), meta.get("versions", {})
    out = [f"# keras_textgen benchmark, {meta.get('date', '?')}", ""]
    if meta.get("smoke"):
        out += ["**Smoke run: tiny sizes and budgets; the figures mean nothing.**", ""]
    out += [f"- Command: `{meta.get('command', '?')}`",
            f"- Machine: {m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} usable cores, "
            f"load average {_load(m.get('load_average_at_start'))} at start, "
            f"{_load(m.get('load_average_at_end'))} at end",
            f"- Code: {_code(meta.get('code'))}",
            f"- TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, tf_keras {v.get('tf_keras')}, "
            f"Python {v.get('python')}, keras_textgen {v.get('keras_textgen')}",
            f"- Total time: {_n(meta.get('seconds_total'))} s; each figure is the median of several runs after "
            "a warm-up, except the quality run (once)", ""]

    out += ["## Targets", ""]
    out.append(_table(["Target", "Goal", "Measured", "Of target", "Met"],
                      [[t["what"], _target_goal(t), _target_value(t),
                        "n/a" if t["value_over_target"] is None else f"{t['value_over_target']:.2f}",
                        {True: "yes", False: "**no**", None: "n/a"}[t["met"]]] for t in results.get("targets", [])]))
    out.append("")

    sec = results.get("pipeline")
    if sec:
        out += ["## 1. Pipeline throughput (no model)", ""]
        out.append(_table(["Corpus", "Impl", "Mode", "Batch", "Cache", "Real chars/s", "Padding", "vs baseline",
                           "Real chars/s with start-up"],
                          [[r["corpus"], r["impl"], r["mode"], r["batch_size"], "yes" if r["cache"] else "no",
                            _n(r["real_chars_per_s"]), _n(r.get("padding_fraction"), pct=True),
                            _x(r.get("ratio_vs_baseline")), _n(r.get("real_chars_per_s_with_startup"))]
                           for r in _rows(sec)]))
        out += ["", sec.get("note", "") if "rows" in sec else _err(sec), ""]

    sec = results.get("training")
    if sec:
        out += ["## 2. Training throughput, LSTM(128) x1", ""]
        out.append(_table(["Impl", "Mode", "Batch", "Intra-op threads", "Steps per call", "Real chars/s",
                           "vs baseline", "Padding (bucketed)", "Padding (not bucketed)"],
                          [[r["impl"], r["mode"], r["batch_size"], r.get("threads", "TensorFlow default"),
                            r.get("steps_per_execution", 1), _n(r["real_chars_per_s"]), _x(r.get("ratio_vs_baseline")),
                            _n(r.get("padding_fraction_bucketed"), pct=True),
                            _n(r.get("padding_fraction_unbucketed"), pct=True)] for r in _rows(sec)]))
        out += ["", f"Best: batch {sec.get('best_batch_size', 'n/a')}, intra-op threads "
                    f"{sec.get('best_threads', 'n/a')}. {_err(sec)}", ""]

    sec = results.get("quality")
    if sec:
        out += [f"## 3. Quality at equal time ({_n(sec.get('budget_seconds'))} s each)", ""]
        out.append(_table(["Impl", "Model", "Intra-op threads", "Params", "Steps", "Train s", "Val bits/char"],
                          [[r["impl"], r["model"], r.get("threads", "TensorFlow default"), _n(r["params"]),
                            _n(r["steps"]), _n(r["train_seconds"], 1), _n(r["val_bits_per_char"], 3)]
                           for r in _rows(sec)]))
        if "rows" in sec:
            lines_row = next((r for r in sec["rows"] if r.get("mode") == "lines" and r["impl"] == "package"), {})
            out += ["", f"Validation lines: {sec['val_lines']} (curve points on {sec['curve_val_lines']}); the same "
                        f"lines on every row, real targets only; the package scores n + 1 per line of n characters "
                        f"(the characters and the line's end) in both modes, in chunks mode with the text before "
                        f"the line as context. Package, lines mode, via "
                        f"`model.evaluate`/ln 2: {_n(lines_row.get('val_bits_per_char_model_evaluate'), 3)}. "
                        f"The target row uses the package's best mode ({sec.get('package_mode', 'n/a')}). "
                        f"Curve: `{os.path.basename(sec.get('plot', ''))}`."]
        out += [_err(sec), ""]

    sec = results.get("generation")
    if sec:
        out += ["## 4. Generation (greedy)", ""]
        out.append(_table(["Impl", "Path", "Prompts x chars", "Chars/s", "vs baseline 1-prompt"],
                          [[r["impl"], r["path"] + (" (estimate)" if r.get("estimated") else ""),
                            f"{r['prompts']} x {r['max_length']}",
                            _n(r.get("chars_per_s"), 1) if r.get("chars_per_s") is not None else r.get("status", "n/a"),
                            _x(r.get("ratio_vs_baseline"))] for r in _rows(sec)]))
        steps = sec.get("tflite_step") or []
        if steps:
            out += ["", _table(["TFLite step", "Median us", "p90 us"],
                               [[r["path"], _n(r.get("median_us"), 1) if r.get("median_us") is not None
                                 else r.get("status", "n/a"), _n(r.get("p90_us"), 1)] for r in steps])]
        sizes = sec.get("artifact_bytes") or {}
        if sizes:
            out += ["", _table(["Artifact (default model)", "Bytes"], [[k, _n(v)] for k, v in sizes.items()])]
        compile_s = sec.get("xla_compile_s") or {}
        if compile_s.get("single") is not None:
            out += ["", f"`jit_compile=True` first call (XLA compilation included): "
                        f"{compile_s['single']:.1f} s for 1 prompt, {compile_s.get('batch') or 0:.1f} s for the batch."]
        out += ["", sec.get("note", ""), _err(sec), ""]

    sec = results.get("memory")
    if sec:
        out += ["## 5. Peak memory (RSS, own subprocess each)", ""]
        out.append(_table(["Task", "What", "Peak RSS MiB"],
                          [[r["task"], r["what"], _n(r["peak_rss_mb"])] for r in _rows(sec)]))
        out += ["", _err(sec), ""]

    sec = results.get("ceiling")
    if sec:
        peak = sec.get("peak_flops_per_s")
        out += ["## 6. Hardware ceiling", "",
                f"Measured float32 matmul peak ({sec.get('peak', {}).get('n', '?')}^3): "
                f"{_n(peak / 1e9 if peak else None, 1)} GFLOP/s.", ""]
        out.append(_table(["Impl", "Mode", "Batch", "Intra-op threads", "FLOPs/char", "Useful GFLOP/s", "Of peak",
                           "Bottleneck"],
                          [[r["impl"], r["mode"], r["batch_size"], r.get("threads", "TensorFlow default"),
                            _n(r["flops_per_char"]),
                            _n(r["useful_flops_per_s"] / 1e9, 2), _n(r["fraction_of_peak"], pct=True),
                            r["bottleneck"]] for r in _rows(sec)]))
        out += ["", sec.get("summary") or "", sec.get("note") or "", _err(sec), ""]
    return "\n".join(line for line in out if line is not None).rstrip() + "\n"


def _rows(sec):
    return sec.get("rows", [])


def _err(sec):
    return f"**Section failed:** `{sec['error']}`" if sec.get("error") else ""


def _load(values):
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        results = json.load(f)
    results["targets"] = targets(results)
    md_path = os.path.splitext(argv[0])[0] + ".md"
    with open(md_path, "w") as f:
        f.write(markdown(results))
    print(md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
