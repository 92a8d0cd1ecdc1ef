"""Load test of an exported SavedModel's `serving_default`, from many threads at once.

    python tests/load_saved_model.py saved_models/python-docs/1 --threads 8 --requests 200 --max-length 5:20

Each request continues 1-3 prompts of mixed lengths (known and unknown
characters, the empty prompt) with its own seed and sampling settings; a few
are bad on purpose (negative temperature) and must fail with
INVALID_ARGUMENT without disturbing the others. Every answer is compared with
the single-threaded answer to the same request. Prints (or writes with
--json) requests/s, latency percentiles and the process RSS before and after.
`tests/test_load.py` runs it small; run it by hand for bigger numbers.
"""

import argparse
import json
import os
import random
import sys
import threading
import time

import numpy as np


def rss_mb():
    """Resident set size of this process in MiB (Linux /proc, else psutil)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def make_requests(tokens, count, max_length=(5, 20), bad_every=50, seed=0):
    """`count` distinct requests: dicts of the signature's inputs (plain Python values) plus `bad`."""
    rng = random.Random(seed)
    alphabet = [t for t in tokens[3:] if len(t) == 1] or ["a"]
    unknown = "€☃\U0001F600"
    requests = []
    for i in range(count):
        prompts = []
        for _ in range(rng.randint(1, 3)):
            n = rng.choice([0, 1, 3, 8, 20, 60])
            prompts.append("".join(rng.choice(alphabet) if rng.random() > 0.05 else rng.choice(unknown)
                                   for _ in range(n)))
        bad = bool(bad_every) and i % bad_every == bad_every - 1
        requests.append({
            "prompt": prompts,
            "max_length": rng.randint(*max_length),
            "temperature": -1.0 if bad else rng.choice([0.0, 0.7, 1.0, 1.3]),
            "top_k": rng.choice([0, 0, 5, 1000]),
            "top_p": rng.choice([1.0, 1.0, 0.9]),
            "seed": rng.randrange(2**62),
            "bad": bad,
        })
    return requests


def call(fn, request):
    """Runs one request; returns `("ok", texts, tokens)` or `("error", kind, first line)`."""
    import tensorflow as tf

    try:
        out = fn(prompt=tf.constant(request["prompt"]), max_length=tf.constant(request["max_length"], tf.int32),
                 temperature=tf.constant(request["temperature"], tf.float32),
                 top_k=tf.constant(request["top_k"], tf.int32), top_p=tf.constant(request["top_p"], tf.float32),
                 seed=tf.constant(request["seed"], tf.int64))
    except tf.errors.InvalidArgumentError as e:
        return ("error", "INVALID_ARGUMENT", e.message.strip().splitlines()[0][:200])
    return ("ok", [t.decode("utf-8", "replace") for t in out["text"].numpy()], out["tokens"].numpy().tolist())


def run_load(fn, requests, threads=8, per_thread=200, seed=1):
    """Single-threaded answers first, then `threads` threads x `per_thread` requests drawn from `requests`.

    Returns a dict of figures; `mismatches` and `errors` list what went wrong.
    """
    start = time.perf_counter()
    expected = [call(fn, r) for r in requests]  # also the warm-up (traces every shape once)
    single_rps = len(requests) / (time.perf_counter() - start)
    for r, e in zip(requests, expected):
        if (e[0] == "error") != r["bad"]:
            raise AssertionError(f"single-threaded answer to {r} is {e}")
    # A warm-up round in threads, so one-time allocations of the thread pools are not counted as growth.
    _threaded(fn, requests, expected, threads, max(1, per_thread // 10), seed + 1000)
    rss_before = rss_mb()
    report = _threaded(fn, requests, expected, threads, per_thread, seed)
    rss_after = rss_mb()
    report.update(single_thread_rps=single_rps, rss_before_mb=rss_before, rss_after_mb=rss_after,
                  rss_growth_mb=rss_after - rss_before, distinct_requests=len(requests))
    return report


def _threaded(fn, requests, expected, threads, per_thread, seed):
    latencies, mismatches, errors, bad_rejected = [], [], [], [0]
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(index):
        rng = random.Random(seed * 1000 + index)
        order = [rng.randrange(len(requests)) for _ in range(per_thread)]
        barrier.wait()
        for i in order:
            t0 = time.perf_counter()
            try:
                got = call(fn, requests[i])
            except Exception as e:  # noqa: BLE001 - any other error is a failure to report
                got = ("error", type(e).__name__, str(e)[:200])
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if got != expected[i]:
                    (errors if got[0] == "error" else mismatches).append((i, got, expected[i]))
                elif got[0] == "error":
                    bad_rejected[0] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000.0
    return {"threads": threads, "requests_per_thread": per_thread, "requests": len(latencies),
            "seconds": wall, "requests_per_second": len(latencies) / wall,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "bad_requests_rejected": bad_rejected[0], "mismatches": mismatches, "errors": errors}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("saved_model", help="a version folder, e.g. saved_models/python-docs/1")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per thread")
    parser.add_argument("--distinct", type=int, default=64, help="distinct requests the threads draw from")
    parser.add_argument("--max-length", default="5:20", help="LOW:HIGH tokens per request")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    loaded = tf.saved_model.load(args.saved_model)
    fn = loaded.signatures["serving_default"]
    tokens = [t.decode("utf-8") for t in loaded.signatures["vocabulary"]()["tokens"].numpy()]
    low, high = (int(v) for v in args.max_length.split(":"))
    report = run_load(fn, make_requests(tokens, args.distinct, (low, high)), args.threads, args.requests)
    print(summary(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0 if not report["mismatches"] and not report["errors"] else 1


def summary(report):
    return (f"{report['threads']} threads x {report['requests_per_thread']} requests: "
            f"{report['requests_per_second']:.0f} requests/s (single thread {report['single_thread_rps']:.0f}/s), "
            f"latency p50 {report['latency_ms_p50']:.1f} ms p99 {report['latency_ms_p99']:.1f} ms, "
            f"{len(report['mismatches'])} mismatches, {len(report['errors'])} errors, "
            f"{report['bad_requests_rejected']} bad requests rejected, "
            f"RSS {report['rss_before_mb']:.0f} -> {report['rss_after_mb']:.0f} MiB "
            f"({report['rss_growth_mb']:+.1f})")


if __name__ == "__main__":
    sys.exit(main())
