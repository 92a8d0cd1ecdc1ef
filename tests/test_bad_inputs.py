"""Bad input, one case per row of the table in docs/reliability.md, through the CLI where there is one.

Each row either expects the CLI's one-line error (`keras-textgen...: error: ...`
on stderr, exit code 2, no traceback, nothing written) or a documented
behaviour that is checked. `python tests/test_bad_inputs.py` prints the
table from `ROWS`, so the table and the tests cannot drift apart.
Property-based tests (hypothesis) at the end cover the vocabulary, the
targets and the loss mask for arbitrary input.
"""

import dataclasses
import json
import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from conftest import LINES, cli_in_process  # noqa: E402

import keras_textgen as ktg  # noqa: E402
from keras_textgen import cli, preparation, training  # noqa: E402
from keras_textgen.generation import MAX_GENERATE_TOKENS, MAX_PROMPT_TOKENS  # noqa: E402
from keras_textgen.vocab import EOS_ID, OOV_ID, PAD_ID  # noqa: E402

TINY = ["--units", "8", "--layers", "1", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2",
        "--validation-steps", "1", "--seed", "1", "--no-samples"]
# The fixture corpus: every line ending, a byte-order mark, emoji (with a skin-tone modifier),
# combining accents and CJK, all of which must reach the vocabulary exactly.
UNICODE_LINES = ["café 👍🏽 e\u0301 ñ", "日本語 \U0001F600!", "naïve Zoë – “quotes”"]
CORPUS_BYTES = ("\ufeff" + "\r\n".join(LINES[:4]) + "\r" + "\r".join(LINES[4:8]) + "\n"
                + "\n".join(LINES[8:] + UNICODE_LINES) + "\n").encode("utf-8")


@dataclasses.dataclass
class Row:
    area: str
    case: str
    expected: str  # the "what happens" column of docs/reliability.md
    args: list = None  # CLI arguments (placeholders: CORPUS, MODEL, OUT, TMP, BASE)
    error: str = None  # the error message must contain this
    check: object = None  # or: a function(ctx, code, out, err) checking a documented behaviour
    setup: object = None  # a function(ctx) preparing files, returning replacements
    env: dict = None
    uses_model: bool = False  # setup or check reads MODEL without naming it in args

    @property
    def needs_model(self):
        """Whether the row needs the `trained` fixture (a CLI training, the slow part of this table)."""
        return self.uses_model or self.args is None or "MODEL" in self.args

    @property
    def slow(self):
        """Rows that train or generate: `make test-fast` leaves them out (the error rows stay in)."""
        return self.needs_model or self.check is not None


def _file(name, data):
    def setup(ctx):
        path = ctx["TMP"] / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return {"CORPUS": str(path)}
    return setup


def _folder(path, files=None):
    path.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (path / name).write_text(text)
    return path


def _train(*extra):
    return ["train", "--corpus", "CORPUS", "--out", "OUT", *TINY, *extra]


def _gen(*extra):
    return ["generate", "--model", "MODEL", "--prompt", "the", "--max-length", "8", "--seed", "3", *extra]


def _export(*extra):
    return ["export", "--model", "MODEL", "--base-dir", "BASE", *extra]


# -- behaviour checks ---------------------------------------------------------
def check_long_line(ctx, code, out, err):
    assert code == 0, err
    model, vocab, config = ktg.load_model_dir(ctx["OUT"])
    assert config["max_line_length"] == 64 and json.load(open(ctx["OUT"] + "/history.json"))["epoch"] == [1]
    # The batches that run trained on: the 5 MB line is one example of width 64, its first 63 tokens + EOS.
    run_config = training.TrainConfig(corpus=ctx["CORPUS"], max_line_length=64, batch_size=4, seed=1)
    prepared = preparation.prepare(run_config)
    vocab, train_ds = prepared.vocab, prepared.train_ds
    widths = [int(x.shape[1]) for x, _ in train_ds]
    assert max(widths) == 64 and widths.count(64) == 1
    (x, y), = [(x, y) for x, y in train_ds.unbatch() if int(tf.math.count_nonzero(x)) == 64]
    assert vocab.decode(x[1:]).numpy().decode() == ("the cat " * 8)[:63]
    assert int(y[62]) == vocab.encode(("the cat " * 8)[62])[0] and int(y[63]) == EOS_ID


