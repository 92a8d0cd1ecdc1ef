"""Section 1: pipeline throughput, real characters per second delivered by the dataset (no model).

"Real" characters are target positions that are not padding (characters and
EOS), counted the same way for both sides. Both rates are steady state: the
one-off start-up of an iterator is left out on both sides, and each row also
keeps the rate of one fresh pass with the start-up included. The baseline's
work is the same for every batch of 8, so its clock runs from the end of its
first batch to its last (`measure.steady_pass`). The package's first batch
comes only after a whole window of lines is encoded, so leaving it out would
leave real work out: it is timed over whole passes of one repeated iterator
instead, after one warm-up pass. The package's figure is a pass of
`make_dataset(...)` with its defaults (shuffle, bucketing, batch 64; batch
256 too, for reference), cold
(`cache=False`: every pass tokenizes again, like the baseline) and cached
(the default `cache=True`, i.e. every epoch after the first).
"""

import statistics
import time

import keras_textgen as ktg
from keras_textgen import data as data_lib

from bench import baseline as baseline_lib
from bench import corpora
from bench.measure import ratio


def package_pass_rate(texts, vocab, mode, batch_size, cache, runs, seed):
    """Steady-state rate of whole passes of one iterator over `make_dataset(..., repeat=True)`.

    The first pass (iterator start-up, cache filling) is a warm-up; then
    `runs` passes are timed one by one. A pass holds the same lines every
    time (whatever the shuffle), so it always delivers `real` characters;
    with `cache=False` every pass encodes its text again.
    """
    once = ktg.make_dataset(texts, vocab, mode=mode, batch_size=batch_size, cache=cache, seed=seed)
    real = data_lib.count_tokens(once)
    per_pass = int(once.reduce(0, lambda n, _: n + 1))
    t0 = time.perf_counter()
    for _ in once:  # one fresh pass, iterator start-up included, for the record
        pass
    with_startup = real / (time.perf_counter() - t0)
    it = iter(ktg.make_dataset(texts, vocab, mode=mode, batch_size=batch_size, cache=cache, seed=seed,
                               repeat=True))
    seconds = []
    for i in range(1 + max(1, runs)):
        t0 = time.perf_counter()
        for _ in range(per_pass):
            next(it)
        if i:  # pass 0 is the warm-up
            seconds.append(time.perf_counter() - t0)
    row = {"impl": "package", "mode": mode, "batch_size": batch_size, "cache": cache,
           "real_chars_per_pass": real, "batches": per_pass,
           "seconds_per_pass": statistics.median(seconds), "runs_seconds": seconds,
           "real_chars_per_s": real / statistics.median(seconds),
           "real_chars_per_s_with_startup": with_startup}
    if mode == "lines":
        row["padding_fraction"] = data_lib.padding_fraction(once)
    return row


def baseline_rate(lines, max_batches, runs, seed):
    bl = baseline_lib.Baseline(lines, seed=seed)
    results = [baseline_lib.measure_pipeline_throughput(bl, lines, max_batches=max_batches) for _ in range(runs)]
    return {"impl": "baseline", "mode": "lines", "batch_size": bl.batch_size, "cache": False,
            "real_chars_per_pass": results[0]["real_chars"], "batches": results[0]["batches"],
            "seconds_per_pass": statistics.median(r["seconds"] for r in results),
            "real_chars_per_s": statistics.median(r["real_chars_per_s"] for r in results),
            "real_chars_per_s_with_startup": statistics.median(r["real_chars_per_s_with_startup"] for r in results),
            "runs_seconds": [r["seconds"] for r in results],
            "padding_fraction": results[0]["padding_fraction"]}


def run(settings, log=print):
    s = settings
    rows = []
    train, _, vocab = corpora.shakespeare_lines(s.data)
    lines = train[: s.pipeline_lines] if s.pipeline_lines else train
    base = baseline_rate(lines, s.pipeline_baseline_batches, s.repeats, s.seed)
    rows.append({"corpus": "shakespeare", **base})
    log(f"  baseline shakespeare lines: {base['real_chars_per_s']:,.0f} chars/s")
    for batch_size in (64, 256):
        for cache in (False, True):
            row = {"corpus": "shakespeare",
                   **package_pass_rate(lines, vocab, "lines", batch_size, cache, s.repeats, s.seed)}
            row["ratio_vs_baseline"] = ratio(row["real_chars_per_s"], base["real_chars_per_s"])
            rows.append(row)
            log(f"  package shakespeare lines b={batch_size} cache={cache}: {row['real_chars_per_s']:,.0f} chars/s")

    text, _, chunk_vocab = corpora.shakespeare_chunks(s.data)
    text = corpora.first_chars(text, sum(len(x) + 1 for x in lines))  # the same amount of text as the lines

    def chunk_rows(corpus, text, vocab, base):
        """The package's chunks-mode rows (cold, cached) for one text, against `base`, the same text's lines."""
        for cache in (False, True):
            row = {"corpus": corpus, **package_pass_rate([text], vocab, "chunks", 64, cache, s.repeats, s.seed)}
            row["ratio_vs_baseline"] = ratio(row["real_chars_per_s"], base["real_chars_per_s"])
            rows.append(row)
            log(f"  package {corpus} chunks cache={cache}: {row['real_chars_per_s']:,.0f} chars/s")

    chunk_rows("shakespeare", text, chunk_vocab, base)

    doc_text, doc_lines, doc_vocab = corpora.python_docs(s.python_docs_chars)
    doc_base = baseline_rate(doc_lines, s.pipeline_baseline_batches, s.repeats, s.seed)
    rows.append({"corpus": "python-docs", **doc_base})
    log(f"  baseline python-docs lines: {doc_base['real_chars_per_s']:,.0f} chars/s")
    chunk_rows("python-docs", doc_text, doc_vocab, doc_base)

    def lines_row(batch_size, cache):
        return next(r for r in rows if r["impl"] == "package" and r["mode"] == "lines"
                    and r["batch_size"] == batch_size and r["cache"] == cache)

    headline, cached = lines_row(64, False), lines_row(64, True)
    return {"rows": rows,
            "baseline_chars_per_s": base["real_chars_per_s"],
            "package_chars_per_s": headline["real_chars_per_s"],
            "ratio": headline["ratio_vs_baseline"],
            "package_cached_chars_per_s": cached["real_chars_per_s"],
            "ratio_cached": cached["ratio_vs_baseline"],
            "note": "shakespeare lines, package cold (cache=False) at its default batch 64 vs baseline at batch 8 "
                    "(the targets); batch 256 rows for reference; steady-state rates "
                    "(the last column: one fresh pass, iterator start-up included); "
                    "the chunks and python-docs rows compare with the baseline on the same text's lines"}
