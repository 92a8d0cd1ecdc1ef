"""The benchmark entry point runs (`--smoke`) and writes every section with numbers.

Benchmarks are not tests: this only keeps `python -m bench.run` from rotting.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHAKESPEARE_DIR, needs_shakespeare  # conftest also puts the repository (and `bench`) on sys.path

HEADLINES = {
    "pipeline": ["baseline_chars_per_s", "package_chars_per_s", "ratio", "package_cached_chars_per_s"],
    "training": ["baseline_chars_per_s", "default_chars_per_s", "best_chars_per_s", "ratio_best",
                 "padding_bucketed_max", "padding_unbucketed_default"],
    "quality": ["baseline_bits_per_char", "package_bits_per_char", "improvement_bits_per_char", "budget_seconds"],
    "generation": ["baseline_single_chars_per_s", "package_single_chars_per_s", "single_ratio",
                   "package_batch_chars_per_s"],
    "memory": ["import_floor_mb", "baseline_train_mb", "package_train_mb", "baseline_generate_mb",
               "package_generate_mb"],
    "ceiling": ["peak_flops_per_s"],
}
ROW_NUMBERS = {
    "pipeline": "real_chars_per_s", "training": "real_chars_per_s", "quality": "val_bits_per_char",
    "memory": "peak_rss_mb", "ceiling": "fraction_of_peak",
}


def number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def has_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out-dir", str(out), "--name", "smoke",
         "--data", str(SHAKESPEARE_DIR / "input.txt")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(out / "smoke.json") as f:
        return out, json.load(f)


@needs_shakespeare
@pytest.mark.slow
def test_smoke_run_writes_every_section_with_numbers(smoke):
    _, results = smoke
    for section, keys in HEADLINES.items():
        assert section in results, section
        assert "error" not in results[section], results[section].get("error")
        for key in keys:
            assert number(results[section].get(key)), (section, key, results[section].get(key))
        assert number(results[section]["section_seconds"])
    for section, key in ROW_NUMBERS.items():
        rows = results[section]["rows"]
        assert rows and all(number(r[key]) for r in rows), (section, rows)
    assert all(number(r["chars_per_s"]) for r in results["generation"]["rows"] if r.get("status") is None)


@needs_shakespeare
@pytest.mark.slow
def test_smoke_run_trains_the_package_with_both_thread_settings(smoke):
    """In-process rows keep TensorFlow's defaults; the child rows are set up like `keras-textgen train`."""
    from keras_textgen import threads

    _, results = smoke
    package = [r for r in results["training"]["rows"] if r["impl"] == "package"]
    settings = {r["threads"] for r in package}
    assert "TensorFlow default" in settings and len(settings) == 2, settings
    (child,) = settings - {"TensorFlow default"}
    assert child.startswith(f"{threads.resolve('auto')} " if threads.resolve("auto") else "TensorFlow default (")
    assert len(package) == 2 * len({(r["mode"], r["batch_size"]) for r in package})


@needs_shakespeare
@pytest.mark.slow
def test_smoke_run_times_the_exports_when_the_modules_exist(smoke):
    _, results = smoke
    gen = results["generation"]
    saved = [r for r in gen["rows"] if r["path"].startswith("SavedModel")]
    steps = gen["tflite_step"]
    assert saved and steps
    if has_module("keras_textgen.export"):
        assert all(number(r["chars_per_s"]) for r in saved), saved
        if has_module("keras_textgen.lite"):
            assert all(number(r["median_us"]) for r in steps), steps
            assert number(gen["tflite_step_median_us"])
    else:
        assert all(r["status"].startswith("not available") for r in saved)


