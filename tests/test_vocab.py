import json

import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import keras_textgen as ktg
from keras_textgen import errors
from keras_textgen import vocab as vocab_lib
from keras_textgen.vocab import EOS_ID, OOV_ID, PAD_ID


def test_reserved_ids_are_fixed(vocab):
    assert (vocab.pad_id, vocab.oov_id, vocab.eos_id) == (0, 1, 2)
    assert vocab.get_vocabulary()[:3] == ["", "[UNK]", "[EOS]"]
    assert vocab.size == len(vocab.tokens) + 3
    # StringLookup agrees with our own id table.
    assert vocab.encode(vocab.tokens[0]).numpy().tolist() == [3]


def test_char_round_trip(vocab, lines):
    ids = vocab.encode(lines)
    assert isinstance(ids, tf.RaggedTensor)
    assert ids.dtype == tf.int32
    decoded = [t.decode() for t in vocab.decode(ids).numpy()]
    assert decoded == lines


def test_unknown_chars_map_to_oov_and_decode_as_unk(vocab):
    ids = vocab.encode("cat€").numpy().tolist()
    assert ids[-1] == OOV_ID
    assert OOV_ID not in ids[:-1]
    assert vocab.decode(ids).numpy().decode() == "cat[UNK]"


def test_decode_stops_at_eos_and_skips_padding(vocab):
    ids = vocab.encode("cat").numpy().tolist()
    assert vocab.decode(ids + [EOS_ID] + ids).numpy().decode() == "cat"
    assert vocab.decode([PAD_ID] + ids + [PAD_ID, PAD_ID]).numpy().decode() == "cat"


def test_adapt_is_deterministic_and_ordered():
    a = ktg.Vocabulary.adapt(["banana", "apple"])
    b = ktg.Vocabulary.adapt(tf.data.Dataset.from_tensor_slices(["apple", "banana"]))
    assert a.get_vocabulary() == b.get_vocabulary()
    assert a.tokens == sorted(a.tokens)


def test_word_level_with_punctuation_and_limits():
    texts = ["Hello, world!", "hello world", "Hello again, world."]
    vocab = ktg.Vocabulary.adapt(texts, level="word", min_frequency=2)
    assert set(vocab.tokens) == {"Hello", ",", "world"}
    vocab = ktg.Vocabulary.adapt(texts, level="word", lowercase=True)
    assert vocab.tokens[0] == "hello"  # the most frequent word comes first
    ids = vocab.encode("hello, world!")
    assert vocab.decode(ids).numpy().decode() == "hello, world!"
    capped = ktg.Vocabulary.adapt(texts, level="word", max_tokens=2, lowercase=True)
    assert len(capped.tokens) == 2


def test_save_load_round_trip(tmp_path, vocab):
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = ktg.Vocabulary.load(path)
    assert loaded.get_vocabulary() == vocab.get_vocabulary()
    assert json.loads(path.read_text())["eos_id"] == EOS_ID


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid keras_textgen vocabulary"),
    (json.dumps({"format_version": 1, "level": "char", "tokens": ["a"], "pad_id": 5, "oov_id": 1, "eos_id": 2}),
     "reserved ids"),
    (json.dumps({"format_version": 99, "tokens": []}), "format_version"),
    (json.dumps({"format_version": 1, "level": "char", "tokens": ["a", "b"], "size": 9, "pad_id": 0, "oov_id": 1,
                 "eos_id": 2}), "size does not match"),
    (json.dumps({"format_version": 1, "level": "char", "tokens": ["a", "a"]}), "not a valid keras_textgen vocabulary"),
    (json.dumps({"format_version": 1, "tokens": ["a"]}), "not a valid keras_textgen vocabulary"),
])
def test_load_rejects_bad_files_naming_them(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(errors.ArtifactError, match=message) as info:
        ktg.Vocabulary.load(path)
    assert str(path) in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(errors.ArtifactError, match="not found"):
        ktg.Vocabulary.load(tmp_path / "nope.json")


def test_empty_corpus_has_no_vocabulary():
    with pytest.raises(errors.DataError, match="no tokens"):
        ktg.Vocabulary.adapt(["", ""])


def test_emoji_and_combining_characters_round_trip():
    texts = ["café 👍🏽", "e\u0301 ñ 日本語", "\U0001F600!"]
    vocab = ktg.Vocabulary.adapt(texts)
    assert [t.decode() for t in vocab.decode(vocab.encode(texts)).numpy()] == texts


ALPHABET = list("abc xyzé👍\u0301\n")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_text_round_trips_except_unknown_chars(text):
    vocab = _property_vocab()
    decoded = vocab.decode(vocab.encode(text)).numpy().decode()
    expected = "".join(ch if ch in ALPHABET else "[UNK]" for ch in text)
    assert decoded == expected


_VOCAB = []


def _property_vocab():
    if not _VOCAB:
        _VOCAB.append(ktg.Vocabulary(ALPHABET))
    return _VOCAB[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=30), st.binary(max_size=12).map(lambda b: b.decode("latin-1"))),
                min_size=1, max_size=4))
