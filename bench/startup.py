"""Time to first character: how long a user waits for text from a trained model, each command a fresh process.

    python -m bench.startup                      # ~3 min on 2 idle cores
    python -m bench.startup --smoke --out-dir /tmp/b   # a tiny model, 1 repeat (tests/test_bench.py)

Trains one model on python-docs at the default size for its corpus (a few
steps: the figures depend on the model's size, not its quality), exports it
to TFLite, then times each way of getting 200 characters from it, from the
process's start to the first character on its standard output and to its
exit (median of `--repeats` runs, alternating the ways):

* `keras-textgen generate`, with the traced loop `train` keeps in the model
  directory (`generator/`), and without it (a model directory a
  `pipelines/` script wrote: the loop is traced on each run);
* the Python API in a fresh interpreter: `import keras_textgen`,
  `ktg.load(DIR)`, `ktg.generate(...)` (traces the loop);
* the device client, `keras_textgen.lite.LiteGenerator` on the `.tflite`
  file (LiteRT and NumPy only);
* `keras-textgen --help` and a mistyped flag (no model, no TensorFlow;
  the error's one line is on standard error).

Writes `<out-dir>/<date>-startup.json` and `.md`.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import config  # noqa: E402
from bench import measure  # noqa: E402

LENGTH = 200
GENERATE_GOAL = 3.0  # seconds to the first character of `keras-textgen generate` (issue 19)
HELP_GOAL = 1.0      # seconds for `--help` and argument errors


def ways(model_dir, bare_dir, tflite):
    """`{name: argv}` of the timed commands; each prints text (or help) on its standard output."""
    cli = [sys.executable, "-m", "keras_textgen"]
    gen = ["generate", "--prompt", "The ", "--max-length", str(LENGTH), "--seed", "0"]
    api = ("import keras_textgen as ktg; m, v = ktg.load({d!r}, compile=False); "
           "print(ktg.generate(m, v, 'The ', max_length={n}, seed=0))").format(d=bare_dir, n=LENGTH)
    lite = ("from keras_textgen.lite import LiteGenerator; "
            "print(LiteGenerator({p!r}).generate('The ', max_length={n}, seed=0))").format(p=tflite, n=LENGTH)
    return {
        "keras-textgen generate (kept generator)": cli + gen[:1] + ["--model", model_dir] + gen[1:],
        "keras-textgen generate (traced on each run)": cli + gen[:1] + ["--model", bare_dir] + gen[1:],
        "Python API: ktg.load + ktg.generate": [sys.executable, "-c", api],
        "LiteRT client: LiteGenerator.generate": [sys.executable, "-c", lite],
        "keras-textgen --help": cli + ["--help"],
        "keras-textgen train --bogus (argument error)": cli + ["train", "--bogus"],
    }


def time_command(argv, stream="stdout"):
    """`(seconds to the first byte on `stream`, seconds to exit, exit code)` of one fresh process.

    The text goes to stdout; an argument error's one line goes to stderr.
    """
    t0 = time.perf_counter()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    if stream == "stderr":
        pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(argv, cwd=config.ROOT, **pipes)
    out = getattr(proc, stream)
    first = out.read(1)
    t_first = time.perf_counter() - t0
    out.read()
    code = proc.wait()
    return (t_first if first else None), time.perf_counter() - t0, code


def prepare(folder, smoke, log):
    """Trains the model, copies it without `generator/`, exports its TFLite file; returns the three paths."""
    import keras_textgen as ktg
    from keras_textgen import training

    model_dir = os.path.join(folder, "model")
    steps = dict(epochs=1, steps_per_epoch=5 if smoke else 50, validation_steps=2, time_budget=None, seed=0,
                 sample_prompts=())  # no samples: none is timed here
    if smoke:
        steps.update(units=32, batch_size=8)
    log(f"  training on python-docs ({steps})")
    training.train(training.TrainConfig(corpus="python-docs", **steps), model_dir, print_fn=lambda *_: None, verbose=0)
    bare_dir = os.path.join(folder, "bare")
    shutil.copytree(model_dir, bare_dir, ignore=shutil.ignore_patterns("generator"))
    tflite = ktg.export_tflite(model_dir, base_dir=os.path.join(folder, "lite"), name="model")
    with open(os.path.join(model_dir, "config.json")) as f:
        run_config = json.load(f)
    return model_dir, bare_dir, tflite, run_config


def run(folder, repeats, smoke=False, log=print):
    model_dir, bare_dir, tflite, run_config = prepare(folder, smoke, log)
    commands = ways(model_dir, bare_dir, tflite)
    samples = {name: [] for name in commands}
    warm_up = 0 if smoke else 1  # a first round warms the file cache and is not counted
    for i in range(warm_up + repeats):
        for name, argv in commands.items():
            first, total, code = time_command(argv, "stderr" if name.endswith("(argument error)") else "stdout")
            if code not in (0, 2):
                raise RuntimeError(f"{name} exited with {code}: {argv}")
            if i >= warm_up:
                samples[name].append((first, total))
    rows = []
    for name, values in samples.items():
        firsts = [f for f, _ in values if f is not None]
        row = {"name": name, "repeats": len(values),
               "first_output_s": statistics.median(firsts) if firsts else None,
               "exit_s": statistics.median(t for _, t in values)}
        rows.append(row)
        log(f"  {name}: first output {row['first_output_s']:.2f}s, exit {row['exit_s']:.2f}s (median of {len(values)})")
    model = f"LSTM {run_config['units']} x{run_config['layers']}, vocabulary {run_config['vocab_size']}"
    return {"model": model, "length": LENGTH, "rows": rows}


def targets(results):
    by = {r["name"]: r for r in results.get("rows", [])}

    def value(name, key="first_output_s"):
        return by[name][key] if name in by else None

    gen = value("keras-textgen generate (kept generator)")
    help_s = max((v for v in (value("keras-textgen --help", "exit_s"),
                              value("keras-textgen train --bogus (argument error)", "exit_s")) if v is not None),
                 default=None)
    return [
        {"name": f"generate: {LENGTH} characters from a trained model directory, first character",
         "goal": f"<= {GENERATE_GOAL:.0f} s", "measured": gen, "met": None if gen is None else gen <= GENERATE_GOAL},
        {"name": "--help and argument errors, to exit", "goal": f"< {HELP_GOAL:.0f} s", "measured": help_s,
         "met": None if help_s is None else help_s < HELP_GOAL},
    ]


def markdown(results):
    out = [f"# Time to first character, {results['date']}", "", f"Command: `{results['command']}`",
           f"Model: {results['model']}; {results['length']} characters; median of each.", "",
           "| Target | Goal | Measured | Met |", "|---|---|---|---|"]
    for t in results["targets"]:
        measured = "not run" if t["measured"] is None else f"{t['measured']:.2f} s"
        met = "not run" if t["met"] is None else ("yes" if t["met"] else "**no**")
        out.append(f"| {t['name']} | {t['goal']} | {measured} | {met} |")
    out += ["", "| way | first output (s) | exit (s) |", "|---|---|---|"]
    for r in results["rows"]:
        first = "n/a" if r["first_output_s"] is None else f"{r['first_output_s']:.2f}"
        out.append(f"| {r['name']} | {first} | {r['exit_s']:.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out-dir", default=config.DEFAULT_OUT)
    p.add_argument("--smoke", action="store_true", help="a tiny model and one repeat, for tests")
    p.add_argument("--name", default=None, help="file name stem of the results (default: DATE-startup)")
    args = p.parse_args(argv)
    results = measure.new_results("bench.startup", argv)
    with tempfile.TemporaryDirectory(prefix="ktg-startup-") as folder:
        results.update(run(folder, 1 if args.smoke else args.repeats, smoke=args.smoke))
    results["targets"] = targets(results)
    measure.write_results(measure.results_stem(args.out_dir, args.name, results, "startup", args.smoke), results,
                          markdown)


if __name__ == "__main__":
    main()
