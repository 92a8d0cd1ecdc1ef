"""How a run ends and what it ships: the best evaluation's weights, early stopping, the time budget, the schedule."""

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_textgen as ktg
from keras_textgen import artifacts, backup, cli, errors, losses, preparation, schedules, sizing, stopping, training

EXE = [sys.executable, "-m", "keras_textgen"]


def write_noise_corpus(folder, lines=120, seed=0):
    """Lines of random letters: a model can only memorise the training lines, so validation loss soon rises."""
    rng = np.random.default_rng(seed)
    text = "\n".join("".join(rng.choice(list("abcdefgh"), size=rng.integers(8, 16))) for _ in range(lines))
    path = folder / "noise.txt"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def overfitting_config(corpus, **overrides):
    """A tiny model with a high constant learning rate: it memorises within a few epochs."""
    settings = dict(corpus=str(corpus), units=48, layers=1, batch_size=8, dropout=0.0, weight_decay=0.0,
                    learning_rate=0.02, lr_schedule="constant", epochs=14, patience=0, seed=3, time_budget=None,
                    sample_prompts=(), keep_generator=False)  # no samples, no kept loop: nothing here reads them
    settings.update(overrides)
    return training.TrainConfig(**settings)


def keras_val_loss(model, prepared):
    """The validation loss `fit` reports (Keras's mean over batches, the run's loss) for `model` on a
    `preparation.prepare` result."""
    model.compile(loss=losses.next_token_loss(prepared.targets_per_sequence))
    return model.evaluate(prepared.val_ds, verbose=0)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overfit")
    config = overfitting_config(write_noise_corpus(folder))
    training.train(config, folder / "model", print_fn=lambda *_: None, verbose=0)
    return config, folder / "model"


@pytest.mark.slow
def test_a_run_whose_validation_loss_rises_ships_its_best_evaluation(overfit_run):
    config, model_dir = overfit_run
    history = json.loads((model_dir / artifacts.HISTORY_FILE).read_text())
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert best < len(val) - 2 and val[-1] > val[best] + 0.05, f"the fixture must overfit: {val}"
    assert history["best"]["epoch"] == best + 1 and history["best"]["val_loss"] == pytest.approx(val[best])
    assert history["best"]["step"] == history["step"][best]
    assert history["stopped_by"] == "epochs" and len(val) == config.epochs
    model, _, run_config = ktg.load_model_dir(model_dir, compile=False)
    assert run_config["best"]["epoch"] == best + 1 and run_config["stopped_by"] == "epochs"
    prepared = preparation.prepare(config)
    assert keras_val_loss(model, prepared) == pytest.approx(val[best], rel=1e-4)  # model.keras is the best
    assert run_config["targets_per_sequence"] == pytest.approx(prepared.targets_per_sequence)
    best_file = keras.saving.load_model(model_dir / artifacts.CHECKPOINT_DIR / "best.keras", compile=False)
    for got, want in zip(model.get_weights(), best_file.get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_the_cli_names_the_best_evaluation(overfit_run, capsys):
    _, model_dir = overfit_run
    assert cli.main(["info", "--model", str(model_dir)]) == 0
    history = json.loads((model_dir / artifacts.HISTORY_FILE).read_text())
    out = capsys.readouterr().out
    assert re.search(rf"^best: +evaluation {history['best']['epoch']} \(step {history['best']['step']}\)", out, re.M)
    assert re.search(r"^ended by: +epochs$", out, re.M)


@pytest.mark.slow
def test_early_stopping_ends_the_run_after_patience_evaluations(tmp_path):
    config = overfitting_config(write_noise_corpus(tmp_path), patience=2, epochs=40)
    _, _, history = training.train(config, tmp_path / "model", print_fn=lambda *_: None, verbose=0)
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert history["stopped_by"] == "early stop"
    assert len(val) == best + 1 + 2 < 40  # two evaluations without improvement, then the end
    assert history["best"]["epoch"] == best + 1


@pytest.mark.slow
def test_a_new_run_does_not_inherit_an_earlier_runs_best_checkpoint(overfit_run, tmp_path):
    """--force starts afresh: the replaced run's better checkpoint must not come back as the new model."""
    config, model_dir = overfit_run
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    weaker = overfitting_config(config.corpus, epochs=1, learning_rate=1e-4, force=True)
    _, _, history = training.train(weaker, copy, print_fn=lambda *_: None, verbose=0)
    assert history["best"]["epoch"] == 1 and len(history["val_loss"]) == 1
    json_best = json.loads((copy / artifacts.CHECKPOINT_DIR / "best.json").read_text())
    assert json_best["value"] == pytest.approx(history["val_loss"][0])


def test_the_schedule_warms_up_then_decays_to_its_floor_as_progress_reaches_one():
    schedule = schedules.WarmupCosineDecay(1e-2, warmup_steps=10, floor=0.1)
    assert float(schedule(0)) == pytest.approx(1e-3)  # step 1 of 10
    assert float(schedule(4)) == pytest.approx(5e-3)
    assert float(schedule(9)) == pytest.approx(1e-2)  # warmed up, progress 0
    lrs = []
    for progress in np.linspace(0, 1, 11):
        schedule.progress.assign(progress)
        lrs.append(float(schedule(1000)))
    assert lrs[5] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    assert lrs[-1] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing
    schedule.progress.assign(3.0)  # past the end: held at the floor
    assert float(schedule(1000)) == pytest.approx(1e-3)


def test_the_schedule_follows_the_larger_of_steps_and_the_clock():
    schedule = schedules.WarmupCosineDecay(1e-2, total_steps=1000, warmup_steps=1, floor=0.0)
    assert float(schedule(500)) == pytest.approx(0.5e-2)  # half the steps, the clock at 0
    schedule.progress.assign(0.75)
    assert float(schedule(500)) == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 0.75)))  # the clock leads
    assert float(schedule(1000)) == pytest.approx(0.0)
    restored = schedules.WarmupCosineDecay.from_config(schedule.get_config())
    assert float(restored(500)) == pytest.approx(0.5e-2) and float(restored(0)) == pytest.approx(1e-2)


