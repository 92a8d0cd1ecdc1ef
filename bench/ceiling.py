"""Section 6: hardware ceiling: useful training FLOP/s as a fraction of the measured matmul peak.

FLOPs per real training character = 3 x forward, forward = 2*4*units*(input_dim+units)
per LSTM layer + 2*units*vocab for the Dense head (the baseline's one-hot
input keeps the pad column: input_dim = vocab; the package drops it:
vocab - 1). Useful FLOP/s = FLOPs per char x real chars/s from the training
section; the baseline also computes on padding, which is not counted.
Peak = a `tf.linalg.matmul` of two `n x n` float32 matrices, timed in this run.
The count is the model's, the same for both sides: the package's first LSTM
reads its one-hot input's projection as kernel rows (`one_hot_inputs`), so
it runs about a third fewer matmul FLOPs than counted.
"""

from bench import measure


def pipeline_rate(pipeline, row):
    """What the input pipeline of a training row delivers alone (chars/s), from the pipeline section."""
    for r in (pipeline or {}).get("rows", []):
        if r["corpus"] == "shakespeare" and r["impl"] == row["impl"] and r["mode"] == row["mode"] and (
                r["impl"] == "baseline" or r["cache"]):  # training uses the package default, cache=True
            return r["real_chars_per_s"]
    return None


def bottleneck(row, fraction, pipe_rate):
    """A one-line diagnosis of what limits a training row."""
    share = row["real_chars_per_s"] / pipe_rate if pipe_rate else None
    pipe = f"; the input pipeline alone would take {share:.0%} of the time" if share is not None else ""
    if share is not None and share > 0.5:
        return f"input pipeline{pipe}"
    if fraction is not None and fraction >= 0.5:
        return f"compute (matmul throughput){pipe}"
    if row["impl"] == "baseline":
        return ("per-step overhead, not compute: batch 8 makes every per-timestep LSTM matmul tiny "
                f"([8, {row['input_dim'] + row['units']}] x [{row['input_dim'] + row['units']}, {4 * row['units']}]) "
                f"and {row.get('padding_fraction_unbucketed') or 0:.0%} of the positions are padding{pipe}")
    b, u = row["batch_size"], row["units"]
    return (f"the recurrence: T sequential steps per batch of 4 small matmuls each (PerGateLSTM, per gate: "
            f"[{b}, {u}] x [{u}, {u}], and the one-hot input's projection read as kernel rows) plus per-step "
            f"op overhead in the while loop{pipe}")


def run(settings, training=None, pipeline=None, log=print):
    peak = measure.peak_matmul_flops(settings.matmul_n, runs=settings.repeats)
    log(f"  peak float32 matmul {settings.matmul_n}^3: {peak['flops_per_s'] / 1e9:,.1f} GFLOP/s")
    rows = []
    for row in (training or {}).get("rows", []):
        fpc = measure.training_flops_per_char(row["input_dim"], row["units"], row["layers"], row["vocab_size"])
        useful = fpc * row["real_chars_per_s"]
        fraction = useful / peak["flops_per_s"]
        rows.append({"impl": row["impl"], "mode": row["mode"], "batch_size": row["batch_size"],
                     "threads": row.get("threads", "TensorFlow default"),
                     "flops_per_char": fpc, "real_chars_per_s": row["real_chars_per_s"],
                     "useful_flops_per_s": useful, "fraction_of_peak": fraction,
                     "bottleneck": bottleneck(row, fraction, pipeline_rate(pipeline, row))})
        log(f"  {row['impl']} {row['mode']} b={row['batch_size']} threads {rows[-1]['threads']}: "
            f"{useful / 1e9:.2f} GFLOP/s = {fraction:.1%} of peak")
    summary = None
    package = [r for r in rows if r["impl"] == "package" and r["mode"] == "lines"]
    base = next((r for r in rows if r["impl"] == "baseline"), None)
    if package and base:
        best = max(package, key=lambda r: r["fraction_of_peak"])
        summary = (f"Baseline: {base['fraction_of_peak']:.1%} of peak, bottleneck: {base['bottleneck']}. "
                   f"Package (lines, batch {best['batch_size']}, intra-op threads {best['threads']}): "
                   f"{best['fraction_of_peak']:.1%} of peak, "
                   f"bottleneck: {best['bottleneck']}.")
    return {"peak": peak, "peak_flops_per_s": peak["flops_per_s"], "rows": rows, "summary": summary,
            "note": None if rows else "run with the training section for the fractions of peak"}
