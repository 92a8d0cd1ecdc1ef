"""Corpora from several files, globs, directories and `tf.io.gfile` paths, streamed or read into memory."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
import tensorflow as tf

import keras_textgen as ktg
from keras_textgen import errors, preparation, sources, training
from keras_textgen.vocab import EOS_ID
from conftest import LINES


def texts(ds):
    return [t.decode() for t in ktg.corpus.texts_of(ds).as_numpy_iterator()]


def pieces(ds):
    return [(t.decode(), bool(s)) for t, s in ds.as_numpy_iterator()]


def documents(pieces):
    """`(piece, starts_document)` pairs -> the documents' texts."""
    docs = []
    for text, starts in pieces:
        if starts:
            docs.append("")
        docs[-1] += text
    return docs


FILES = {
    "a.txt": "\n".join(LINES[:5]) + "\n",
    "b.txt": "\ufeff" + "\r\n".join(LINES[5:9]) + "\r\n",  # a BOM and CRLF line ends
    "c.txt": "\r".join(LINES[9:]),  # old Mac line ends, no final one
}


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "data").mkdir()
    for name, text in FILES.items():
        (tmp_path / "data" / name).write_bytes(text.encode("utf-8"))
    (tmp_path / "data" / ".hidden").write_text("not part of the corpus\n")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "d.txt").write_text("not read: in a subfolder\n")
    return tmp_path / "data"