@pytest.mark.slow
def test_the_learning_rate_reaches_its_floor_at_the_epoch_bound(tmp_path):
    config = overfitting_config(write_noise_corpus(tmp_path), epochs=3, lr_schedule="cosine", learning_rate=4e-3)
    _, _, history = training.train(config, tmp_path / "model", print_fn=lambda *_: None, verbose=0)
    lrs = history["learning_rate"]
    assert lrs[-1] == pytest.approx(4e-3 * training.LR_FLOOR, rel=1e-4)
    assert lrs[0] > lrs[1] > lrs[2]
    # The compiled model, schedule included, loads in a fresh process.
    code = ("import keras_textgen as ktg, sys; m = ktg.load_model_dir(sys.argv[1])[0]; "
            "print(type(m.optimizer).__name__, type(m.optimizer._learning_rate).__name__)")
    loaded = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["Adam", "WarmupCosineDecay"]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_run_clock_stops_at_the_budget_and_carries_its_seconds_across_a_restart(vocab, lines):
    keras.utils.set_random_seed(0)
    schedule = schedules.WarmupCosineDecay(1e-2, warmup_steps=1, floor=0.1)
    model = ktg.build_model(vocab, units=8, learning_rate=schedule)
    ds = ktg.make_dataset(lines, vocab, batch_size=2, repeat=True, seed=0)
    fake = FakeClock()

    class Tick(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            fake.now += 1.0  # each step takes one "second"

    clock = stopping.RunClock(budget_seconds=10, progress=schedule.progress, clock=fake)
    model.fit(ds, epochs=100, steps_per_epoch=4, verbose=0, callbacks=[Tick(), clock])
    assert int(model.optimizer.iterations) == 10 and clock.stopped  # the 10th step reaches the budget
    assert float(schedule.progress) == 1.0 and float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    # A restart: the new process's clock starts where the backup's seconds left off.
    state = clock.backup_state()
    again = stopping.RunClock(budget_seconds=14, progress=schedule.progress, clock=fake)
    again.restore_state(state)
    model.fit(ds, epochs=100, steps_per_epoch=4, verbose=0, callbacks=[Tick(), again])
    assert int(model.optimizer.iterations) == 14 and again.seconds == pytest.approx(14)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1.5h", 5400), ("45", 45),
                                           (" 3 min ", 180)])
def test_durations(text, seconds):
    assert stopping.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "abc", "-5m", "10 days", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(errors.ConfigError):
        stopping.parse_duration(text)


@pytest.mark.parametrize("args, message", [
    (["--time-budget", "0"], "longer than 0 seconds"),
    (["--time-budget", "abc"], "expected a duration such as 90s, 10m or 2h"),
    (["--patience", "-1"], "expected an integer >= 0"),
    (["--validate-every", "0"], "expected a positive integer"),
    (["--weight-decay", "-0.1"], "weight_decay must be a number >= 0"),
    (["--deterministic", "--seed", "1"], "deterministic training needs --time-budget none"),
])
def test_bad_run_bounds_are_one_line_errors(text_file, tmp_path, capsys, args, message):
    try:
        code = cli.main(["train", "--corpus", str(text_file), "--out", str(tmp_path / "m"), *args])
    except SystemExit as e:  # argparse's refusal
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert err.startswith("keras-textgen train: error: ")
    assert not os.path.exists(tmp_path / "m")