def check_newlines(ctx, code, out, err):
    vocab = ctx["vocab"]
    assert "\r" not in vocab.tokens and "\n" not in vocab.tokens
    assert sorted(ctx["corpus_lines"]) == sorted(LINES + UNICODE_LINES)  # \r\n, \r and \n each end one line


def check_unicode_round_trip(ctx, code, out, err):
    vocab = ctx["vocab"]
    for ch in "👍🏽\u0301日本語\U0001F600ïë–“”":
        assert ch in vocab.tokens, repr(ch)
    decoded = [t.decode("utf-8") for t in vocab.decode(vocab.encode(UNICODE_LINES)).numpy()]
    assert decoded == UNICODE_LINES  # code point by code point, combining marks and modifiers kept


def check_bom(ctx, code, out, err):
    assert "\ufeff" not in ctx["vocab"].tokens and not any("\ufeff" in line for line in ctx["corpus_lines"])


def check_unknown_prompt(ctx, code, out, err):
    assert code == 0, err
    texts = json.loads(out)
    assert len(texts) == 1 and "[UNK]" not in texts[0]  # unknown characters are read as OOV, never produced


def check_greedy(ctx, code, out, err):
    assert code == 0, err
    first = json.loads(out)
    again = _run(ctx, ["generate", "--model", "MODEL", "--prompt", "the", "--max-length", "20", "--temperature", "0",
                       "--seed", "999", "--json"])
    assert again[0] == 0 and json.loads(again[1]) == first  # greedy: the seed does not matter


def check_top_k_large(ctx, code, out, err):
    assert code == 0, err
    plain = _run(ctx, ["generate", "--model", "MODEL", "--prompt", "the", "--max-length", "20", "--top-k", "0",
                       "--seed", "4", "--json"])
    assert json.loads(out) == json.loads(plain[1])  # top_k >= vocabulary size = no top-k filter


def check_empty_prompt(ctx, code, out, err):
    assert code == 0, err
    model, vocab, _ = ktg.load_model_dir(ctx["MODEL"], compile=False)
    text = json.loads(out)[0]
    assert text and text == ktg.generate(model, vocab, [""], max_length=10, temperature=1.0, seed=1)[0]


