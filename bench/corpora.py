"""The benchmark's texts, loaded once per process with the package's own splits.

* `shakespeare_lines`: the non-blank lines of tiny Shakespeare, split with
  `keras_textgen.corpus.load(path, mode="lines")` (every 10th line is
  validation). Both the baseline and the package get exactly these lists.
* `shakespeare_chunks`: the same file as one document (chunks mode), for the
  package only (the baseline has no chunks mode).
* `python_docs`: the package's built-in corpus, as text (package, chunks
  mode) and as its non-blank lines (baseline).
"""

import functools

import keras_textgen as ktg


def _strings(ds):
    # In batches: a tf.data element per line costs about 0.3 ms, 10 s for tiny Shakespeare's 30,000 lines,
    # paid again by every process of a benchmark run that reads them (bench.memory starts five).
    batches = ktg.corpus.texts_of(ds).batch(4096).as_numpy_iterator()
    return [t.decode("utf-8") for batch in batches for t in batch]


def text_of(ds):
    """A chunks-mode split of one document (in pieces of whole lines) as one string."""
    return "".join(_strings(ds))


@functools.lru_cache(maxsize=None)
def shakespeare_lines(path):
    """`(train_lines, validation_lines, vocab)`; the vocabulary is adapted on the training lines."""
    corpus = ktg.corpus.load(path, mode="lines")
    train, val = _strings(corpus.train), _strings(corpus.validation)
    return train, val, ktg.Vocabulary.adapt(train)


@functools.lru_cache(maxsize=None)
def shakespeare_chunks(path):
    """`(train_text, validation_text, vocab)`."""
    corpus = ktg.corpus.load(path, mode="chunks")
    train, val = text_of(corpus.train), text_of(corpus.validation)
    return train, val, ktg.Vocabulary.adapt([train])


@functools.lru_cache(maxsize=None)
def python_docs(max_chars=None):
    """`(train_text, train_lines, vocab)`: the built-in corpus's training text, cut to `max_chars`."""
    text = text_of(ktg.corpus.load("python-docs", mode="chunks").train)
    if max_chars:
        text = text[:max_chars]
    lines = [line.rstrip() for line in text.split("\n") if line.strip()]
    return text, lines, ktg.Vocabulary.adapt([text])


def first_chars(text, n):
    """The first `n` characters, cut back to a line end when one is near."""
    if n is None or len(text) <= n:
        return text
    cut = text.rfind("\n", 0, n)
    return text[: cut + 1] if cut > n * 0.9 else text[:n]


@functools.lru_cache(maxsize=None)
def shakespeare_document(path):
    """The lines of `shakespeare_lines` in file order, as `(line, is_validation)` pairs.

    Lines mode holds out every 10th non-blank line; this puts them back
    between the training lines, so a chunks-mode model can be scored on the
    same validation lines with the text before each one as context.
    """
    train, val, _ = shakespeare_lines(path)
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip() for line in ktg.corpus.NEWLINES.sub("\n", f.read()).split("\n") if line.strip()]
    document = [(line, i % 10 == 9) for i, line in enumerate(lines)]
    if [l for l, v in document if not v] != train or [l for l, v in document if v] != val:
        raise AssertionError("the lines split no longer holds out every 10th line; update shakespeare_document")
    return tuple(document)