def test_the_size_rule_regularises_small_corpora_and_widens_for_large_ones():
    choices = [sizing.choose(n) for n in (20_000, 100_000, 300_000, 1_000_000, 10_000_000)]
    widths = [c.units * c.layers for c in choices]
    assert widths == sorted(widths) and widths[0] < widths[2]  # capacity grows with the data
    dropouts = [c.dropout for c in choices]
    assert dropouts[-1] < dropouts[2]  # a corpus too large to memorise in a budget needs less of it
    assert choices[2].learning_rate == sizing.CHAR_RULE[1].learning_rate  # each row sets its own peak learning rate
    assert all(c.dropout > 0 and c.weight_decay > 0 for c in choices)  # every size is regularised
    assert all(c.embedding_dim is None for c in choices)  # characters: one-hot
    word = sizing.choose(50_000, level="word", vocab_size=3000)
    assert word.embedding_dim and word.min_frequency >= 2 and word.max_tokens
    assert sizing.choose(50_000, vocab_size=5000).embedding_dim  # a wide character vocabulary (CJK)
    # A short budget trains the narrowest row's model, whatever the size; from SHORT_BUDGET on, the size decides.
    short = sizing.choose(300_000, time_budget=sizing.SHORT_BUDGET - 1)
    assert (short.units, short.dropout) == (choices[0].units, choices[0].dropout) and short.units < choices[2].units
    assert sizing.choose(300_000, time_budget=None) == choices[2]
    # Recurrent dropout, for the rows that have it, with no budget or one that holds many passes over the corpus.
    assert choices[0].recurrent_dropout > 0 and choices[2].recurrent_dropout > 0 and choices[-1].recurrent_dropout == 0
    per_token = sizing.RECURRENT_DROPOUT_BUDGET_PER_TOKEN
    assert sizing.choose(100_000, time_budget=300).recurrent_dropout == choices[0].recurrent_dropout  # small: many epochs
    assert short.recurrent_dropout == 0  # the narrowest row's model, but a large corpus: few epochs
    for tokens in (300_000, 1_000_000):
        assert sizing.choose(tokens, time_budget=tokens * per_token).recurrent_dropout == choices[2].recurrent_dropout
        assert sizing.choose(tokens, time_budget=tokens * per_token - 1).recurrent_dropout == 0
    assert sizing.choose(1_000_000, time_budget=900).recurrent_dropout == 0  # Tiny Shakespeare at 15 minutes
    # The full width and batch from WIDE_BUDGET on (or with no budget); below it, the row's budget width and batch.
    row = sizing.CHAR_RULE[1]
    assert row.budget_units < choices[2].units and row.budget_batch_size < choices[2].batch_size
    for budget in (sizing.SHORT_BUDGET, sizing.WIDE_BUDGET - 1, sizing.WIDE_BUDGET, 3600):
        budgeted = sizing.choose(300_000, time_budget=budget)
        assert budgeted.recurrent_dropout == (row.recurrent_dropout if budget >= 300_000 * per_token else 0)
        wide = budget >= sizing.WIDE_BUDGET
        assert budgeted.units == (choices[2].units if wide else row.budget_units)
        assert budgeted.batch_size == (choices[2].batch_size if wide else row.budget_batch_size)
        assert dataclasses.replace(budgeted, recurrent_dropout=row.recurrent_dropout, units=choices[2].units,
                                   batch_size=choices[2].batch_size) == choices[2]


def test_given_settings_override_the_rule():
    config = training.TrainConfig(units=32, dropout=0.0)
    filled, choice = preparation.fill_from_corpus(config, 50_000)
    assert (filled.units, filled.dropout) == (32, 0.0)
    assert (filled.batch_size, filled.weight_decay, filled.layers) == (choice.batch_size, choice.weight_decay,
                                                                       choice.layers)
    # The run's budget reaches the rule: a small corpus gets recurrent dropout in 5 minutes, a large one not.
    budgeted = training.TrainConfig(time_budget=300)
    assert preparation.fill_from_corpus(budgeted, 50_000)[0].recurrent_dropout > 0
    assert preparation.fill_from_corpus(budgeted, 1_000_000)[0].recurrent_dropout == 0
    assert preparation.fill_from_corpus(dataclasses.replace(budgeted, recurrent_dropout=0.0),
                                        50_000)[0].recurrent_dropout == 0.0  # the flag overrides it


