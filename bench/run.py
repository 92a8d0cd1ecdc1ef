"""Benchmarks keras_textgen side by side with the lesson notebook's approach (`bench/baseline.py`).

    python -m bench.run                          # full run (`make bench`), ~15 min on 2 idle cores
    python -m bench.run --only pipeline,training # some sections
    python -m bench.run --quality-seconds 60     # a shorter quality budget
    python -m bench.run --smoke --out-dir /tmp/b # seconds-scale sanity run (tests/test_bench.py)

Writes `<out-dir>/<date>.json` (every figure, the machine, versions, the
command) and `<date>.md` (tables and the targets), plus `<date>-quality.png`.
A smoke run writes `<date>-smoke.*`; a run of some sections only writes
`<date>-<sections>.*`, so neither overwrites a full run's files.
"""

import argparse
import os
import sys
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import config  # noqa: E402 (the environment variable must come first)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes and budgets (seconds), for the test suite")
    p.add_argument("--out-dir", default=config.DEFAULT_OUT, help="where the JSON, Markdown and PNG go")
    p.add_argument("--only", default=",".join(config.SECTIONS),
                   help=f"comma-separated sections, of {','.join(config.SECTIONS)}")
    p.add_argument("--quality-seconds", type=float, default=None,
                   help="training budget of each side in the quality section (default 300; smoke 1)")
    p.add_argument("--data", default=config.DEFAULT_DATA, help="tiny Shakespeare input.txt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per short figure (default 5; smoke 2)")
    p.add_argument("--name", default=None, help="file name stem of the results (default: the date)")
    args = p.parse_args(argv)
    args.sections = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(args.sections) - set(config.SECTIONS))
    if unknown or not args.sections:
        p.error(f"--only: unknown section(s) {unknown}; choose from {','.join(config.SECTIONS)}")
    return args


def settings_from(args):
    overrides = {"data": args.data, "seed": args.seed}
    if args.quality_seconds is not None:
        overrides["quality_seconds"] = args.quality_seconds
    if args.repeats is not None:
        overrides["repeats"] = args.repeats
    if args.smoke:
        return config.smoke_settings(**overrides)
    import dataclasses

    return dataclasses.replace(config.Settings(), **overrides)


def output_stem(args, date):
    if args.name:
        return args.name
    stem = date
    if set(args.sections) != set(config.SECTIONS):
        stem += "-" + "-".join(s for s in config.SECTIONS if s in args.sections)
    if args.smoke:
        stem += "-smoke"
    return stem


def main(argv=None):
    t_start = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = settings_from(args)
    if not os.path.isfile(settings.data):
        print(f"bench: tiny Shakespeare not found at {settings.data} "
              "(pass --data, or set TINY_SHAKESPEARE_DIR to its folder)", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=UserWarning)

    import dataclasses
    import json

    import tensorflow as tf

    from bench import measure
    from bench import report

    tf.get_logger().setLevel("ERROR")
    date = measure.today()
    os.makedirs(args.out_dir, exist_ok=True)
    stem = output_stem(args, date)
    json_path = os.path.join(args.out_dir, stem + ".json")
    md_path = os.path.join(args.out_dir, stem + ".md")
    png_path = os.path.join(args.out_dir, stem + "-quality.png")
    results = {"meta": {"date": date, "started": measure.now_iso(), "command": measure.command_line(argv),
                        "smoke": settings.smoke,
                        "sections": args.sections, "machine": measure.machine_info(),
                        "versions": measure.versions(), "code": measure.source_revision(config.ROOT),
                        "settings": dataclasses.asdict(settings)}}

    def save():
        results["meta"]["seconds_total"] = time.perf_counter() - t_start
        results["meta"]["machine"]["load_average_at_end"] = list(os.getloadavg())
        results["targets"] = report.targets(results)
        with open(json_path + ".tmp", "w") as f:
            json.dump(results, f, indent=1, default=_jsonable)
        os.replace(json_path + ".tmp", json_path)
        with open(md_path, "w") as f:
            f.write(report.markdown(results))

    failed = []
    for name in config.SECTIONS:
        if name not in args.sections:
            continue
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        load0 = list(os.getloadavg())
        try:
            section = run_section(name, settings, results, png_path)
        except Exception as e:  # record it, go on with the other sections
            traceback.print_exc()
            section = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        section["section_seconds"] = time.perf_counter() - t0
        section["load_average_at_start"] = load0
        results[name] = section
        print(f"[bench] {name} done in {section['section_seconds']:.1f}s", flush=True)
        save()
    save()
    print(f"[bench] wrote {json_path} and {md_path} in {time.perf_counter() - t_start:.0f}s")
    for t in results["targets"]:
        status = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        print(f"[bench] target {t['name']}: {status} (value {t['value']}, target {t['target']})")
    if failed:
        print(f"[bench] failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_section(name, settings, results, png_path):
    def log(msg):
        print(msg, flush=True)

    if name == "pipeline":
        from bench import pipeline

        return pipeline.run(settings, log=log)
    if name == "training":
        from bench import training

        return training.run(settings, log=log)
    if name == "quality":
        from bench import quality

        return quality.run(settings, png_path, log=log)
    if name == "generation":
        from bench import generation

        return generation.run(settings, log=log)
    if name == "memory":
        from bench import memory

        return memory.run(settings, log=log)
    if name == "ceiling":
        from bench import ceiling

        return ceiling.run(settings, training=_ok(results.get("training")), pipeline=_ok(results.get("pipeline")),
                           log=log)
    raise ValueError(name)


def _ok(section):
    return section if section and "error" not in section else None


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
