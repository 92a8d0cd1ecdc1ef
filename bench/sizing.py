"""The measurements behind `keras_textgen.sizing`: which model fits a corpus of each size, in a fixed budget.

For each corpus size (the first non-blank lines of Tiny Shakespeare up to
30k, 100k, 300k and 1M characters, lines mode, every 10th line held out)
and each candidate setting, `keras-textgen train` runs in a child process
with the same `--time-budget` and every other flag at its default; the
row is the best validation bits/char of the run (the model it ships).

    python -m bench.sizing --budget 90s --out bench/results/DATE-sizing.json

`--jobs 2` runs two trainings side by side (each with one intra-op thread,
as `keras-textgen train` sets itself up on 2 cores): both candidates of a
pair share the machine alike, so their ranking holds; absolute figures are
lower than alone.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import config

SIZES = (30_000, 100_000, 300_000, 1_000_000)
# (units, layers, dropout, batch size)
CANDIDATES = ((128, 1, 0.2, 32), (256, 1, 0.3, 32), (256, 1, 0.5, 64))


def first_lines(path, chars):
    """The first non-blank lines of `path` holding about `chars` characters (newlines included)."""
    out, total = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if total >= chars:
                break
            out.append(line)
            total += len(line) + 1
    return out


def run_one(corpus_file, budget, candidate, extra=()):
    units, layers, dropout, batch = candidate
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model")
        cmd = [sys.executable, "-m", "keras_textgen", "train", "--corpus", corpus_file, "--out", out,
               "--time-budget", budget, "--seed", "0", "--units", str(units), "--layers", str(layers),
               "--dropout", str(dropout), "--batch-size", str(batch), *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            return {"error": done.stderr.strip().splitlines()[-1:], "cmd": cmd}
        with open(os.path.join(out, "history.json")) as f:
            history = json.load(f)
        with open(os.path.join(out, "config.json")) as f:
            run_config = json.load(f)
    best = history["best"]
    return {"units": units, "layers": layers, "dropout": dropout, "batch_size": batch,
            "best_val_bits_per_char": best["val_bits_per_token"], "best_evaluation": best["epoch"],
            "evaluations": len(history["epoch"]), "last_val_bits_per_char": history["val_bits_per_token"][-1],
            "stopped_by": history.get("stopped_by"), "wall_seconds": wall,
            "train_tokens": run_config["train_tokens"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=config.DEFAULT_DATA)
    p.add_argument("--budget", default="120s")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    p.add_argument("--out", default=os.path.join(config.DEFAULT_OUT, "sizing.json"))
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = tempfile.mkdtemp(prefix="ktg-sizing-")
    jobs = []
    for size in sizes:
        corpus_file = os.path.join(folder, f"shakespeare-{size}.txt")
        with open(corpus_file, "w", encoding="utf-8") as f:
            f.write("\n".join(first_lines(args.data, size)) + "\n")
        jobs += [(size, corpus_file, candidate) for candidate in CANDIDATES]
    rows = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, corpus_file, args.budget, candidate): (size, candidate)
                   for size, corpus_file, candidate in jobs}
        for future in concurrent.futures.as_completed(futures):
            size, candidate = futures[future]
            row = {"size": size, **future.result()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: (r["size"], r.get("best_val_bits_per_char", 99)))
    with open(args.out, "w") as f:
        json.dump({"budget": args.budget, "jobs": args.jobs, "date": time.strftime("%Y-%m-%d"), "rows": rows}, f,
                  indent=1)
    print(f"{'size':>9} {'units':>5} {'drop':>4} {'batch':>5} {'best bpc':>8} {'last bpc':>8} {'evals':>5}  ended by")
    for r in rows:
        if "error" in r:
            print(r)
            continue
        print(f"{r['size']:>9,} {r['units']:>5} {r['dropout']:>4} {r['batch_size']:>5} "
              f"{r['best_val_bits_per_char']:>8.3f} {r['last_val_bits_per_char']:>8.3f} {r['evaluations']:>5}  "
              f"{r['stopped_by']}")


if __name__ == "__main__":
    main()
