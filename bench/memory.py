"""Section 5: peak resident memory (RSS) of a training run and of a generation run.

Each task runs in its own subprocess (`python -m bench.memory --task ...`),
which prints its own peak RSS as JSON on its last line (`VmHWM` of
/proc/self/status; `ru_maxrss` would include the forking parent's peak,
see `measure.peak_rss_mb`); an `import` task gives the floor of Python + TensorFlow +
Keras + the package. Two tasks run at a time (peak RSS does not depend on
timing). A smoke run (`bench.run --smoke`) runs every task in one child, one
after another: it checks that each task runs, not what it takes.
"""

import argparse
import concurrent.futures
import json
import os
import time

from bench import config
from bench import measure

TASKS = ("import", "baseline-train", "package-train", "package-train-lstm128", "baseline-generate",
         "package-generate")


def child_args(task, settings):
    s = settings
    args = ["--task", task, "--data", s.data, "--seed", str(s.seed)]
    if task == "baseline-train":
        args += ["--steps", str(s.memory_baseline_steps)]
    elif task.startswith("package-train"):
        args += ["--steps", str(s.memory_train_steps)]
    elif task == "baseline-generate":
        args += ["--length", str(s.memory_baseline_gen_length)]
    elif task == "package-generate":
        args += ["--length", str(s.memory_gen_length), "--prompts", str(s.gen_batch)]
    if s.smoke:
        args += ["--lines", str(s.train_lines)]
    return args


def run_child(task, settings):
    return measure.run_json_child("bench.memory", child_args(task, settings), cwd=config.ROOT)


def run(settings, log=print):
    if settings.smoke:
        # One child runs every task in turn: a smoke run checks that each task's code runs, and a child per task
        # would cost a TensorFlow import each. Its peaks are the one process's high-water mark so far, not figures.
        results = measure.run_json_child("bench.memory", ["--smoke-tasks", config.to_json(settings)],
                                         cwd=config.ROOT)["rows"]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda t: run_child(t, settings), TASKS))
    rows = []
    for r in results:
        rows.append(r)
        log(f"  {r['task']}: peak RSS {r['peak_rss_mb']:,.0f} MiB ({r['what']})")
    by = {r["task"]: r["peak_rss_mb"] for r in rows}
    return {"rows": rows, "import_floor_mb": by["import"],
            "baseline_train_mb": by["baseline-train"], "package_train_mb": by["package-train"],
            "baseline_generate_mb": by["baseline-generate"], "package_generate_mb": by["package-generate"]}


# -- the child -------------------------------------------------------------------
def child(argv=None):
    p = argparse.ArgumentParser(description="one memory-measurement task (used by bench.run)")
    p.add_argument("--task", choices=TASKS)
    p.add_argument("--smoke-tasks", metavar="SETTINGS_JSON",
                   help="every task of a smoke run, one after another in this process (the run's Settings as JSON)")
    p.add_argument("--data", default=config.DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--lines", type=int, default=None, help="use only this many training lines")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if a.smoke_tasks:
        settings = config.from_json(a.smoke_tasks)
        tasks = [t for t in TASKS if t != "package-train-lstm128"]
        print(json.dumps({"rows": [run_task(p.parse_args(child_args(t, settings))) for t in tasks]}))
    elif a.task:
        print(json.dumps(run_task(a)))
    else:
        p.error("give --task or --smoke-tasks")


def run_task(a):
    """Runs the task `a.task` (the child's parsed arguments); returns its row."""
    t0 = time.perf_counter()

    import keras
    import tensorflow as tf

    import keras_textgen as ktg
    from bench import baseline as baseline_lib
    from bench import corpora
    from bench.measure import peak_rss_mb

    what = "import tensorflow, keras, tf_keras, keras_textgen"
    if a.task != "import":
        train, val, vocab = corpora.shakespeare_lines(a.data)
        train = train[: a.lines] if a.lines else train
    if a.task == "baseline-train":
        bl = baseline_lib.Baseline(train, seed=a.seed)
        bl.fit(train, epochs=1, steps_per_epoch=a.steps)
        what = f"baseline fit, LSTM(128), batch 8, {a.steps} steps"
    elif a.task.startswith("package-train"):
        keras.utils.set_random_seed(a.seed)
        kwargs = dict(units=128, layers=1) if a.task.endswith("lstm128") else {}
        model = ktg.build_model(vocab, **kwargs)
        ds = ktg.make_dataset(train, vocab, batch_size=64, repeat=True, seed=a.seed)
        model.fit(ds, epochs=1, steps_per_epoch=a.steps, verbose=0)
        layers = ktg.model.recurrent_layers(model)
        what = f"package fit, LSTM({layers[0].units}) x{len(layers)}, batch 64, {a.steps} steps"
    elif a.task == "baseline-generate":
        bl = baseline_lib.Baseline(train, seed=a.seed)
        bl.generate("ROMEO:", a.length, stop_at_eos=False)
        what = f"baseline generate, 1 prompt x {a.length}"
    elif a.task == "package-generate":
        from bench.generation import default_model
        from keras_textgen import generation

        model = default_model(vocab, a.seed)
        gen = generation.get_generator(model, vocab)
        prompts = tf.constant([line[:12] for line in val[: a.prompts]])
        gen.generate_fn(prompts, tf.constant(a.length), tf.constant(0.0), tf.constant(0), tf.constant(1.0),
                        tf.constant(0, tf.int64))
        what = f"package generate_fn, default model, {a.prompts} prompts x {a.length}"
    return {"task": a.task, "what": what, "peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    child()
