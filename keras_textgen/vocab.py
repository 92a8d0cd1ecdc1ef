"""Token vocabulary: text <-> ids with fixed reserved ids, built on `StringLookup`."""

import collections
import json
import os
import typing

import keras
import numpy as np
import tensorflow as tf

from keras_textgen import errors
from keras_textgen import io_utils
from keras_textgen.sources import plain  # no AutoGraph for tf.data functions

from keras_textgen.tokens import (  # noqa: F401  (re-exported: the reserved ids, defined without TensorFlow)
    EOS_ID, EOS_TOKEN, OOV_ID, OOV_TOKEN, PAD_ID, PAD_TOKEN, WORD_PATTERN)

LEVELS = ("char", "word")
FORMAT_VERSION = 1
# Char vocabularies whose code points are all below this also get a dense
# code point -> id table (at most 512 KB), the fast path of `encode`.
MAX_TABLE_CODEPOINT = 1 << 17


def tokenize(texts, level="char", lowercase=False):
    """Splits strings into tokens with graph-only `tf.strings` ops.

    Args:
        texts: string tensor of any rank.
        level: `"char"` (Unicode code points) or `"word"` (words and single
            punctuation marks).
        lowercase: whether to lower-case first (word level only makes sense).

    Returns:
        A `tf.RaggedTensor` of string tokens with one more ragged dimension.
    """
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if level == "char":
        return tf.strings.unicode_split(texts, "UTF-8")
    if level == "word":
        spaced = tf.strings.regex_replace(texts, WORD_PATTERN, r" \1 ")
        return tf.strings.split(spaced)
    raise errors.ConfigError(f"level must be one of {LEVELS}, got {level!r}")


def decode(ids, id_to_token, level="char"):
    """Graph op: int ids `[..., T]` -> strings `[...]`, cut at the first EOS.

    Args:
        ids: int tensor (or ragged tensor) of token ids.
        id_to_token: 1-D string tensor, the token of each id.
        level: `"char"` joins tokens directly; `"word"` joins with spaces
            and glues punctuation to the word before it.
    """
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_tensor(PAD_ID)
    ids = tf.cast(ids, tf.int32)
    # Everything from the first EOS on is dropped, and so is padding.
    after_eos = tf.cumsum(tf.cast(tf.equal(ids, EOS_ID), tf.int32), axis=-1) > 0
    ids = tf.where(after_eos, tf.zeros_like(ids), ids)
    tokens = tf.gather(id_to_token, ids)
    if level == "char":
        return tf.strings.reduce_join(tokens, axis=-1)
    tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(ids, PAD_ID))
    text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
    return tf.strings.regex_replace(text, r" ([^\w\s])", r"\1")


# `prompt + continuation` needs a space between them when the prompt ends with a non-space and the
# continuation starts with a word character (punctuation is glued to the word before it, as in `decode`).
PROMPT_NEEDS_SPACE = r"(?s).*\S"
CONTINUATION_NEEDS_SPACE = r"(?s)\w.*"


def continuation_after(prompts, continuations, level="char"):
    """Graph op: each continuation as it follows its prompt; at word level, with a space where one is needed.

    A word-level model generates words, not the spaces between them: after
    the prompt `"Oil"`, the words `prices rise` are `" prices rise"`, so
    `prompt + continuation` reads `"Oil prices rise"`; after `"Oil "` or
    before `","` no space is added. Characters are returned as they are.
    """
    if level == "char":
        return continuations
    needs = tf.logical_and(tf.strings.regex_full_match(prompts, PROMPT_NEEDS_SPACE),
                           tf.strings.regex_full_match(continuations, CONTINUATION_NEEDS_SPACE))
    return tf.where(needs, tf.strings.join([" ", continuations]), continuations)