ROWS = [
    # corpus loading
    Row("corpus", "file does not exist", "error: corpus file not found", _train(), "corpus file not found",
        setup=lambda ctx: {"CORPUS": str(ctx["TMP"] / "missing.txt")}),
    Row("corpus", "a directory without files", "error: corpus directory ... holds no files", _train(),
        "holds no files", setup=lambda ctx: {"CORPUS": str(_folder(ctx["TMP"] / "empty"))}),
    Row("corpus", "a glob that matches no file", "error: no corpus files match ...", _train(), "no corpus files match",
        setup=lambda ctx: {"CORPUS": str(ctx["TMP"] / "nothing" / "*.txt")}),
    Row("corpus", "a glob of .txt and .csv files", "error: it mixes .csv, .txt files", _train(), "mixes .csv, .txt",
        setup=lambda ctx: {"CORPUS": str(_folder(ctx["TMP"] / "mixed", {"a.txt": "x\ny\n", "b.csv": "t\nx\n"}))
                           + "/*"}),
    Row("corpus", "TFDS `--manual-dir` that is not a folder", "error: the TFDS manual dir ... is not a folder",
        ["train", "--corpus", "tfds:tiny_shakespeare", "--manual-dir", "/nonexistent/tiny_shakespeare", "--out", "OUT", *TINY],
        "is not a folder"),
    Row("corpus", "empty file", "error: corpus is empty", _train(), "is empty", setup=_file("e.txt", b"")),
    Row("corpus", "whitespace-only file", "error: corpus is empty", _train(), "is empty",
        setup=_file("w.txt", b" \n\t\n\r\n   \n")),
    Row("corpus", "non-UTF-8 bytes (Latin-1)", "error naming the byte and offset", _train(),
        "not UTF-8 text: invalid byte 0xe9 at offset 3", setup=_file("l.txt", b"caf\xe9\nthe cat\n")),
    Row("corpus", "NUL bytes (a binary file)", "error naming the offset", _train(), "contains NUL bytes (at offset 3)",
        setup=_file("n.txt", b"abc\x00def\nmore\n")),
    Row("corpus", "a single line", "error: a train/validation split needs at least 2 lines", _train(), "at least 2",
        setup=_file("one.txt", "just one line\n")),
    Row("corpus", "one 5 MB line among short ones", "trains; in lines mode a line keeps its first "
        "--max-line-length - 1 tokens (default 256 - 1; its EOS makes 256)", _train("--max-line-length", "64"),
        check=check_long_line,
        setup=_file("long.txt", "\n".join(["the cat " * 655_360] + LINES))),
    Row("corpus", "mixed newlines \\r\\n, \\r, \\n", "each ends a line; no \\r reaches the vocabulary",
        check=check_newlines),
    Row("corpus", "byte-order mark", "dropped", check=check_bom),
    Row("corpus", "emoji, skin-tone modifiers, combining accents, CJK", "kept as code points; round-trip exactly "
        "through the vocabulary", check=check_unicode_round_trip),
    Row("corpus", "CSV without --column", "error: name its text column", _train(), "name its text column with --column",
        setup=_file("t.csv", "title,label\nx,1\ny,2\n")),
    Row("corpus", "CSV with a missing column", "error listing the columns", _train("--column", "body"),
        "no column 'body'; its columns are ['title', 'label']", setup=_file("t.csv", "title,label\nx,1\ny,2\n")),
    Row("corpus", "--column on a .txt file", "error", _train("--column", "text"), "--column applies to",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("corpus", "JSONL with a broken line", "error naming the line", _train("--column", "t"),
        "line 2 is not valid JSON", setup=_file("j.jsonl", '{"t": "a"}\n{broken\n')),
    Row("corpus", "JSONL text with a \\u0000 escape", "error naming the line", _train("--column", "t"),
        "line 2 contains a NUL character", setup=_file("z.jsonl", '{"t": "fine"}\n{"t": "bad\\u0000"}\n')),
    # vocabulary
    Row("vocabulary", "--min-frequency above every count (word level)", "error: no tokens to build a vocabulary",
        _train("--level", "word", "--min-frequency", "1000"), "no tokens to build a vocabulary",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("vocabulary", "--max-tokens 0", "error: expected a positive integer", _train("--max-tokens", "0"),
        "--max-tokens: expected a positive integer", setup=_file("c.txt", "\n".join(LINES))),
    Row("vocabulary", "prompt entirely of unknown characters", "each maps to OOV; generation runs; OOV is never "
        "generated", ["generate", "--model", "MODEL", "--prompt", "€€€☃", "--max-length", "10", "--seed", "2", "--json"],
        check=check_unknown_prompt),
    # training options
    Row("training", "--batch-size 0", "error: expected a positive integer", _train("--batch-size", "0"),
        "--batch-size: expected a positive integer", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--epochs -1", "error: expected a positive integer", _train("--epochs", "-1"),
        "--epochs: expected a positive integer", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--steps-per-epoch 0", "error: expected a positive integer", _train("--steps-per-epoch", "0"),
        "--steps-per-epoch: expected a positive integer", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--sample-prompt with bytes that are not UTF-8", "error before training starts",
        ["train", "--corpus", "CORPUS", "--out", "OUT", "--sample-prompt", "caf\udce9"], "is not Unicode text",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--learning-rate nan", "error: learning_rate must be a positive number",
        _train("--learning-rate", "nan"), "learning_rate must be a positive number",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--learning-rate -1", "error: learning_rate must be a positive number",
        _train("--learning-rate", "-1"), "learning_rate must be a positive number",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--dropout 1.5", "error: dropout must be in [0, 1)", _train("--dropout", "1.5"),
        "dropout must be in [0, 1)", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--recurrent-dropout 1", "error: recurrent_dropout must be in [0, 1)",
        _train("--recurrent-dropout", "1"), "recurrent_dropout must be in [0, 1)",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--seq-len longer than the corpus (chunks mode)", "error: lower --seq-len",
        _train("--mode", "chunks", "--seq-len", "100000"), "lower --seq-len", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--out is a file", "error", _train(), "exists and is not a directory",
        setup=lambda ctx: {**_file("c.txt", "\n".join(LINES))(ctx), "OUT": str(_touch(ctx["TMP"] / "afile"))}),
    Row("training", "--out holds a finished model, no --force", "error: pass --force", _train(), "pass --force",
        setup=lambda ctx: {**_file("c.txt", "\n".join(LINES))(ctx), "OUT": ctx["MODEL"]}, uses_model=True),
    Row("training", "--strategy bogus", "error: invalid choice", _train("--strategy", "bogus"), "invalid choice",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--strategy multi-worker with malformed TF_CONFIG", "error: TF_CONFIG is not valid JSON",
        _train("--strategy", "multi-worker"), "TF_CONFIG is not valid JSON", setup=_file("c.txt", "\n".join(LINES)),
        env={"TF_CONFIG": "{cluster: oops"}),
    Row("training", "--strategy multi-worker, task not in the cluster", "error naming the task",
        _train("--strategy", "multi-worker"), "is not in its cluster", setup=_file("c.txt", "\n".join(LINES)),
        env={"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}})}),
    Row("training", "--strategy multi-worker, TF_CONFIG without a cluster", "error: TF_CONFIG needs \"cluster\" and \"task\"",
        _train("--strategy", "multi-worker"), 'TF_CONFIG needs "cluster" and "task"',
        setup=_file("c.txt", "\n".join(LINES)), env={"TF_CONFIG": json.dumps({"task": {"type": "worker", "index": 0}})}),
    Row("training", "--strategy tpu on a machine without a TPU", "error: --strategy tpu: no TPU found",
        _train("--strategy", "tpu"), "--strategy tpu: no TPU found", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--intra-op-threads -1", "error: expected 'auto' or an integer >= 0",
        _train("--intra-op-threads", "-1"), "expected 'auto' or an integer >= 0",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--intra-op-threads 2 after TensorFlow started (Python API process)",
        "error: set them before TensorFlow runs its first op", _train("--intra-op-threads", "2"),
        "can only be set before TensorFlow runs its first op", setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--steps-per-execution that does not divide the epoch's steps",
        "error: it must divide them (Keras runs whole calls, so the epoch would grow); the same for --validation-steps",
        _train("--steps-per-execution", "3"), "steps_per_execution must divide steps_per_epoch (2), got 3",
        setup=_file("c.txt", "\n".join(LINES))),
    Row("training", "--deterministic without --seed", "error: needs a seed",
        ["train", "--corpus", "CORPUS", "--out", "OUT", "--deterministic"], "needs a seed (--seed)",
        setup=_file("c.txt", "\n".join(LINES))),
    # generation requests
    Row("generation", "temperature 0", "greedy: the same text whatever the seed",
        ["generate", "--model", "MODEL", "--prompt", "the", "--max-length", "20", "--temperature", "0", "--json"],
        check=check_greedy),
    Row("generation", "temperature -1", "error", _gen("--temperature", "-1"), "temperature must be a finite number >= 0"),
    Row("generation", "temperature NaN", "error", _gen("--temperature", "nan"), "temperature must be a finite number"),
    Row("generation", "temperature inf", "error", _gen("--temperature", "inf"), "temperature must be a finite number"),
    Row("generation", "top_k larger than the vocabulary", "the same as top_k 0 (no filter)",
        ["generate", "--model", "MODEL", "--prompt", "the", "--max-length", "20", "--top-k", "100000", "--seed", "4",
         "--json"], check=check_top_k_large),
    Row("generation", "top_k -1", "error", _gen("--top-k", "-1"), "top_k must be an integer >= 0"),
    Row("generation", "top_p 0", "error", _gen("--top-p", "0"), "top_p must be in (0, 1]"),
    Row("generation", "top_p 1.5", "error", _gen("--top-p", "1.5"), "top_p must be in (0, 1]"),
    Row("generation", "max_length 0", "error", _gen("--max-length", "0"), "max_length must be an integer in [1, 100000]"),
    Row("generation", "max_length -5", "error", _gen("--max-length", "-5"), "max_length must be an integer in [1, 100000]"),
    Row("generation", "max_length 10^9", "error (the limit is 100000 tokens)", _gen("--max-length", str(10**9)),
        f"max_length must be an integer in [1, {MAX_GENERATE_TOKENS}]"),
    Row("generation", f"prompt over {MAX_PROMPT_TOKENS} tokens", "error", _gen("--prompt", "a" * (MAX_PROMPT_TOKENS + 1)),
        f"a prompt is longer than {MAX_PROMPT_TOKENS} tokens"),
    Row("generation", "prompt with bytes that are not UTF-8", "error", _gen("--prompt", "caf\udce9"),
        "prompt 2 is not Unicode text"),
    Row("generation", "empty prompt", "a text from the beginning (the model starts after EOS)",
        ["generate", "--model", "MODEL", "--prompt", "", "--max-length", "10", "--seed", "1", "--json"],
        check=check_empty_prompt),
    Row("generation", "--model that does not exist", "error", ["generate", "--model", "/nonexistent/m", "--prompt", "the"],
        "model directory not found"),
    # export
    Row("export", "--version 0", "error: expected a positive integer", _export("--format", "saved_model", "--version", "0"),
        "--version: expected a positive integer"),
    Row("export", "a version that exists, no --force", "error; the version is untouched",
        _export("--format", "saved_model", "--name", "m", "--version", "1"), "already exists",
        setup=lambda ctx: {"BASE": str(_mkdir(ctx["TMP"] / "sm" / "m" / "1").parent.parent)}),
    Row("export", "--name with a path (../x)", "error", _export("--format", "saved_model", "--name", "../x"),
        "export name must be letters, digits"),
    Row("export", "--quantize with --format saved_model", "error", _export("--format", "saved_model", "--quantize",
                                                                            "dynamic"), "--quantize applies to"),
    Row("export", "--version with --format tflite", "error", _export("--format", "tflite", "--version", "2"),
        "--version and --force apply to --format saved_model"),
    Row("export", "--base-dir below a file", "error", _export("--format", "tflite"), "is a file, not a folder",
        setup=lambda ctx: {"BASE": str(_touch(ctx["TMP"] / "blocker") / "sub")}),
    Row("export", "--model is not a model directory", "error",
        ["export", "--model", "TMP", "--base-dir", "BASE", "--format", "saved_model"], "not a keras_textgen model directory"),
]


def _touch(path):
    path.write_text("x")
    return path


def _mkdir(path):
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained through the CLI on the mixed-newline, BOM and emoji corpus."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    corpus = folder / "mixed.txt"
    corpus.write_bytes(CORPUS_BYTES)
    model_dir = folder / "model"
    assert cli.main(["train", "--corpus", str(corpus), "--out", str(model_dir), *TINY]) == 0
    loaded = ktg.corpus.load(str(corpus))
    lines = [t.decode() for t in loaded.train.as_numpy_iterator()] + \
        [t.decode() for t in loaded.validation.as_numpy_iterator()]
    return {"MODEL": str(model_dir), "vocab": ktg.Vocabulary.load(model_dir / "vocab.json"), "corpus_lines": lines}


PLACEHOLDERS = ("CORPUS", "MODEL", "OUT", "TMP", "BASE")


def _run(ctx, args, env=None):
    args = [str(ctx[a]) if a in PLACEHOLDERS else a for a in args]
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return cli_in_process(ctx["capsys"], args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.slow) if r.slow else r for r in ROWS],
                         ids=[f"{r.area}: {r.case}" for r in ROWS])
def test_row(row, request, tmp_path, capsys):
    trained = request.getfixturevalue("trained") if row.needs_model else {}
    ctx = {**trained, "TMP": tmp_path, "OUT": str(tmp_path / "out"), "BASE": str(tmp_path / "saved"),
           "capsys": capsys}
    capsys.readouterr()
    if row.setup:
        ctx.update(row.setup(ctx))
    if row.args is None:  # a property of the fixture model, trained on that input through the CLI
        row.check(ctx, 0, "", "")
        return
    code, out, err = _run(ctx, row.args, row.env)
    if row.check:
        row.check(ctx, code, out, err)
        return
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback, no usage dump
    assert lines[0].startswith("keras-textgen") and ": error: " in lines[0], err
    assert row.error in lines[0], err
    assert out == ""
    if row.args[0] == "train" and ctx["OUT"] != trained.get("MODEL"):
        assert not os.path.exists(os.path.join(ctx["OUT"], "model.keras"))  # nothing was written


def test_there_are_at_least_25_rows():
    assert len(ROWS) >= 25 and len({(r.area, r.case) for r in ROWS}) == len(ROWS)


def readme_table():
    lines = ["| area | input | what happens |", "|---|---|---|"]
    for r in ROWS:
        what = r.expected if r.check else f"{r.expected} (exit 2)"
        lines.append(f"| {r.area} | {r.case} | {what} |".replace("|---", "|---"))
    return "\n".join(lines)


# -- properties -----------------------------------------------------------------
# NUL may be in any text (and maps to OOV) but not in a vocabulary: see test_nul_character_in_a_vocabulary.
@settings(max_examples=30, deadline=None)
@given(known=st.sets(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=20),
       text=st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_property_any_unicode_round_trips_except_oov(known, text):
    vocab = ktg.Vocabulary(sorted(known))
    ids = vocab.encode(text).numpy().tolist()
    assert ids == [vocab.get_vocabulary().index(ch) if ch in known else OOV_ID for ch in text]
    decoded = vocab.decode(ids).numpy().decode("utf-8")
    assert decoded == "".join(ch if ch in known else "[UNK]" for ch in text)
    own = text.replace("\x00", "")
    full = ktg.Vocabulary.adapt([own + "x"])  # a vocabulary adapted on the text itself loses nothing
    assert full.decode(full.encode(own)).numpy().decode("utf-8") == own


def test_lone_surrogates_are_a_clear_error():
    """Lone surrogates (not Unicode text; what `surrogateescape` makes of undecodable bytes) are refused."""
    with pytest.raises(ktg.errors.ConfigError, match="lone surrogates"):
        ktg.Vocabulary(["a", "\ud800"])
    vocab = ktg.Vocabulary(["a", "b"])
    model = ktg.build_model(vocab, units=4)
    with pytest.raises(ktg.errors.ConfigError, match=r"prompt 2 is not Unicode text: it holds a lone surrogate"):
        ktg.generate(model, vocab, ["ab", "a\udcff"], max_length=2)


def test_nul_character_in_a_vocabulary():
    """NUL never becomes a token (StringLookup would confuse it with padding): it encodes as OOV."""
    vocab = ktg.Vocabulary.adapt(["a\x00b"])
    assert vocab.tokens == ["a", "b"]
    assert vocab.decode(vocab.encode("a\x00b")).numpy().decode() == "a[UNK]b"
    with pytest.raises(ktg.errors.ConfigError, match="NUL"):
        ktg.Vocabulary(["a", "\x00"])


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                              min_size=1, max_size=25)
                      .filter(str.strip), min_size=1, max_size=6),
       max_length=st.integers(2, 12), batch_size=st.integers(1, 4), bucket=st.booleans())
