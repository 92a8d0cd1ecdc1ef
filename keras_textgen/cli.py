"""The `keras-textgen` command line: train, generate, evaluate, info, export.

Bad input prints one line, `keras-textgen COMMAND: error: ...`, and exits with code 2.
"""

import argparse
import functools
import json
import math
import os
import sys

# Before TensorFlow loads (the package imports lazily). Level 3: TensorFlow's C++
# "errors" here are notes such as "oneDNN supports DT_BOOL only on ..."; real
# failures still reach the user as Python exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXIT_USAGE = 2


def _import_tensorflow_quietly():
    """Imports TensorFlow with its start-up chatter (CUDA probes, oneDNN notes) hidden.

    TensorFlow writes those lines straight to file descriptor 2 before its
    logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot silence them. They
    are captured and shown only if the import or device set-up fails.
    """
    import tempfile

    from keras_textgen import _compat

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            with _compat.matplotlib_held_back():  # a second of every start (see there)
                import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# The one copy of the training defaults; keras_textgen.config imports no TensorFlow, so `--help`
# and argument errors answer at once. TensorFlow loads in `main`, once a command runs.
from keras_textgen.config import TrainConfig as D  # noqa: E402


def _int_at_least(text, minimum, expected):
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text):
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text):
    return _int_at_least(text, 0, "an integer >= 0")


