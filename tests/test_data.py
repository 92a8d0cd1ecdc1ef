import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import keras_textgen as ktg
from keras_textgen import data as data_lib
from keras_textgen import errors
from keras_textgen.vocab import EOS_ID, PAD_ID

PY_OPS = {"PyFunc", "EagerPyFunc", "PyFuncStateless", "NumpyFunction"}


def dataset_ops(ds):
    """Every op in a dataset's serialized graph, function bodies included."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph_def.node}
    for fn in graph_def.library.function:
        ops |= {node.op for node in fn.node_def}
    return ops


def test_op_inspection_detects_py_function(vocab):
    # The check below can fail: a py_function in the pipeline is visible.
    ds = tf.data.Dataset.from_tensor_slices(["a"]).map(lambda s: tf.py_function(lambda x: x, [s], tf.string))
    assert dataset_ops(ds) & PY_OPS


@pytest.mark.parametrize("mode", ["lines", "chunks"])
@pytest.mark.parametrize("bucket", [True, False])
def test_pipeline_is_graph_only(vocab, lines, mode, bucket):
    ds = ktg.make_dataset(lines, vocab, mode=mode, seq_len=8, batch_size=4, bucket=bucket)
    ops = dataset_ops(ds)
    assert not ops & PY_OPS
    # Char level: UTF-8 decoded to code points and looked up in the vocabulary's table, in the graph.
    assert any("UnicodeDecode" in op for op in ops) and "GatherV2" in ops


def test_word_pipeline_runs_the_string_lookup_in_the_graph(lines):
    words = ktg.Vocabulary.adapt(lines, level="word")
    ops = dataset_ops(ktg.make_dataset(lines, words, batch_size=4))
    assert not ops & PY_OPS
    assert "LookupTableFindV2" in ops and "StringSplitV2" in ops


def test_targets_are_inputs_shifted_with_eos(vocab, lines):
    ds = ktg.make_dataset(lines, vocab, batch_size=3, shuffle=False, bucket=False)
    seen = 0
    for x, y in ds:
        x, y = x.numpy(), y.numpy()
        for row_x, row_y in zip(x, y):
            n = int((row_x != PAD_ID).sum())
            assert row_x[0] == EOS_ID
            assert list(row_y[:n - 1]) == list(row_x[1:n])
            assert row_y[n - 1] == EOS_ID
            assert (row_x[n:] == PAD_ID).all() and (row_y[n:] == PAD_ID).all()
            seen += 1
    assert seen == len(lines)
    decoded = sorted(t.decode() for x, _ in ds for t in vocab.decode(x[:, 1:]).numpy())
    assert decoded == sorted(lines)


def test_chunks_are_windows_of_the_stream(vocab, lines):
    text = "\n".join(lines)
    ds = ktg.make_dataset([text], vocab, mode="chunks", seq_len=10, batch_size=4, shuffle=False)
    stream = [EOS_ID] + vocab.encode(text).numpy().tolist()
    windows = [w for x, y in ds for w in zip(x.numpy().tolist(), y.numpy().tolist())]
    assert len(windows) == len(stream) // 11
    for i, (x, y) in enumerate(windows):
        assert x == stream[i * 11: i * 11 + 10]
        assert y == stream[i * 11 + 1: i * 11 + 11]


def test_long_lines_are_cut_to_max_length(vocab):
    ds = ktg.make_dataset(["the cat " * 50], vocab, batch_size=1, max_length=32)
    x, y = next(iter(ds))
    assert x.shape == (1, 32) and y.shape == (1, 32)
    kept = vocab.encode("the cat " * 50).numpy()[:31].tolist()
    assert x.numpy()[0].tolist() == [EOS_ID] + kept
    assert y.numpy()[0].tolist() == kept + [EOS_ID]


@pytest.mark.parametrize("cache", [True, False])
def test_only_empty_lines_give_no_batches(vocab, cache):
    assert list(ktg.make_dataset(["", "", ""], vocab, batch_size=2, cache=cache)) == []


@pytest.mark.parametrize("cache", [True, False])
def test_every_line_once_per_epoch_in_tight_batches(vocab, cache):
    """Many windows, shuffled and bucketed: each non-empty line once per epoch, no all-padding column."""
    rng = np.random.default_rng(1)
    lines = [" ".join(["the cat"] * int(n)) + " a" * (i % 3) for i, n in enumerate(rng.integers(0, 9, 300))]
    lines += ["", ""]  # empty lines are dropped
    ds = ktg.make_dataset(lines, vocab, batch_size=2, seed=0, cache=cache)
    for _ in range(2):
        seen = []
        for x, y in ds:
            x, y = x.numpy(), y.numpy()
            assert (x[:, -1] != PAD_ID).any()  # the batch is as wide as its longest line
            assert ((x != PAD_ID) == (y != PAD_ID)).all()
            seen += [t.decode() for t in vocab.decode(x[:, 1:]).numpy()]
        assert sorted(seen) == sorted(line for line in lines if line)


def test_bucketing_reduces_padding(vocab):
    rng = np.random.default_rng(0)
    lines = ["the cat " * int(n) for n in rng.integers(1, 30, size=400)]
    plain = data_lib.padding_fraction(ktg.make_dataset(lines, vocab, batch_size=16, bucket=False, seed=0))
    bucketed = data_lib.padding_fraction(ktg.make_dataset(lines, vocab, batch_size=16, bucket=True, seed=0))
    assert bucketed < 0.10
    assert bucketed < plain / 3


def test_seeded_shuffle_is_reproducible(vocab, lines):
    def first_epoch(seed=3, shuffle=True):
        ds = ktg.make_dataset(lines, vocab, batch_size=2, seed=seed, bucket=False, shuffle=shuffle)
        return [x.numpy().tolist() for x, _ in ds]

    assert first_epoch() == first_epoch()
    assert first_epoch() != first_epoch(seed=4)
    assert first_epoch() != first_epoch(shuffle=False)

    def rows(epoch):
        return sorted(tuple(t for t in row if t != PAD_ID) for batch in epoch for row in batch)

    assert rows(first_epoch()) == rows(first_epoch(shuffle=False))  # the same lines, in another order


def test_known_cardinality(vocab, lines):
    ds = data_lib.with_known_cardinality(ktg.make_dataset(lines, vocab, batch_size=5, bucket=False))
    assert int(ds.cardinality()) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"mode": "pages"}, "mode"),
    ({"mode": "chunks", "seq_len": 0}, "seq_len"),
    ({"max_length": 1}, "max_length"),
])
def test_bad_options(vocab, lines, kwargs, message):
    with pytest.raises(errors.ConfigError, match=message):
        ktg.make_dataset(lines, vocab, **kwargs)


@pytest.mark.parametrize("seq_len, kept", [(3, 8), (4, 10), (10, 0)])
def test_chunks_mode_is_one_stream_across_documents(seq_len, kept):
    """'abcde' and 'fgh' are one stream, [EOS]abcde[EOS]fgh: 10 ids. Windows of seq_len+1 are cut from its start;
    only the last ids that make no whole window are dropped ('de' is no longer lost at the first document's end)."""
    vocab = ktg.Vocabulary.adapt(["abcdefgh"])
    stream = [EOS_ID] + vocab.encode("abcde").numpy().tolist() + [EOS_ID] + vocab.encode("fgh").numpy().tolist()
    for texts in (["abcde", "fgh"], tf.data.Dataset.from_tensor_slices((["abc", "de", "fgh"], [True, False, True]))):
        ds = ktg.make_dataset(texts, vocab, mode="chunks", seq_len=seq_len, shuffle=False, batch_size=2)
        windows = [x + y[-1:] for bx, by in ds for x, y in zip(bx.numpy().tolist(), by.numpy().tolist())]
        assert all(len(w) == seq_len + 1 for w in windows)
        assert sum(windows, []) == stream[:kept]  # the stream in order; only its last partial window is dropped
        assert len(stream) - kept < seq_len + 1


@settings(max_examples=25, deadline=None)
@given(docs=st.lists(st.text(alphabet="ab\nc", max_size=30), min_size=1, max_size=6), seq_len=st.integers(1, 12))
def test_property_chunks_drop_at_most_the_last_partial_window(docs, seq_len):
    vocab = ktg.Vocabulary(["a", "b", "c", "\n"])
    stream = [i for d in docs for i in [EOS_ID] + vocab.encode(d).numpy().tolist()]
    ds = ktg.make_dataset(docs, vocab, mode="chunks", seq_len=seq_len, shuffle=False, batch_size=3, cache=False)
    windows = [x + y[-1:] for bx, by in ds for x, y in zip(bx.numpy().tolist(), by.numpy().tolist())]
    assert sum(windows, []) == stream[:len(stream) // (seq_len + 1) * (seq_len + 1)]