@pytest.mark.parametrize("budget", [None, 0], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("form", ["glob", "directory"])
def test_several_files_are_one_corpus_split_file_by_file(folder, form, budget):
    source = str(folder / "*.txt") if form == "glob" else str(folder)
    corpus = ktg.corpus.load(source, validation_fraction=0.34, memory_budget=budget)  # every 3rd line of each file
    assert corpus.files == tuple(str(folder / n) for n in sorted(FILES))
    assert corpus.streamed == (budget == 0)
    assert texts(corpus.train) == [LINES[i] for i in (0, 1, 3, 4, 5, 6, 8, 9, 10)]
    assert texts(corpus.validation) == [LINES[i] for i in (2, 7, 11)]


def test_streamed_and_in_memory_reads_give_the_same_text_and_split(folder, monkeypatch):
    """One implementation: the same pieces whether read whole or in blocks of a few bytes, cached or streamed."""
    got = {}
    for budget, block in ((None, sources.BLOCK_BYTES), (0, sources.BLOCK_BYTES), (0, 7)):
        monkeypatch.setattr(sources, "BLOCK_BYTES", block)
        corpus = ktg.corpus.load(str(folder / "*.txt"), mode="chunks", validation_fraction=0.3, memory_budget=budget)
        train, validation = pieces(corpus.train), pieces(corpus.validation)
        got[budget, block] = (tuple(documents(train)), tuple(documents(validation)))
    assert len(set(got.values())) == 1, got
    train, validation = map(list, next(iter(got.values())))
    whole = "\n".join(t.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
                      for _, t in sorted(FILES.items()))
    assert sorted(" ".join(train + validation).split()) == sorted(whole.split())  # every word, once, in one split
    assert len(train) == 3 and len(validation) == 2  # each file starts one document (EOS) in each split, c.txt has
    assert train[2] == whole.split("\n", 9)[-1]  # no line end after 30% of it: it is all training text
    assert not any("\r" in d or "\ufeff" in d for d in train + validation)


def test_chunks_split_holds_out_the_end_of_each_file_on_a_line_boundary(tmp_path):
    path = tmp_path / "book.txt"
    lines = [f"line {i:03d} of the book" for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    for budget in (None, 0):
        corpus = ktg.corpus.load(str(path), mode="chunks", memory_budget=budget)
        train, validation = "".join(texts(corpus.train)), "".join(texts(corpus.validation))
        assert train + validation == path.read_text()
        assert train.endswith("\n") and 0.08 < len(validation) / len(train + validation) < 0.12


@pytest.mark.slow  # three fresh processes
def test_the_split_is_the_same_on_every_run_and_for_every_worker(folder, tmp_path):
    """The split of a file depends on that file only: loading it alone, in another process, gives the same lines."""
    corpus = ktg.corpus.load(str(folder / "*.txt"), memory_budget=0)
    script = textwrap.dedent("""
        import json, sys
        import keras_textgen as ktg
        for path in sys.argv[1:]:  # each file loaded alone
            c = ktg.corpus.load(path, memory_budget=0)
            print(json.dumps([[t.decode() for t in c.train.as_numpy_iterator()],
                              [t.decode() for t in c.validation.as_numpy_iterator()]]))
    """)
    names = sorted(FILES)
    out = subprocess.run([sys.executable, "-c", script, *(str(folder / name) for name in names)], capture_output=True,
                         text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, check=True).stdout
    alone = dict(zip(names, (json.loads(line) for line in out.strip().splitlines()[-len(names):])))
    assert texts(corpus.train) == [line for name in names for line in alone[name][0]]
    assert texts(corpus.validation) == [line for name in names for line in alone[name][1]]
    again = ktg.corpus.load(str(folder / "*.txt"), memory_budget=0)
    assert texts(again.train) == texts(corpus.train) and texts(again.validation) == texts(corpus.validation)


def test_ram_file_system_paths():
    root = f"ram://corpus-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(root)
    for name, text in FILES.items():
        with tf.io.gfile.GFile(f"{root}/{name}", "wb") as f:
            f.write(text.encode("utf-8"))
    for source in (f"{root}/*.txt", root, f"{root}/a.txt"):
        corpus = ktg.corpus.load(source, memory_budget=0)
        assert corpus.streamed and all(p.startswith("ram://") for p in corpus.files)
        assert set(texts(corpus.train) + texts(corpus.validation)) <= set(LINES)
    corpus = ktg.corpus.load(f"{root}/*.txt", validation_fraction=0.34)
    assert texts(corpus.validation) == [LINES[i] for i in (2, 7, 11)]


@pytest.mark.parametrize("source, message", [
    ("{tmp}/missing.txt", "corpus file not found: "),
    ("{tmp}/nothing/*.txt", "no corpus files match "),
    ("{tmp}/empty", "holds no files"),
    ("ram://no-such-folder-xyz/*.txt", "no corpus files match "),
])
def test_bad_paths_and_empty_globs_are_one_line_errors(tmp_path, source, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.DataError, match=message) as e:
        ktg.corpus.load(source.format(tmp=tmp_path))
    assert "\n" not in str(e.value)


def test_a_streamed_file_is_checked_at_its_head(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good line\n" * 10 + b"caf\xe9\n")
    with pytest.raises(errors.DataError, match="invalid byte 0xe9 at offset 103"):
        ktg.corpus.load(str(path), memory_budget=0)


def test_corpus_over_the_memory_budget_streams_and_says_so(folder):
    assert ktg.corpus.load(str(folder), memory_budget=10 ** 9).describe().endswith("read into memory, within the "
                                                                                   "memory budget")
    streamed = ktg.corpus.load(str(folder), memory_budget=100)
    assert streamed.streamed and "3 files" in streamed.describe() and "streamed" in streamed.describe()


def _alarm(seconds):
    def fail(*_):
        raise TimeoutError(f"no answer in {seconds} s: a dataset loops")
    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


@pytest.mark.parametrize("budget", [None, 0], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("steps", [None, 3], ids=["one-pass", "repeated"])
def test_a_corpus_shorter_than_one_window_is_an_error_not_a_hang(text_file, budget, steps):
    config = training.TrainConfig(corpus=str(text_file), mode="chunks", seq_len=5000, batch_size=4, units=8,
                                  steps_per_epoch=steps, memory_budget=budget)
    _alarm(120)
    try:
        with pytest.raises(errors.DataError, match="lower --seq-len"):
            preparation.prepare(config)
    finally:
        signal.alarm(0)


def test_streamed_training_data_counts_its_epoch_from_the_vocabulary_pass(folder):
    config = training.TrainConfig(corpus=str(folder), mode="chunks", seq_len=8, batch_size=2, units=8,
                                  memory_budget=0, seed=1)
    said = []
    prepared = preparation.prepare(config, print_fn=said.append)
    assert prepared.corpus.streamed and prepared.config.steps_per_epoch == prepared.pass_steps
    assert len(said) == 1 and re.fullmatch(r"Vocabulary pass: 0\.0 MB of training text in [\d.]+ s "
                                           r"\([\d.,]+ MB/s\), \d+ ids", said[0]), said
    train_ids = sum(len(t.encode()) for t in texts(prepared.corpus.train)) + 3  # ASCII text + 3 documents' EOS
    assert prepared.pass_steps == -(-(train_ids // 9) // 2)
    once = [x.numpy().tolist() for x, _ in prepared.train_ds.take(prepared.pass_steps)]
    assert sum(len(x) for x in once) == train_ids // 9
    for x in once:
        assert all(len(row) == 8 for row in x)


def test_chunks_windows_of_files_run_across_documents(folder):
    """The files' training text, each file's piece after an EOS, is one stream: only its last partial window is lost."""
    corpus = ktg.corpus.load(str(folder), mode="chunks", memory_budget=0)
    vocab = ktg.Vocabulary.adapt(corpus.train)
    stream = []
    for text, starts in corpus.train.as_numpy_iterator():
        stream += ([EOS_ID] if starts else []) + vocab.encode(text.decode()).numpy().tolist()
    ds = ktg.make_dataset(corpus.train, vocab, mode="chunks", seq_len=6, batch_size=3, shuffle=False, cache=False)
    windows = [x + y[-1:] for bx, by in ds for x, y in zip(bx.numpy().tolist(), by.numpy().tolist())]
    assert sum(windows, []) == stream[:len(stream) // 7 * 7]


def test_a_shard_applies_only_to_a_streamed_corpus_of_enough_files(folder):
    """`load(shard=(n, i))` shards the training split by file only where each of n workers gets a file to stream."""
    whole = texts(ktg.corpus.load(str(folder), memory_budget=0).train)
    shards = [ktg.corpus.load(str(folder), memory_budget=0, shard=(2, i)) for i in (0, 1)]
    assert all(c.sharded for c in shards) and all(texts(c.train) for c in shards)
    sizes = [os.path.getsize(folder / name) for name in sorted(FILES)]
    assert [c.shard_bytes for c in shards] == [sum(sizes[0::2]), sum(sizes[1::2])]
    assert sorted(texts(shards[0].train) + texts(shards[1].train)) == sorted(whole)
    assert texts(shards[0].validation) == texts(shards[1].validation)  # validation: every file's
    for corpus in (ktg.corpus.load(str(folder), shard=(2, 1)),  # in memory
                   ktg.corpus.load(str(folder), memory_budget=0, shard=(len(FILES) + 1, 0))):  # too few files
        assert not corpus.sharded and corpus.shard_bytes is None and texts(corpus.train) == whole


def test_sharding_by_file_without_the_strategy_is_a_clear_error(folder):
    """The workers' vocabulary counts are merged over the strategy's collectives: `prepare` needs it."""
    config = training.TrainConfig(corpus=str(folder), memory_budget=0, strategy="multi-worker", time_budget=None)
    with pytest.raises(errors.ConfigError, match=r"prepare\(workers=2\) on a corpus sharded by file needs the run's"):
        preparation.prepare(config, workers=2)


MEMORY_CHILD = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import keras_textgen as ktg
    from keras_textgen import vocab as vocab_lib

    def rss(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))

    path, mode = sys.argv[1], sys.argv[2]
    ktg.Vocabulary.adapt(["warm up"])  # TensorFlow's own allocations, before the baseline
    base = rss("VmRSS")
    corpus = ktg.corpus.load(path, mode=mode, memory_budget=1_000_000)
    counts = vocab_lib.count(corpus.train, batch_size=4 if mode == "chunks" else 1024)
    vocab = ktg.Vocabulary.from_counts(counts.tokens)
    ds = ktg.make_dataset(corpus.train, vocab, mode=mode, batch_size=32, seq_len=100, cache=not corpus.streamed)
    batches = sum(1 for _ in ds)
    print(json.dumps({"streamed": corpus.streamed, "grew_mb": rss("VmHWM") - base, "batches": batches,
                      "bytes": counts.bytes}))
""")


@pytest.mark.slow  # fresh processes read and encode 10 and 40 MB
@pytest.mark.parametrize("mode", ["chunks", "lines"])
def test_a_corpus_over_the_memory_budget_streams_in_bounded_memory(tmp_path, mode):
    """Text over a 1 MB budget is streamed, and what a whole pass adds to the process does not grow with the text.

    Held in memory, the encoded windows alone would take 8 bytes a character (inputs and targets, int32).
    """
    line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
    grew = {}
    for mb in (10, 40):
        path = tmp_path / f"{mb}.txt"
        path.write_text(line * (mb * 1_000_000 // len(line)))
        # Two malloc arenas: with glibc's default (8 per core) the freed megabyte blocks of tf.data's threads
        # scatter over arenas, and the process grows with how the threads happened to be scheduled.
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), mode], capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MALLOC_ARENA_MAX": "2"}, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["streamed"] and result["bytes"] > 0.85 * mb * 1e6 and result["batches"] > 100 * mb
        grew[mb] = result["grew_mb"]
    # 4x the text, not 4x the memory. Held in memory (cached windows, 8 bytes a character), the 30 MB more add
    # about 340 MB (10 MB grew 217, 40 MB 562). Streamed, what grows is tf.data's autotuned buffers of megabyte
    # blocks: they ramp up over the first few thousand batches, then level off (near 160-190 MB), so the 40 MB
    # pass may still add a few tens of MB over the 10 MB one, more on a loaded host.
    assert grew[40] < grew[10] + 150 and grew[40] < 300, grew


def test_a_table_over_its_limit_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"text": line}) for line in LINES) + "\n")
    assert texts(ktg.corpus.load(str(path), column="text").train)
    monkeypatch.setattr(ktg.corpus, "TABLE_LIMIT", 100)
    with pytest.raises(errors.DataError, match=r"\.jsonl files are parsed in memory up to 0 MB: write the text "
                                               r"column to a \.txt file \(one row per line\) to stream it"):
        ktg.corpus.load(str(path), column="text")