@pytest.mark.slow
def test_train_prints_the_choice_it_made(tmp_path, text_file):
    printed = []
    config = training.TrainConfig(corpus=str(text_file), epochs=1, steps_per_epoch=2, seed=0, time_budget=None,
                                  sample_prompts=(), keep_generator=False)
    training.train(config, tmp_path / "m", print_fn=printed.append, verbose=0)
    run_config = json.loads((tmp_path / "m" / artifacts.CONFIG_FILE).read_text())
    choice = sizing.choose(run_config["train_tokens"])
    line = next(p for p in printed if "corpus of" in p)
    recurrent = f"recurrent dropout {choice.recurrent_dropout:g}, " if choice.recurrent_dropout else ""
    assert f"corpus of {run_config['train_tokens']:,} chars -> LSTM {choice.units}, dropout {choice.dropout:g}, " \
           f"{recurrent}AdamW wd {choice.weight_decay:g}, batch {choice.batch_size}" in line
    assert (run_config["recurrent_dropout"] > 0) == (choice.recurrent_dropout > 0)
    assert (run_config["units"], run_config["batch_size"]) == (choice.units, choice.batch_size)


@pytest.mark.slow
def test_validate_every_evaluates_inside_epochs(tmp_path):
    config = overfitting_config(write_noise_corpus(tmp_path), epochs=2, validate_every=4)
    pass_steps = preparation.prepare(config).pass_steps
    _, _, history = training.train(config, tmp_path / "model", print_fn=lambda *_: None, verbose=0)
    assert len(history["val_loss"]) == math.ceil(2 * pass_steps / 4) > 2
    assert history["step"] == [4.0 * (i + 1) for i in range(len(history["step"]))]


def _wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_budget_survives_sigkill_and_resume_counting_the_time_spent(tmp_path, capsys):
    budget = 16  # seconds: a first epoch and its evaluation (tracing included) fit well inside it
    corpus = write_noise_corpus(tmp_path, lines=200)
    out = tmp_path / "model"
    args = [*EXE, "train", "--corpus", str(corpus), "--out", str(out), "--units", "32", "--batch-size", "8",
            "--time-budget", f"{budget}s", "--epochs", "1000", "--patience", "0", "--seed", "1", "--backup-every", "5",
            "--no-samples", "--no-generator"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = out / artifacts.BACKUP_DIR / backup.STATE_FILE
    _wait_for(state_file)
    deadline = time.monotonic() + 120
    while (backup.read_state(out / artifacts.BACKUP_DIR) or {}).get("epoch", 0) < 1:  # an evaluation done
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    spent = backup.read_state(out / artifacts.BACKUP_DIR)["train_seconds"]
    assert 0 < spent < budget, "the first process must be killed before its budget ends"
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from the backup" in resumed.stdout
    history = json.loads((out / artifacts.HISTORY_FILE).read_text())
    run_config = json.loads((out / artifacts.CONFIG_FILE).read_text())
    assert run_config["stopped_by"] == "time budget" and run_config["time_budget"] == budget
    # The stop comes at the first training call past the budget; that epoch's evaluation follows.
    assert budget <= run_config["train_seconds"] < budget + 120
    seconds = history["train_seconds"]
    assert seconds == sorted(seconds) and seconds[-1] >= budget  # one clock across both processes
    resumed_rows = [s for s in seconds if s > spent]
    assert resumed_rows and len(resumed_rows) < len(seconds)  # rows from both processes, on one clock
    # Running the finished command again with --force is a new run; without, it is refused.
    capsys.readouterr()
    assert cli.main(args[len(EXE):]) == 2 and "already holds a trained model" in capsys.readouterr().err


class _Model:
    stop_training = False


def _feed(stopper, model, epochs, losses):
    for epoch, loss in zip(epochs, losses):
        stopper.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            return epoch
    return None


def test_early_stopping_counts_evaluations_across_a_restart():
    losses = [3.0, 2.0, 2.5, 2.4, 2.6, 2.7]  # best at evaluation 2; patience 3 runs out at evaluation 5
    uninterrupted = stopping.EarlyStopping(patience=3)
    uninterrupted.set_model(_Model())
    uninterrupted.on_train_begin()
    assert _feed(uninterrupted, uninterrupted.model, range(6), losses) == 4 and uninterrupted.stopped

    first = stopping.EarlyStopping(patience=3)
    first.set_model(_Model())
    first.on_train_begin()
    assert _feed(first, first.model, range(3), losses[:3]) is None  # killed after evaluation 3
    state = json.loads(json.dumps(first.backup_state()))  # it travels as JSON in the backup
    resumed = stopping.EarlyStopping(patience=3)
    resumed.set_model(_Model())
    resumed.restore_state(state)
    resumed.on_train_begin()
    assert _feed(resumed, resumed.model, range(3, 6), losses[3:]) == 4 and resumed.stopped
    assert resumed.best == 2.0 and resumed.best_epoch == 1


def test_a_stop_by_the_budget_is_not_taken_for_an_early_stop():
    stopper = stopping.EarlyStopping(patience=5)
    stopper.set_model(_Model())
    stopper.on_train_begin()
    stopper.model.stop_training = True  # the clock asked first
    stopper.on_epoch_end(0, {"val_loss": 1.0})
    assert not stopper.stopped