def is_unicode_text(text):
    """Whether a `str` is Unicode text that TensorFlow can hold: no lone surrogates.

    Python strings may carry them (e.g. `surrogateescape` stands for
    undecodable bytes in `sys.argv` this way); UTF-8 cannot encode them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Vocabulary:
    """The token vocabulary of a model, with reserved ids that never move.

    Ids: `0` is padding (masked everywhere), `1` is out-of-vocabulary,
    `2` is end-of-sequence (also fed as the first input of every sequence),
    and ids `3..size-1` are the corpus tokens (from `adapt`: characters in
    code-point order, words most frequent first).
    Encoding is a `keras.layers.StringLookup` and decoding a `tf.gather`, so
    both are TF ops usable inside `tf.data` and `tf.function`.

    Example:

    >>> vocab = Vocabulary(["a", "b"])
    >>> vocab.encode("abz").numpy().tolist()
    [3, 4, 1]
    >>> vocab.decode([3, 4, 2]).numpy().decode()
    'ab'
    """

    def __init__(self, tokens, level="char", lowercase=False):
        if level not in LEVELS:
            raise errors.ConfigError(f"level must be one of {LEVELS}, got {level!r}")
        tokens = list(tokens)
        reserved = {PAD_TOKEN, OOV_TOKEN, EOS_TOKEN}
        # StringLookup stores its vocabulary as a NumPy unicode array, which drops
        # trailing NULs: "\x00" would become the pad token. NUL is therefore never
        # a token (adapt leaves it out, so it encodes as OOV).
        bad = [t for t in tokens
               if t in reserved or not isinstance(t, str) or t.endswith("\x00") or not is_unicode_text(t)]
        if bad:
            raise errors.ConfigError(
                f"vocabulary tokens may not be reserved, end in NUL, be non-strings or hold lone surrogates "
                f"(not Unicode text): {bad[:3]!r}")
        if len(set(tokens)) != len(tokens):
            raise errors.ConfigError("vocabulary tokens must be unique")
        if not tokens:
            raise errors.DataError("the vocabulary is empty: the corpus has no tokens")
        self.tokens = tokens
        self.level = level
        self.lowercase = bool(lowercase)
        self._lookup = keras.layers.StringLookup(
            vocabulary=[EOS_TOKEN] + tokens, mask_token=PAD_TOKEN, oov_token=OOV_TOKEN,
            num_oov_indices=1, output_mode="int")
        assert self._lookup.get_vocabulary()[:3] == [PAD_TOKEN, OOV_TOKEN, EOS_TOKEN]
        self._codepoint_ids = self._codepoint_table()

    def _codepoint_table(self):
        """For a char vocabulary: int32 `[top + 1]`, the id of each code point (OOV at `top`).

        The same mapping as the `StringLookup`, made from the same tokens;
        `encode` uses it to skip building one string per character.
        """
        if self.level != "char" or not all(len(t) == 1 for t in self.tokens):
            return None
        top = max(ord(t) for t in self.tokens) + 1
        if top > MAX_TABLE_CODEPOINT:
            return None
        table = np.full(top + 1, OOV_ID, np.int32)
        table[[ord(t) for t in self.tokens]] = np.arange(EOS_ID + 1, self.size, dtype=np.int32)
        return table

    pad_id = PAD_ID
    oov_id = OOV_ID
    eos_id = EOS_ID

    @property
    def size(self):
        """Number of ids, reserved ones included (the model's output width)."""
        return len(self.tokens) + 3

    def __len__(self):
        return self.size

    def __repr__(self):
        return f"Vocabulary(level={self.level!r}, size={self.size})"

    def get_vocabulary(self):
        """All tokens indexed by id: `["", "[UNK]", "[EOS]", ...]`."""
        return [PAD_TOKEN, OOV_TOKEN, EOS_TOKEN] + self.tokens

    # -- graph ops ---------------------------------------------------------
    def tokenize(self, texts):
        """String tensor -> ragged string tokens (see `tokenize`)."""
        return tokenize(texts, self.level, self.lowercase)

    def encode(self, texts):
        """String tensor -> int32 ids (ragged for rank >= 1 input).

        Char vocabularies decode UTF-8 to code points and look each up in a
        dense table (2-3x faster than `unicode_split` + `StringLookup`,
        same ids); other vocabularies use the `StringLookup`.
        """
        if self._codepoint_ids is None:
            return tf.cast(self._lookup(self.tokenize(texts)), tf.int32)
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if self.lowercase:
            texts = tf.strings.lower(texts, encoding="utf-8")
        table = tf.constant(self._codepoint_ids)
        top = len(self._codepoint_ids) - 1
        codepoints = tf.strings.unicode_decode(texts, "UTF-8")  # invalid bytes -> U+FFFD, as unicode_split
        return tf.ragged.map_flat_values(lambda c: tf.gather(table, tf.minimum(c, top)), codepoints)

    def ids_to_tokens(self, ids):
        """Int ids -> string tokens (pad -> "", OOV -> "[UNK]", EOS -> "[EOS]")."""
        return tf.gather(tf.constant(self.get_vocabulary()), tf.cast(ids, tf.int32))

    def decode(self, ids):
        """Int ids `[..., T]` -> strings `[...]`, stopping at the first EOS.

        Padding decodes to nothing; out-of-vocabulary ids decode to `[UNK]`.
        """
        return decode(ids, tf.constant(self.get_vocabulary()), self.level)

    # -- construction and persistence -------------------------------------
    @classmethod
    def adapt(cls, texts, level="char", max_tokens=None, min_frequency=1, lowercase=False, batch_size=1024):
        """Builds a vocabulary from a dataset (or list) of strings.

        Tokens are counted with `tf.strings` ops; `max_tokens` and
        `min_frequency` keep the most frequent ones, then characters are
        ordered by code point and words by frequency (ties broken by the
        token), so the same corpus always gives the same ids.

        Args:
            texts: a `tf.data.Dataset` of scalar strings (or of
                `(text, flag)` pairs, as chunks-mode corpora give), or a list of str.
            level: `"char"` or `"word"`.
            max_tokens: keep at most this many corpus tokens (reserved ids are
                extra). `None` keeps all.
            min_frequency: drop tokens seen fewer times than this.
            lowercase: lower-case text before tokenizing.

        Example:

        >>> vocab = Vocabulary.adapt(["hello", "help"])
        >>> vocab.tokens[:3]
        ['e', 'h', 'l']
        """
        _check_settings(level, max_tokens, min_frequency)  # before the pass over the text, not after it
        counts = count(texts, level=level, lowercase=lowercase, batch_size=batch_size)
        return cls.from_counts(counts.tokens, level=level, max_tokens=max_tokens, min_frequency=min_frequency,
                               lowercase=lowercase)

    @classmethod
    def from_counts(cls, counter, level="char", max_tokens=None, min_frequency=1, lowercase=False):
        """The vocabulary of a token -> count mapping (from `count`), with `adapt`'s rules."""
        _check_settings(level, max_tokens, min_frequency)
        counter = collections.Counter(counter)
        for reserved in (PAD_TOKEN, OOV_TOKEN, EOS_TOKEN):
            counter.pop(reserved, None)
        for token in [t for t in counter if t.endswith("\x00")]:
            del counter[token]  # see __init__: NUL cannot be a StringLookup token
        items = sorted((kv for kv in counter.items() if kv[1] >= min_frequency), key=lambda kv: (-kv[1], kv[0]))
        if max_tokens is not None:
            items = items[:max_tokens]
        if not items:
            raise errors.DataError("the corpus has no tokens to build a vocabulary from (is it empty?)")
        tokens = [tok for tok, _ in items]
        if level == "char":
            tokens.sort()  # char vocabularies read best in code-point order
        return cls(tokens, level=level, lowercase=lowercase)

    def get_config(self):
        return {
            "format_version": FORMAT_VERSION,
            "level": self.level,
            "lowercase": self.lowercase,
            "pad_id": PAD_ID, "oov_id": OOV_ID, "eos_id": EOS_ID,
            "pad_token": PAD_TOKEN, "oov_token": OOV_TOKEN, "eos_token": EOS_TOKEN,
            "size": self.size,
            "tokens": self.tokens,
        }

    def to_json(self):
        return json.dumps(self.get_config(), ensure_ascii=False, indent=1)

    def save(self, path):
        """Writes the vocabulary as JSON (atomically: temp file, then rename)."""
        io_utils.atomic_write_text(path, self.to_json())

    @classmethod
    def from_config(cls, config):
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise errors.ArtifactError(f"unsupported vocabulary format_version {version!r}")
        if (config.get("pad_id"), config.get("oov_id"), config.get("eos_id")) != (PAD_ID, OOV_ID, EOS_ID):
            raise errors.ArtifactError("vocabulary reserved ids differ from pad=0, OOV=1, EOS=2")
        vocab = cls(config["tokens"], level=config["level"], lowercase=config.get("lowercase", False))
        if config.get("size", vocab.size) != vocab.size:
            raise errors.ArtifactError("vocabulary size does not match its token list")
        return vocab

    @classmethod
    def load(cls, path):
        """Reads a vocabulary written by `save`; a clear error names the file."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            return cls.from_config(config)
        except FileNotFoundError:
            raise errors.ArtifactError(f"vocabulary file not found: {path}") from None
        except (ValueError, KeyError, TypeError, errors.KerasTextgenError) as e:
            raise errors.ArtifactError(f"{path} is not a valid keras_textgen vocabulary ({e})") from None


def _check_settings(level, max_tokens, min_frequency):
    if level not in LEVELS:
        raise errors.ConfigError(f"level must be one of {LEVELS}, got {level!r}")
    if max_tokens is not None and max_tokens < 1:
        raise errors.ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
    if min_frequency < 1:
        raise errors.ConfigError(f"min_frequency must be >= 1, got {min_frequency}")


class Counts(typing.NamedTuple):
    """What `count` found in one pass: each token's count, and totals."""

    tokens: collections.Counter  # token -> occurrences
    total: int  # tokens in all (characters or words)
    texts: int  # elements read (lines, documents or pieces)
    documents: int  # documents started: texts, or for `(piece, starts)` pairs the pieces that start one
    bytes: int  # UTF-8 bytes read

    def to_bytes(self):
        """The counts as JSON bytes (for `from_bytes` in another process)."""
        return json.dumps([sorted(self.tokens.items()), self.total, self.texts, self.documents, self.bytes]).encode()

    @classmethod
    def from_bytes(cls, payload):
        tokens, *totals = json.loads(payload)
        return cls(collections.Counter(dict(tokens)), *totals)

    @classmethod
    def merge(cls, parts):
        """One `Counts` for several passes over disjoint texts (e.g. each worker's files): everything added.

        >>> Counts.merge([count(["ab"]), count(["b"])]).tokens
        Counter({'b': 2, 'a': 1})
        """
        parts, tokens = list(parts), collections.Counter()
        for part in parts:
            tokens.update(part.tokens)
        return cls(tokens, *(sum(getattr(part, field) for part in parts)
                             for field in ("total", "texts", "documents", "bytes")))


def count(texts, level="char", lowercase=False, batch_size=1024, progress=None):
    """Counts the tokens of a dataset of strings in one streaming pass of graph ops.

    Characters are counted as code points (`tf.strings.unicode_decode`,
    invalid bytes as U+FFFD, as `tokenize` splits them) and words as
    `tokenize` cuts them; Python only adds up each batch's distinct tokens,
    so memory follows the number of distinct tokens, not the text.

    Args:
        texts: a `tf.data.Dataset` of scalar strings or of `(text, flag)`
            pairs (a chunks-mode corpus: the flag marks a document's first
            piece), or a list of str.
        progress: called with the bytes read so far after each batch.

    Returns:
        A `Counts`.

    Example:

    >>> count(["abba", "b"]).tokens
    Counter({'b': 3, 'a': 2})
    """
    if level not in LEVELS:
        raise errors.ConfigError(f"level must be one of {LEVELS}, got {level!r}")
    if not isinstance(texts, tf.data.Dataset):
        texts = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    pairs = isinstance(texts.element_spec, tuple)

    @plain
    def batch_counts(batch, starts=None):  # a per-batch map: a per-element one would cost more than the count
        if starts is None:
            starts = tf.ones_like(batch, dtype=tf.bool)
        if lowercase:
            batch = tf.strings.lower(batch, encoding="utf-8")
        if level == "char":
            # ASCII bytes are counted with a 128-bin histogram of the raw bytes; only the rest (with its
            # multi-byte characters) is decoded and hashed: most text is mostly ASCII.
            joined = tf.strings.reduce_join(batch)
            ascii_ids = tf.range(128, dtype=tf.int32)
            byte_counts = tf.math.bincount(tf.cast(tf.io.decode_raw(joined, tf.uint8), tf.int32), minlength=256,
                                           maxlength=256, dtype=tf.int64)[:128]
            rest = tf.strings.regex_replace(joined, "[\\x00-\\x7f]+", "")
            other, _, other_counts = tf.unique_with_counts(tf.strings.unicode_decode(rest, "UTF-8"))
            uniq = tf.concat([ascii_ids, other], axis=0)
            counts = tf.concat([byte_counts, tf.cast(other_counts, tf.int64)], axis=0)
        else:
            uniq, _, counts = tf.unique_with_counts(tokenize(batch, level).flat_values)
        return (uniq, tf.cast(counts, tf.int64), tf.size(batch, out_type=tf.int64),
                tf.math.count_nonzero(starts), tf.reduce_sum(tf.cast(tf.strings.length(batch), tf.int64)))

    counter = collections.Counter()
    total = elements = documents = size = 0
    if pairs:
        texts = texts.map(plain(lambda text, starts, *_: (text, starts)))
    batches = texts.batch(batch_size).map(batch_counts, num_parallel_calls=tf.data.AUTOTUNE)
    for uniq, counts, n, starts, nbytes in batches.prefetch(2):
        uniq, counts = uniq.numpy().tolist(), counts.numpy().tolist()
        if level == "char":
            uniq = [chr(c) for c in uniq]
        else:
            uniq = [t.decode("utf-8") for t in uniq]
        for tok, c in zip(uniq, counts):
            if c:
                counter[tok] += c
        total += sum(counts)
        elements, documents, size = elements + int(n), documents + int(starts), size + int(nbytes)
        if progress is not None:
            progress(size)
    return Counts(counter, total, elements, documents, size)