def test_property_targets_are_inputs_shifted_with_eos_last(lines, max_length, batch_size, bucket):
    vocab = ktg.Vocabulary.adapt(lines)
    ds = ktg.make_dataset(lines, vocab, batch_size=batch_size, max_length=max_length, shuffle=False, bucket=bucket)
    rows = [(x, y) for bx, by in ds for x, y in zip(bx.numpy(), by.numpy())]
    expected = sorted(vocab.encode(line).numpy().tolist()[:max_length - 1] for line in lines)
    got = []
    for x, y in rows:
        n = int((x != PAD_ID).sum())
        assert x[0] == EOS_ID and n <= max_length
        assert list(y[:n - 1]) == list(x[1:n]) and y[n - 1] == EOS_ID  # shifted by one, EOS last
        assert not x[n:].any() and not y[n:].any()  # then only padding
        got.append(list(x[1:n]))
    assert sorted(got) == expected  # every line once, cut to max_length - 1 tokens


_MASK_MODEL = []


def _mask_model():
    if not _MASK_MODEL:
        import keras

        keras.utils.set_random_seed(0)
        vocab = ktg.Vocabulary(list("abcdefgh"))
        _MASK_MODEL.append((ktg.build_model(vocab, units=8, layers=1), vocab.size))
    return _MASK_MODEL[0]


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_property_masked_positions_never_change_the_loss(data):
    model, size = _mask_model()
    width = 12
    lengths = data.draw(st.lists(st.integers(1, width), min_size=1, max_size=4), label="lengths")
    x = np.zeros((len(lengths), width), np.int32)
    y = np.zeros_like(x)
    garbage = np.zeros_like(x)
    for i, n in enumerate(lengths):
        x[i, 0] = EOS_ID
        x[i, 1:n] = data.draw(st.lists(st.integers(3, size - 1), min_size=n - 1, max_size=n - 1))
        y[i, :n] = data.draw(st.lists(st.integers(2, size - 1), min_size=n, max_size=n))
        garbage[i] = y[i]
        garbage[i, n:] = data.draw(st.lists(st.integers(0, size - 1), min_size=width - n, max_size=width - n))
    loss = model.test_on_batch(x, y)[0]
    assert model.test_on_batch(x, garbage)[0] == pytest.approx(loss, abs=1e-6)  # targets under the mask: ignored
    wider = np.pad(x, [(0, 0), (0, 5)]), np.pad(garbage, [(0, 0), (0, 5)], constant_values=size - 1)
    assert model.test_on_batch(*wider)[0] == pytest.approx(loss, abs=1e-5)  # more padding: same loss
    nll = []  # the mean over real tokens, each row run alone without any padding
    for i, n in enumerate(lengths):
        logits = model(x[i:i + 1, :n]).numpy()[0].astype(np.float64)
        log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        nll += list(log_z - logits[np.arange(n), y[i, :n]])
    assert loss == pytest.approx(float(np.mean(nll)), abs=1e-4)
    assert math.isfinite(loss)


def test_reliability_doc_has_the_table_of_these_rows():
    """docs/reliability.md's bad-input table is `readme_table()` verbatim (regenerate it with this file as a script)."""
    doc = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "reliability.md")).read()
    assert readme_table() in doc


if __name__ == "__main__":
    print(readme_table())
