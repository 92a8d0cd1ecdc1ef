"""Corpora larger than memory: peak RSS, time to the first training step and training speed, streamed vs in memory.

    python -m bench.streaming                          # 1 GB and 93 MB corpora (~15 min on 2 idle cores)
    python -m bench.streaming --sizes-mb 93            # the 93 MB case only
    python -m bench.streaming --before 69d42bd         # also the 93 MB case with the code of that commit
    python -m bench.streaming --smoke --out-dir /tmp/b # tiny corpora (tests/test_bench.py)

Makes its corpora itself under a temporary folder (deleted after): the text
of python-docs repeated to each size, one file. Each run is a fresh process
running `keras-textgen train --mode chunks` with a fixed model (LSTM 128,
batch 64, seq_len 100, `--time-budget none`), which reports its peak RSS
(`VmHWM`), the seconds from its start to the end of its first training call
(4 steps a call here), training chars/s from the end of its first call to the
end of its last, and the vocabulary pass's MB/s. The corpus of each size is
trained streamed (`--memory-budget 0`, what any corpus over the budget gets)
and, up to 100 MB, read into memory (`--memory-budget` above its size), on the
same model.

Writes `<out-dir>/<date>-streaming.json` and `.md`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()  # the child's start, before TensorFlow is imported

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import config  # noqa: E402
from bench import measure  # noqa: E402

RSS_GOAL_MB = 2048       # peak RSS training on the 1 GB corpus
FIRST_STEP_GOAL = 60.0   # seconds from the start of `train` to its first step, 1 GB corpus
SPEED_GOAL = 0.9         # streamed training chars/s over in-memory, same model
PACKAGE_PATH = "BENCH_PACKAGE_PATH"  # where a child imports keras_textgen from (the --before run)
MODEL = ["--units", "128", "--batch-size", "64", "--seq-len", "100", "--dropout", "0", "--time-budget", "none",
         "--validation-steps", "4", "--seed", "1", "--epochs", "1", "--steps-per-execution", "4"]
SMOKE_MODEL = ["--units", "16", "--batch-size", "8", "--seq-len", "50", "--dropout", "0", "--time-budget", "none",
               "--validation-steps", "2", "--seed", "1", "--epochs", "1", "--steps-per-execution", "2", "--no-samples"]


def make_corpus(path, size_bytes):
    """Writes python-docs' text, repeated, to `path` until it holds `size_bytes` bytes; returns its size."""
    import pydoc_data.topics

    text = ("\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)) + "\n").encode()
    written = 0
    with open(path, "wb") as f:
        while written < size_bytes:
            part = text[:size_bytes - written]
            f.write(part)
            written += len(part)
    return written


def run_train(corpus, out, steps, extra, smoke, pythonpath=None):
    """One `keras-textgen train` in a fresh process; its figures (see `child`)."""
    args = ["train", "--corpus", corpus, "--out", out, "--force", "--mode", "chunks", "--steps-per-epoch", str(steps),
            *(SMOKE_MODEL if smoke else MODEL), *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if pythonpath:  # `python -m` puts the working directory (this checkout) first: the child moves it ahead
        env[PACKAGE_PATH] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.streaming", "--child", *args], cwd=config.ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"train {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=time.perf_counter() - t0, command="keras-textgen " + " ".join(args))
    return result


def child(argv):
    """Runs `keras-textgen ARGV` in this process; prints its figures as JSON on the last line."""
    if os.environ.get(PACKAGE_PATH):
        sys.path.insert(0, os.environ[PACKAGE_PATH])
    import keras

    import keras_textgen
    from keras_textgen import cli, training

    calls = []  # (last step of the call, seconds since this process started)

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append((batch, time.perf_counter() - T0))

    original = training.default_callbacks
    training.default_callbacks = lambda *a, **k: original(*a, **k) + [Timer()]
    vocab = {}
    try:  # keras_textgen.preparation; in training before it was split out, absent before streaming
        from keras_textgen import preparation as prepare_module
    except ImportError:
        prepare_module = training
    progress = getattr(prepare_module, "VocabularyProgress", None)
    if progress is not None:
        done = progress.done

        def record(self, size):
            vocab.update(mb=self.read / 1e6, seconds=time.monotonic() - self.start, mb_per_s=self.rate())
            return done(self, size)
        progress.done = record
    code = cli.main(argv)
    if code:
        raise SystemExit(code)
    with open(os.path.join(argv[argv.index("--out") + 1], "config.json")) as f:
        run = json.load(f)
    chars_per_step = run["global_batch_size"] * run["seq_len"]
    speed = None
    if len(calls) >= 3:  # from the end of the first call (tracing) to the last
        (b0, t0), (b1, t1) = calls[0], calls[-1]
        speed = (b1 - b0) * chars_per_step / (t1 - t0)
    print(json.dumps({"peak_rss_mb": measure.peak_rss_mb(), "first_step_s": calls[0][1] if calls else None,
                      "train_chars_per_s": speed, "steps": len(calls) and calls[-1][0] + 1,
                      "vocab_pass": vocab or None, "streamed": run.get("streamed"),
                      "package": os.path.dirname(os.path.dirname(keras_textgen.__file__))}))


def run(folder, sizes_mb, steps, smoke=False, before=None, log=print):
    rows = []
    for size_mb in sizes_mb:
        path = os.path.join(folder, f"corpus-{size_mb:g}mb.txt")
        size = make_corpus(path, int(size_mb * 1e6))
        log(f"  corpus of {size / 1e6:,.1f} MB at {path}")
        variants = [("streamed", ["--memory-budget", "0"])]  # as over the default budget, whatever the size
        if size_mb <= 100:  # within reach of the in-memory path on this machine
            variants.append(("in memory", ["--memory-budget", str(int(size_mb) + 1)]))
        if before and size_mb <= 100:
            variants.append((f"before ({before['rev']})", []))
        for name, extra in variants:
            out = os.path.join(folder, "model")
            result = run_train(path, out, steps, extra, smoke,
                               pythonpath=before["path"] if name.startswith("before") else None)
            if name.startswith("before") and result["package"] != before["path"]:
                raise RuntimeError(f"the before run imported keras_textgen from {result['package']}")
            result.update(corpus_mb=size / 1e6, variant=name)
            rows.append(result)
            vocab = result.get("vocab_pass") or {}
            log(f"  {size / 1e6:,.0f} MB {name}: peak RSS {result['peak_rss_mb']:,.0f} MiB, first step "
                f"{result['first_step_s']:.1f} s, {result['train_chars_per_s'] or 0:,.0f} chars/s"
                + (f", vocabulary pass {vocab['mb_per_s']:,.1f} MB/s" if vocab else ""))
        os.remove(path)
    return {"rows": rows, "model": " ".join(SMOKE_MODEL if smoke else MODEL), "steps": steps}


def targets(results):
    rows = results["rows"]
    largest = max((r["corpus_mb"] for r in rows), default=0)
    big = next((r for r in rows if r["corpus_mb"] == largest and r["variant"] == "streamed"), None)
    pairs = [(r, m) for r in rows if r["variant"] == "streamed"
             for m in rows if m["variant"] == "in memory" and m["corpus_mb"] == r["corpus_mb"]]
    ratio = None
    if pairs and pairs[0][0]["train_chars_per_s"] and pairs[0][1]["train_chars_per_s"]:
        ratio = pairs[0][0]["train_chars_per_s"] / pairs[0][1]["train_chars_per_s"]

    def target(name, goal, measured, met):
        return {"name": name, "goal": goal, "measured": measured, "met": None if measured is None else met}

    return [
        target(f"peak RSS, train on {largest:,.0f} MB (streamed)", f"<= {RSS_GOAL_MB} MiB",
               big and big["peak_rss_mb"], big is not None and big["peak_rss_mb"] <= RSS_GOAL_MB),
        target(f"first training step, {largest:,.0f} MB (streamed)", f"<= {FIRST_STEP_GOAL:.0f} s",
               big and big["first_step_s"], big is not None and (big["first_step_s"] or 1e9) <= FIRST_STEP_GOAL),
        target("training chars/s, streamed / in memory", f">= {SPEED_GOAL}", ratio,
               ratio is not None and ratio >= SPEED_GOAL),
    ]


def markdown(results):
    out = [f"# Streamed corpora, {results['date']}", "", f"Command: `{results['command']}`",
           f"Each run: `keras-textgen train --mode chunks --steps-per-epoch {results['steps']} {results['model']}`.",
           "", "| Target | Goal | Measured | Met |", "|---|---|---|---|"]
    for t in results["targets"]:
        measured = "not run" if t["measured"] is None else f"{t['measured']:,.2f}"
        met = "not run" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['name']} | {t['goal']} | {measured} | {met} |")
    out += ["", "| corpus | read | peak RSS (MiB) | first step (s) | training chars/s | vocabulary pass (MB/s) | "
            "wall (s) |", "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        vocab = f"{r['vocab_pass']['mb_per_s']:,.1f}" if r.get("vocab_pass") else "n/a"
        out.append(f"| {r['corpus_mb']:,.1f} MB | {r['variant']} | {r['peak_rss_mb']:,.0f} | {r['first_step_s']:.1f} | "
                   f"{r['train_chars_per_s'] or 0:,.0f} | {vocab} | {r['wall_seconds']:.0f} |")
    return "\n".join(out) + "\n"


def checkout(rev, folder):
    """The package as of `rev` (read with `git archive`, no worktree), for the before run; returns its folder."""
    target = os.path.join(folder, "before")
    os.makedirs(target)
    archive = subprocess.run(["git", "archive", rev, "keras_textgen"], cwd=config.ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return {"rev": rev, "path": target}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n")[0])
    p.add_argument("--sizes-mb", type=float, nargs="+", default=[1000, 93])
    p.add_argument("--steps", type=int, default=60, help="training steps of each run")
    p.add_argument("--before", metavar="REV", help="also train on the sizes <= 100 MB with the package of REV")
    p.add_argument("--tmp", default=None, help="where the corpora are written (default: the system's temp folder)")
    p.add_argument("--out-dir", default=config.DEFAULT_OUT)
    p.add_argument("--smoke", action="store_true", help="corpora of 2 MB and a tiny model, for tests")
    p.add_argument("--name", default=None, help="file name stem of the results (default: DATE-streaming)")
    args = p.parse_args(argv)
    sizes, steps = ([2.0], 6) if args.smoke else (args.sizes_mb, args.steps)
    results = measure.new_results("bench.streaming", argv)
    with tempfile.TemporaryDirectory(prefix="ktg-streaming-", dir=args.tmp) as folder:
        before = checkout(args.before, folder) if args.before else None
        results.update(run(folder, sizes, steps, smoke=args.smoke, before=before))
    results["targets"] = targets(results)
    measure.write_results(measure.results_stem(args.out_dir, args.name, results, "streaming", args.smoke), results,
                          markdown)


if __name__ == "__main__":
    main()