def _duration(text):
    if text.strip().lower() in ("none", "off"):
        return None
    from keras_textgen import config, errors

    try:
        return config.parse_duration(text)
    except errors.ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _threads(text):
    return text if text == "auto" else _int_at_least(text, 0, "'auto' or an integer >= 0")


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _non_negative_number(text):
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _add_corpus_args(p, required=True):
    p.add_argument("--corpus", required=required, metavar="SOURCE",
                   help="python-docs, a .txt/.csv/.tsv/.jsonl file, a glob ('data/*.txt') or a directory of them "
                        "(local, gs://, any tf.io.gfile path), or tfds:NAME[:FEATURE]")
    p.add_argument("--column", help="text column(s) of a CSV/TSV/JSONL file, comma-separated (joined by a space); "
                                    "in a CSV/TSV a name or a number from 1 (e.g. --column 2)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction,
                   help="whether a CSV/TSV's first row names its columns (default: detected)")
    p.add_argument("--mode", choices=("lines", "chunks"), help="one example per line, or windows of a long text")
    p.add_argument("--memory-budget", type=_non_negative_number, metavar="MB",
                   help="text corpora up to this many MB are read into memory, larger ones stream from their files "
                        "(default: 32; 0 = always stream)")
    p.add_argument("--data-dir", help="TensorFlow Datasets data_dir (prepared datasets)")
    p.add_argument("--manual-dir", help="TensorFlow Datasets manual_dir (source files, for offline use)")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: `keras-textgen train: error: ...`, exit 2, no usage dump."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(
        prog="keras-textgen", description="Train LSTM text generators from tf.data and ship them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    p = sub.add_parser("train", help="train a model on a corpus", description="Train a model on a corpus.")
    _add_corpus_args(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where the model, vocabulary and history go")
    p.add_argument("--level", choices=("char", "word"), default=D.level, help="characters or words (with punctuation) as tokens")
    p.add_argument("--epochs", type=_positive_int, default=D.epochs,
                   help="the most training epochs (early stopping or the time budget usually ends the run first)")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="batches per epoch; unset = one pass over the data")
    p.add_argument("--validation-steps", type=_positive_int, help="validation batches; unset = all")
    p.add_argument("--validate-every", type=_positive_int, metavar="STEPS",
                   help="evaluate every STEPS training steps instead of at each epoch's end (for long epochs)")
    p.add_argument("--patience", type=_non_negative_int, default=D.patience, metavar="N",
                   help="stop after N evaluations without a better validation loss; 0 = never")
    p.add_argument("--time-budget", type=_duration, default=D.time_budget, metavar="DURATION",
                   help="stop after this much training (90s, 10m, 2h; 'none' = no budget); the learning rate "
                        "anneals to reach its floor when the budget (or the epoch bound) ends")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"), default=D.lr_schedule,
                   help="warm-up then cosine decay over the run, or a constant learning rate")
    p.add_argument("--batch-size", type=_positive_int, help="examples per batch (default: from the corpus size)")
    p.add_argument("--seq-len", type=_positive_int, default=D.seq_len, help="window length in chunks mode")
    p.add_argument("--max-line-length", type=_positive_int, default=D.max_line_length,
                   help="lines mode: the widest example in tokens; a longer line keeps its first N-1 (+ EOS)")
    p.add_argument("--units", type=_positive_int, help="width of each recurrent layer (default: from the corpus size)")
    p.add_argument("--layers", type=_positive_int, help="stacked recurrent layers (default: from the corpus size)")
    p.add_argument("--cell", choices=("lstm", "gru"), default=D.cell, help="recurrent cell")
    p.add_argument("--embedding-dim", type=_non_negative_int,
                   help="embedding width; 0 = one-hot inputs (default: one-hot for characters, 128 for words)")
    p.add_argument("--dropout", type=_number, help="dropout after each recurrent layer (default: from the corpus size)")
    p.add_argument("--recurrent-dropout", type=_number,
                   help="dropout of the state entering each gate, one mask per sequence (default: from the corpus size)")
    p.add_argument("--learning-rate", type=_number, help="peak learning rate (default: from the corpus size)")
    p.add_argument("--weight-decay", type=_number, help="AdamW weight decay; 0 = Adam (default: from the corpus size)")
    p.add_argument("--max-tokens", type=_positive_int, help="vocabulary size cap (default for words: 20000)")
    p.add_argument("--min-frequency", type=_positive_int,
                   help="drop rarer tokens (default for words: 2, or 3 from 2M words on)")
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--seed", type=int, help="seed for reproducible runs")
    p.add_argument("--backup-every", type=_positive_int, default=D.backup_every, help="back up the run every N steps (resume by re-running the command)")
    samples = p.add_mutually_exclusive_group()
    samples.add_argument("--sample-prompt", action="append", dest="sample_prompts",
                         help="prompt for the samples printed each epoch (repeatable; default: one empty prompt)")
    samples.add_argument("--no-samples", action="store_true",
                         help="print no samples while training (their generation loop is not traced either)")
    p.add_argument("--sample-length", type=_positive_int, default=D.sample_length,
                   help="most tokens of each sample printed each epoch")
    p.add_argument("--no-generator", action="store_true",
                   help="do not keep the traced generation loop in MODEL_DIR/generator/ (saves tracing it when "
                        "training ends; `generate` then traces it itself, a few seconds each time)")
    p.add_argument("--strategy", choices=("mirrored", "multi-worker", "tpu"),
                   help="tf.distribute strategy; --batch-size is then per replica")
    p.add_argument("--deterministic", action="store_true",
                   help="enable TensorFlow op determinism (needs --seed): identical runs give identical weights")
    p.add_argument("--intra-op-threads", type=_threads, default=D.intra_op_threads, metavar="N",
                   help="threads per TensorFlow op; auto = 1 on a CPU-only machine with at most 2 cores (faster "
                        "for recurrent training there), else TensorFlow's default; 0 = TensorFlow's default")
    p.add_argument("--steps-per-execution", type=_positive_int, metavar="N",
                   help="training steps per tf.function call (Keras's steps_per_execution); it must divide the "
                        "epoch's steps and --validation-steps; unset = the largest such count up to 8 (1 under a "
                        "--strategy; more than 1 with several replicas is refused: Keras 3 fails there)")
    p.add_argument("--force", action="store_true", help="replace a finished model in MODEL_DIR")

    p = sub.add_parser("generate", help="generate text from a trained model",
                       description="Print one continuation per prompt.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    p.add_argument("--max-length", type=int, default=200)
    p.add_argument("--temperature", type=_number, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=_number, default=1.0, help="1 = off")
    p.add_argument("--seed", type=int, help="the same seed prints the same text")
    p.add_argument("--jit-compile", action="store_true",
                   help="compile the generation loop with XLA: faster for one prompt, not for 16 or more; "
                        "a seed then samples other text than without it")
    p.add_argument("--json", action="store_true", help="print a JSON list of continuations")

    p = sub.add_parser("evaluate", help="validation loss of a model on a corpus",
                       description="Print validation loss in nats and bits per token. Without --corpus, on the "
                                   "corpus (and column, header, mode) the model was trained on, from its config.json.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    _add_corpus_args(p, required=False)
    p.add_argument("--batch-size", type=_positive_int, default=64)

    p = sub.add_parser("export", help="export for TensorFlow Serving or TFLite",
                       description="Write saved_models/<name>/<version>/ (SavedModel) or saved_models/<name>.tflite.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    p.add_argument("--format", choices=("saved_model", "tflite"), required=True)
    p.add_argument("--name", help="served model / file name (default: the model directory's name)")
    p.add_argument("--version", type=_positive_int, help="SavedModel version (default: highest existing + 1)")
    p.add_argument("--force", action="store_true", help="replace an existing SavedModel version")
    p.add_argument("--quantize", choices=("none", "dynamic", "float16"), default="none",
                   help="TFLite weights: float32, int8 (dynamic range) or float16")
    p.add_argument("--base-dir", default="saved_models", help="output folder (default: saved_models)")

    p = sub.add_parser("info", help="describe a trained model", description="Vocabulary, layers, history.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    return parser


def cmd_train(args):
    from keras_textgen import training

    config = training.TrainConfig(
        corpus=args.corpus, level=args.level, mode=args.mode, column=args.column, header=args.header,
        data_dir=args.data_dir, memory_budget=args.memory_budget,
        manual_dir=args.manual_dir, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps, validate_every=args.validate_every, patience=args.patience,
        time_budget=args.time_budget, lr_schedule=args.lr_schedule, batch_size=args.batch_size, seq_len=args.seq_len,
        max_line_length=args.max_line_length, sample_length=args.sample_length,
        keep_generator=not args.no_generator,
        units=args.units, layers=args.layers, cell=args.cell, embedding_dim=args.embedding_dim,
        dropout=args.dropout, recurrent_dropout=args.recurrent_dropout, learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        max_tokens=args.max_tokens,
        min_frequency=args.min_frequency, lowercase=args.lowercase, seed=args.seed,
        backup_every=args.backup_every, sample_prompts=() if args.no_samples else tuple(args.sample_prompts or ("",)),
        strategy=args.strategy, force=args.force, deterministic=args.deterministic,
        intra_op_threads=args.intra_op_threads, steps_per_execution=args.steps_per_execution)
    # Keras's live progress bar on a terminal; one line per epoch in logs and CI.
    _, _, history = training.train(config, args.out, verbose="auto" if sys.stdout.isatty() else 2)
    best, ended = history.get("best"), history.get("stopped_by")
    if best:
        print(f"Saved {args.out}: validation loss {best['val_loss']:.4f} nats = {best['val_bits_per_token']:.3f} "
              f"bits per {args.level}, the best of {len(history['epoch'])} evaluations (evaluation {best['epoch']}, "
              f"step {best['step']}); the run ended by {ended}")
    return 0


def cmd_generate(args):
    import tensorflow as tf

    from keras_textgen import artifacts, generation, generator_cache, threads

    # As for training: on a small CPU-only machine one thread per op runs the loop's small ops faster
    # than splitting each across the cores (measured in bench/HISTORY.md). First, before any TensorFlow op.
    threads.configure_threads("auto")
    # Grappler's graph rewrites cost the loop's first call ~2 s and gain nothing measurable at
    # this length (bench/startup.py); this process runs one request, so they are off for it.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    # The loop `train` saved in the model directory loads in a fraction of the time tracing it takes.
    generate_fn = None if args.jit_compile else generator_cache.load(args.model)
    if generate_fn is not None:
        texts = generation.run_generate_fn(generate_fn, args.prompt, args.max_length, args.temperature,
                                           args.top_k, args.top_p, args.seed)
    else:
        model, vocab, _ = artifacts.load_model_dir(args.model, compile=False)
        texts = generation.generate(model, vocab, args.prompt, max_length=args.max_length,
                                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                    seed=args.seed, jit_compile=args.jit_compile)
    if args.json:
        print(json.dumps(texts, ensure_ascii=False))
        return 0
    for i, (prompt, text) in enumerate(zip(args.prompt, texts)):
        if i:
            print("-" * 40)
        print(prompt + text)
    return 0


def cmd_evaluate(args):
    from keras_textgen import artifacts, corpus as corpus_lib, data, errors, model as model_lib, threads

    threads.configure_threads("auto")  # as `generate` and `train` do
    model, vocab, config = artifacts.load_model_dir(args.model, compile=False)
    recorded = args.corpus is None or args.corpus == config.get("corpus")
    if recorded and not config.get("corpus"):
        raise errors.ConfigError(f"{artifacts.path(args.model, artifacts.CONFIG_FILE)} records no training corpus: "
                                 f"name one with --corpus")

    def option(name):  # the flag, else (on the recorded corpus) what training used
        value = getattr(args, name)
        return config.get(name) if value is None and recorded else value

    try:
        corpus = corpus_lib.load(option("corpus"), mode=args.mode or config.get("mode"), column=option("column"),
                                 header=option("header"), data_dir=option("data_dir"),
                                 manual_dir=option("manual_dir"), memory_budget=corpus_lib.budget_bytes(option("memory_budget")))
    except errors.DataError as e:
        if args.corpus is None:
            raise errors.DataError(f"{e} (the corpus recorded in {artifacts.path(args.model, artifacts.CONFIG_FILE)}"
                                   f"; name another with --corpus)") from None
        raise
    ds = data.make_dataset(corpus.validation, vocab, mode=corpus.mode, batch_size=args.batch_size,
                           seq_len=config.get("seq_len", 100), shuffle=False, cache=not corpus.streamed)
    loss, tokens = model_lib.per_token_loss(model, ds)
    unit = "char" if vocab.level == "char" else "word"
    print(f"validation loss: {loss:.4f} nats/{unit}, {model_lib.bits(loss):.4f} bits/{unit}"
          + ("" if unit == "char" else f", perplexity {math.exp(loss):.2f}") + f" ({tokens:,} targets)")
    return 0


def cmd_info(args):
    from keras_textgen import artifacts, model as model_lib

    model, vocab, config = artifacts.load_model_dir(args.model, compile=False)
    history = artifacts.load_json(args.model, artifacts.HISTORY_FILE, default={})
    layers = ", ".join(f"{type(layer).__name__}({getattr(layer, 'units', '')})".replace("()", "")
                       for layer in model.layers)
    print(f"model:       {os.path.abspath(args.model)}")
    print(f"vocabulary:  {vocab.size} ids ({vocab.level} level; pad=0, OOV=1, EOS=2)")
    print(f"layers:      {layers}")
    print(f"parameters:  {model.count_params():,}")
    if config:
        print(f"trained on:  {config.get('corpus')} ({config.get('mode')} mode), "
              f"batch {config.get('batch_size')}, seed {config.get('seed')}")
    best = history.get("best")
    if best:
        print(f"best:        evaluation {best['epoch']} (step {best['step']}), validation "
              f"{best['val_bits_per_token']:.4f} bits per {vocab.level}: the weights model.keras holds")
    if history.get("stopped_by"):
        print(f"ended by:    {history['stopped_by']}")
    if history.get("epoch"):
        print("history:     epoch  loss(bits)  val_loss(bits)")
        for i, epoch in enumerate(history["epoch"]):
            train_bits = model_lib.bits(history["loss"][i]) if "loss" in history else float("nan")
            val = history.get("val_loss")
            val_bits = model_lib.bits(val[i]) if val else float("nan")
            print(f"             {epoch:5d}  {train_bits:10.4f}  {val_bits:14.4f}")
    return 0


def cmd_export(args):
    from keras_textgen import errors, export

    if args.format == "saved_model":
        if args.quantize != "none":
            raise errors.ConfigError("--quantize applies to --format tflite")
        path = export.export_saved_model(args.model, base_dir=args.base_dir, name=args.name, version=args.version,
                                         force=args.force)
        print(f"SavedModel written to {path} (serve with model_base_path={os.path.abspath(os.path.dirname(path))})")
    else:
        if args.version is not None or args.force:
            raise errors.ConfigError("--version and --force apply to --format saved_model")
        path = export.export_tflite(args.model, base_dir=args.base_dir, name=args.name, quantize=args.quantize)
        print(f"TFLite model written to {path} ({os.path.getsize(path):,} bytes)")
    return 0


COMMANDS = {"train": cmd_train, "export": cmd_export, "generate": cmd_generate, "evaluate": cmd_evaluate, "info": cmd_info}


def main(argv=None):
    args = build_parser().parse_args(argv)
    _import_tensorflow_quietly()
    from keras_textgen import errors

    try:
        return COMMANDS[args.command](args)
    except errors.KerasTextgenError as e:
        print(f"keras-textgen {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = (f"; run the same command again to resume from the last backup in {args.out}"
                if args.command == "train" else "")
        print(f"keras-textgen {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