def test_code_point_table_gives_the_string_lookup_ids(texts):
    """The char fast path (code point table) and the StringLookup agree on any text, NUL and U+FFFD included."""
    vocab = _property_vocab()
    assert vocab._codepoint_ids is not None
    batch = tf.constant([t.encode("utf-8") for t in texts] + [b"\xff\xfe bad utf-8 \x00"])
    fast = vocab.encode(batch)
    lookup = tf.cast(vocab._lookup(vocab.tokenize(batch)), tf.int32)
    assert fast.to_list() == lookup.to_list()
    assert vocab.encode(texts[0]).numpy().tolist() == lookup[0].numpy().tolist()


def test_vocabularies_without_the_fast_path_encode_the_same_way():
    high = ktg.Vocabulary(["a", "\U0010fff0"])  # a code point above the table limit: StringLookup only
    assert high._codepoint_ids is None
    assert high.encode(["a\U0010fff0b"]).to_list() == [[3, 4, 1]]
    words = ktg.Vocabulary(["the", "cat"], level="word")
    assert words._codepoint_ids is None
    assert words.encode(["the dog cat"]).to_list() == [[3, 1, 4]]


@pytest.mark.parametrize("prompt, text, joined", [
    ("Oil", "prices rise", "Oil prices rise"),
    ("Oil ", "prices rise", "Oil prices rise"),
    ("Oil", ", prices", "Oil, prices"),
    ("", "Oil prices", "Oil prices"),
    ("Oil", "", "Oil"),
    ("Oil\n", "prices", "Oil\nprices"),
    ("Oil", "9 dollars", "Oil 9 dollars"),
])
def test_a_word_continuation_follows_its_prompt_with_a_space_between_words(prompt, text, joined):
    from keras_textgen import lite

    graph = vocab_lib.continuation_after(tf.constant([prompt]), tf.constant([text]), "word")[0].numpy().decode()
    assert prompt + graph == joined
    assert lite.continuation_after(prompt, text, "word") == graph  # the device client joins alike
    assert vocab_lib.continuation_after(tf.constant([prompt]), tf.constant([text]), "char")[0].numpy().decode() == text


def test_counts_of_disjoint_texts_merge_into_the_counts_of_all_and_travel_as_bytes():
    """What a multi-worker run does with each worker's vocabulary pass: bytes between processes, then merged."""
    parts = [["héllo wörld", "ab"], ["日本語 ab", ""], ["\U0001F600 x"]]
    merged = vocab_lib.Counts.merge(vocab_lib.Counts.from_bytes(vocab_lib.count(part).to_bytes()) for part in parts)
    assert merged == vocab_lib.count(sum(parts, []))
    assert merged.tokens["b"] == 2 and merged.tokens["\U0001F600"] == 1 and merged.texts == 5