@needs_shakespeare
@pytest.mark.slow
def test_smoke_run_records_the_run_and_checks_the_targets(smoke):
    out, results = smoke
    meta = results["meta"]
    assert meta["smoke"] is True and meta["date"] and "bench.run --smoke" in meta["command"]
    assert meta["machine"]["cpu_model"] and meta["machine"]["usable_cores"] >= 1
    assert meta["versions"]["tensorflow"] and meta["versions"]["keras"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (CI's clean clone is one): the run names the measured commit
        assert meta["code"]["commit"] == head.stdout.strip()
        assert f"- Code: commit {head.stdout.strip()[:12]}" in (out / "smoke.md").read_text()
    else:
        assert meta["code"] == {"commit": None, "dirty": None}
    names = [t["name"] for t in results["targets"]]
    assert names == ["pipeline", "pipeline_cached", "training", "padding", "quality", "generation_single",
                     "generation_single_xla", "generation_batch", "generation_batch_xla", "tflite_step"]
    for t in results["targets"]:
        if t["name"] != "tflite_step" or has_module("keras_textgen.lite"):
            assert number(t["value"]) and t["met"] in (True, False), t
    md = (out / "smoke.md").read_text()
    assert "## Targets" in md and "## 6. Hardware ceiling" in md
    assert (out / "smoke-quality.png").stat().st_size > 1000


@needs_shakespeare
@pytest.mark.slow
def test_smoke_run_scores_the_package_in_both_modes(smoke):
    """Quality: lines and chunks rows; the target uses the better one, whichever it is."""
    _, results = smoke
    sec = results["quality"]
    package = {r["mode"]: r["val_bits_per_char"] for r in sec["rows"] if r["impl"] == "package"}
    assert set(package) == {"lines", "chunks"}
    assert sec["package_bits_per_char"] == min(package.values()) == package[sec["package_mode"]]
    assert sec["improvement_bits_per_char"] == pytest.approx(sec["baseline_bits_per_char"] - min(package.values()))
    # the package side runs in a child set up as `keras-textgen train`; the baseline keeps TensorFlow's defaults
    from keras_textgen import threads

    applied = threads.resolve("auto")
    expected = f"{applied} (configure_threads auto)" if applied else "TensorFlow default (configure_threads auto)"
    assert {r["threads"] for r in sec["rows"] if r["impl"] == "package"} == {expected}
    assert [r["threads"] for r in sec["rows"] if r["impl"] == "baseline"] == ["TensorFlow default"]


def test_context_windows_score_each_validation_line_after_the_text_before_it():
    import keras_textgen as ktg
    from bench import quality

    document = (("ab", True), ("xy", False), ("cde", True), ("f", False), ("gh", True))
    vocab = ktg.Vocabulary.adapt(["ab\nxy\ncde\nf\ngh"])
    x, y = quality.context_windows(document, 3, vocab, seq_len=5)

    def ids(text, width=5, pads=0):
        out = [0] * pads + [int(i) for i in vocab.encode(text).numpy()]
        return out + [0] * (width - len(out))

    eos = ktg.vocab.EOS_ID
    # "ab" opens the text: [EOS] a b -> a b \n, every target scored, right-padded.
    assert x[0].tolist() == [eos] + ids("ab", 4) and y[0].tolist() == ids("ab\n")
    # "cde": the window ends at its newline; "y\n" before it is context only.
    assert x[1].tolist() == ids("y\ncde") and y[1].tolist() == ids("cde\n", pads=1)
    # "gh" ends the text: no newline to predict after it, so the window ends one earlier.
    assert x[2].tolist() == ids("e\nf\ng") and y[2].tolist() == ids("gh", pads=3)
    # n + 1 targets per line of n characters, but the last line's missing end.
    assert [(row != 0).sum() for row in y] == [3, 4, 2]
    assert quality.context_windows(document, 1, vocab, seq_len=5)[0].shape == (1, 5)


@needs_shakespeare
@pytest.mark.slow
def test_quality_chunks_variant_trains_with_the_batch_size_and_dropout_asked():
    from bench import config, corpora, quality

    s = config.smoke_settings(data=str(SHAKESPEARE_DIR / "input.txt"))
    train, val, _, _ = quality.texts(s)
    row = quality.run_package_chunks(train, corpora.shakespeare_document(s.data), 4, 2, s, batch_size=8, dropout=0.2)
    assert row["batch_size"] == 8 and row["steps"] > 0 and row["mode"] == "chunks"
    assert row["model"].startswith("build_model(vocab, dropout=0.2): LSTM(256) x1, batch 8, chunks of 100")
    assert math.isfinite(row["val_bits_per_char"])


def test_quality_variant_flags_are_refused_in_lines_mode(capsys):
    from bench import quality

    with pytest.raises(SystemExit) as exit_info:  # argparse's error, before anything is trained
        quality.main(["--mode", "lines", "--dropout", "0.2"])
    assert exit_info.value.code == 2
    assert "error: --batch-size and --dropout apply to --mode chunks" in capsys.readouterr().err


def test_training_flops_per_char_follows_the_layer_sizes():
    from bench import measure

    lstm = 2 * 4 * 128 * (66 + 128)
    dense = 2 * 128 * 67
    assert measure.training_flops_per_char(66, 128, 1, 67) == 3 * (lstm + dense)
    two = 3 * (2 * 4 * 8 * (5 + 8) + 2 * 4 * 8 * (8 + 8) + 2 * 8 * 6)
    assert measure.training_flops_per_char(5, 8, 2, 6) == two


def test_targets_are_judged_in_the_right_direction():
    from bench import report

    results = {"pipeline": {"ratio": 25.0, "ratio_cached": 10.0},
               "training": {"ratio_best": 12.0, "padding_bucketed_max": 0.2},
               "quality": {"improvement_bits_per_char": 0.6},
               "generation": {"single_ratio": 100.0, "single_xla_ratio": 3000.0, "package_batch_chars_per_s": 3e5,
                              "package_batch_xla_chars_per_s": 1e5, "tflite_step_median_us": 40.0}}
    met = {t["name"]: t["met"] for t in report.targets(results)}
    assert met == {"pipeline": True, "pipeline_cached": False, "training": True, "padding": False, "quality": True,
                   "generation_single": False, "generation_single_xla": True, "generation_batch": True,
                   "generation_batch_xla": False, "tflite_step": True}
    assert all(t["met"] is None for t in report.targets({}))
    assert "| Target |" in report.markdown({"targets": report.targets(results)})


def test_the_shakespeare_target_is_judged_on_nanogpt_s_windows_and_both_figures_are_reported():
    from bench import defaults

    def row(name, nats_100, nats_256):
        return {"name": name, "wall_seconds": 600.0, "stopped_by": "time budget", "evaluations": 9,
                "best_evaluation": 8, "held_out_nats_per_token": nats_100,
                "held_out_bits_per_token": nats_100 / math.log(2), "held_out_nats_by_window": {"256": nats_256},
                "chosen": "corpus of 1,003,836 chars -> LSTM 512"}

    results = {"date": "d", "command": "c", "shakespeare": {"corpus": "ts", "rows": [
        row("budget 10m", 1.4869, 1.4671), row("budget 15m", 1.4891, 1.4690), row("budget 20m", 1.40, 1.39)]}}
    target = next(t for t in defaults.targets(results) if t["name"].startswith("Tiny Shakespeare"))
    assert "256-char windows" in target["name"]
    assert target["measured"] == 1.4671 and target["met"] is True  # 20 minutes is past nanoGPT's budget
    md = defaults.markdown(results)
    assert "| nats/token, 256-token windows |" in md and "| 1.4869 | 2.145 | 1.4671 |" in md


def test_the_budget_curve_places_the_bare_default_command_at_the_default_budget():
    from bench import defaults
    from keras_textgen.config import DEFAULT_TIME_BUDGET

    def row(name, bits, args=()):
        return {"name": name, "held_out_bits_per_token": bits, "args": list(args)}

    own = {"rows": [row("default", 2.0), row("budget 10m", 1.9, ["--time-budget", "10m"]),
                    row("budget 1m", 2.5, ["--time-budget", "1m"])]}
    assert defaults.budget_curve(own) == [(1.0, 2.5), (DEFAULT_TIME_BUDGET / 60, 2.0), (10.0, 1.9)]
    own["rows"][0]["args"] = ["--time-budget", "3s"]  # a default run with a budget of its own is not that point
    assert defaults.budget_curve(own) == [(1.0, 2.5), (10.0, 1.9)]


@pytest.mark.slow
def test_unknown_section_is_refused():
    result = subprocess.run([sys.executable, "-m", "bench.run", "--only", "pipline"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown section" in result.stderr


def test_profile_attributes_kernel_time_to_op_types(tmp_path):
    """bench.profile reads the XPlane that tf.profiler writes and finds the kernels that ran."""
    import tensorflow as tf

    from bench import profile

    a = tf.random.normal([256, 256])
    matmuls = tf.function(lambda: tf.linalg.matmul(tf.linalg.matmul(a, a), a))
    seconds = profile.trace(str(tmp_path), matmuls)
    ops = profile.op_times(str(tmp_path))
    matmul_runs = sum(count for op_type, (_, count) in ops.items() if "MatMul" in op_type)
    assert matmul_runs == 2
    assert 0 < sum(t for t, _ in ops.values()) < 10 * seconds + 1


@pytest.mark.slow
def test_startup_smoke_times_every_way_and_judges_its_targets(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.startup", "--smoke", "--out-dir", str(tmp_path), "--name", "s"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "s.json") as f:
        results = json.load(f)
    rows = {r["name"]: r for r in results["rows"]}
    assert len(rows) == 6
    for name, row in rows.items():
        assert row["exit_s"] > 0, name
        assert row["first_output_s"] is not None and 0 < row["first_output_s"] <= row["exit_s"], name
    # Whether the kept generator is quicker than tracing is the benchmark's figure, not a test's: one smoke
    # repeat of each, beside other tests, ranked the two either way. tests/test_generator_cache.py checks
    # that generate uses the kept generator.
    assert [t["met"] is not None for t in results["targets"]] == [True, True]
    assert "| Target | Goal | Measured | Met |" in (tmp_path / "s.md").read_text()


@pytest.mark.slow  # four fresh processes that each train
def test_streaming_smoke_trains_streamed_and_in_memory_and_judges_its_targets(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.streaming", "--smoke", "--out-dir", str(tmp_path),
                             "--name", "s"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "s.json") as f:
        results = json.load(f)
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"streamed", "in memory"}
    assert rows["streamed"]["streamed"] is True and rows["in memory"]["streamed"] is False
    assert rows["streamed"]["vocab_pass"]["mb_per_s"] > 0 and rows["in memory"]["vocab_pass"] is None
    for row in rows.values():
        assert 0 < row["first_step_s"] < row["wall_seconds"] and row["train_chars_per_s"] > 0
        assert row["peak_rss_mb"] > 100 and row["steps"] == 6 and row["package"] == str(ROOT)
    assert [t["met"] is not None for t in results["targets"]] == [True, True, True]
    assert "| Target | Goal | Measured | Met |" in (tmp_path / "s.md").read_text()
