"""Text sources: which files `--corpus` names, and the graph-only streams of their lines or pieces.

A source is a file, a glob (`"data/*.txt"`), a directory (its files, not
those of its subfolders, hidden files left out) or any of these on a file
system `tf.io.gfile` reads (`gs://...`, `ram://...`). Files are read in
sorted order, as byte blocks (`FixedLengthRecordDataset`) cut into pieces of
whole lines by a `Dataset.scan`: graph ops only. Nothing is read into Python
but a head of each file, checked for NUL bytes and UTF-8 (the whole file
when the corpus fits the memory budget), and, in chunks mode, a window
around the place where its held-out end starts.

The same transforms split in-memory documents (python-docs, CSV/JSONL
rows), so both give the same split of the same text:

* lines mode: each non-blank line is an example (trailing white space
  removed); the `every`-th line of each document (counted from 1 among its
  non-blank lines) is held out for validation.
* chunks mode: a document's end, from the start of the line holding byte
  `(1 - validation_fraction) * size` on, is held out (`chunk_cut`), read as
  a byte range of its own. Elements are `(piece, starts_document)` pairs,
  the flag set on the first piece of each document and split, so
  `make_dataset` puts EOS where a document starts and nowhere else.

Both rules need only the document itself, so every worker of a cluster
computes the same split from the files it reads.

Example:

>>> files = resolve("data/*.txt")          # sorted paths; a one-line DataError when none match
>>> train, validation = split(documents_from_files(files, "lines"), "lines", every=10)
>>> next(iter(train))                      # the first non-blank line of data/a.txt
<tf.Tensor: shape=(), dtype=string, numpy=b'the cat sat on the mat'>
"""

import codecs
import dataclasses
import os

import tensorflow as tf

from keras_textgen import errors

# Functions handed to tf.data in this package are plain TF ops (Python `if`s only on Python values):
# AutoGraph would only rewrite their source, which costs a run's start more than building its pipeline.
plain = tf.autograph.experimental.do_not_convert

# Bytes per block read from a file. Larger blocks cost fewer tf.data
# elements; smaller ones less memory per element (a block's ids take 4x its
# bytes when encoded).
BLOCK_BYTES = 1 << 20
# Bytes of each file checked in Python (NUL bytes, UTF-8) when the corpus is streamed.
HEAD_BYTES = 1 << 20
# One white-space character as Python's str.isspace / str.strip see it (RE2's \s does not cover them all).
SPACE = r"[\s\x0b\x1c-\x1f\x{85}\pZ]"


@dataclasses.dataclass
class Files:
    """Resolved files of a source: paths (sorted), their sizes in bytes, and the source as given."""

    paths: list
    sizes: list
    source: str

    @property
    def total_bytes(self):
        return sum(self.sizes)


def is_glob(source):
    return any(c in source for c in "*?[")


def resolve(source):
    """The files a source names: a file, a glob or a directory, on any `tf.io.gfile` file system.

    Raises:
        errors.DataError: nothing there, an empty glob or directory, a
            directory given where its files are unreadable.

    Example:

    >>> resolve("ram://corpus/*.txt").paths
    ['ram://corpus/a.txt', 'ram://corpus/b.txt']
    """
    source = os.fspath(source)
    try:
        if is_glob(source):
            paths = [p for p in tf.io.gfile.glob(source) if not tf.io.gfile.isdir(p)]
            if not paths:
                raise errors.DataError(f"no corpus files match {source!r}")
        elif tf.io.gfile.isdir(source):
            names = sorted(n for n in tf.io.gfile.listdir(source) if not n.startswith("."))
            paths = [p for p in (_join(source, n.rstrip("/")) for n in names) if not tf.io.gfile.isdir(p)]
            if not paths:
                raise errors.DataError(f"corpus directory {source} holds no files")
        elif tf.io.gfile.exists(source):
            paths = [source]
        else:
            raise errors.DataError(f"corpus file not found: {source}")
        paths = sorted(paths)
        sizes = [tf.io.gfile.stat(p).length for p in paths]
    except tf.errors.OpError as e:
        raise errors.DataError(f"cannot read corpus {source}: {e.message.strip().splitlines()[0]}") from None
    return Files(paths, sizes, source)


def _join(folder, name):
    return folder + name if folder.endswith("/") else folder + "/" + name


def check_text(path, limit=None):
    """Checks that a file is UTF-8 text without NUL bytes: all of it, or its first `limit` bytes.

    Returns:
        The text read (a `str`), a prefix of the file when `limit` cut it.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit)
    except tf.errors.OpError as e:
        raise errors.DataError(f"cannot read corpus file {path}: {e.message.strip().splitlines()[0]}") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise errors.DataError(f"{path} contains NUL bytes (at offset {nul}); is it a binary file?")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:  # a prefix may end inside a character: only a complete file must end on a boundary
        text = decoder.decode(data, final=limit is None or len(data) < limit)
    except UnicodeDecodeError as e:
        raise errors.DataError(
            f"{path} is not UTF-8 text: invalid byte 0x{data[e.start]:02x} at offset {e.start}") from None
    return text.removeprefix("\ufeff")


def chunk_cut(before, after, nominal):
    """Where a document's held-out end starts: at the start of the line holding byte `nominal`.

    `before` holds the bytes just before `nominal` (from the document's
    start, or a window of them), `after` those from `nominal` on. When no
    line starts in `before`, the cut is after the first line end in `after`.
    Returns the byte offset of the cut, or `None` when there is no line end
    to cut at (the document is then all training text).
    """
    newline = before.rfind(b"\n")
    if newline >= 0:
        return nominal - len(before) + newline + 1
    newline = after.find(b"\n")
    return None if newline < 0 else nominal + newline + 1


# -- graph transforms ---------------------------------------------------------------------------
def documents_from_files(files, mode, validation_fraction=0.1):
    """The byte ranges of each file for each split, and a reader of them: `(train, validation)` documents.

    Each is `(ranges, open_range)`: `ranges` a dataset of `(path, start,
    end, size)` (so a multi-worker run can shard it by file before anything
    is read: `split(..., shard=)`) and `open_range` a function of one such
    element giving a dataset of byte blocks. In lines mode both splits
    read whole files (the split is by line number); in chunks mode the train
    range ends where `chunk_cut` puts the held-out end. A BOM is skipped.
    """
    rows = {False: [], True: []}
    for path, size in zip(files.paths, files.sizes):
        if size == 0:
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            start = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
            cut = size
            if mode == "chunks":
                nominal = max(start, int(size * (1.0 - validation_fraction)))
                window = max(start, nominal - HEAD_BYTES)
                f.seek(window)
                cut = chunk_cut(f.read(nominal - window), f.read(HEAD_BYTES), nominal) or size
        if mode == "lines":
            rows[False].append((path, start, size, size))
            rows[True].append((path, start, size, size))
        else:
            rows[False].append((path, start, cut, size))
            if cut < size:
                rows[True].append((path, cut, size, size))

    def ranges(rows):
        paths = tf.constant([r[0] for r in rows], tf.string)
        numbers = tf.reshape(tf.constant([n for r in rows for n in r[1:]], tf.int64), [-1, 3])
        return tf.data.Dataset.from_tensor_slices((paths, numbers[:, 0], numbers[:, 1], numbers[:, 2]))

    return (ranges(rows[False]), _file_range), (ranges(rows[True]), _file_range)


def _file_range(path, start, end, size):
    """Bytes `[start, end)` of a file as blocks of `BLOCK_BYTES` (the last one shorter)."""
    length = end - start
    full = length // BLOCK_BYTES * BLOCK_BYTES
    rest = length - full
    blocks = tf.data.FixedLengthRecordDataset(path, BLOCK_BYTES, header_bytes=start,
                                              footer_bytes=size - start - full, buffer_size=BLOCK_BYTES)
    # FixedLengthRecordDataset reads whole records only: the rest is one record of its own (none if empty).
    zero = tf.constant(0, tf.int64)
    last = tf.data.FixedLengthRecordDataset(path, tf.maximum(rest, 1),
                                            header_bytes=tf.where(rest > 0, start + full, zero),
                                            footer_bytes=tf.where(rest > 0, size - end, size - 1))
    return blocks.concatenate(last.take(tf.cast(rest > 0, tf.int64)))


def documents_from_texts(texts, mode, validation_fraction=0.1):
    """The in-memory twin of `documents_from_files`: each `str` is a document, read by the same transforms."""
    rows = {False: [], True: []}
    for text in texts:
        data = text.encode("utf-8")
        cut = len(data)
        if mode == "chunks":
            nominal = int(len(data) * (1.0 - validation_fraction))
            cut = chunk_cut(data[:nominal], data[nominal:], nominal) or len(data)
        rows[False].append((data, 0, cut if mode == "chunks" else len(data)))
        if mode == "lines" or cut < len(data):
            rows[True].append((data, cut if mode == "chunks" else 0, len(data)))

    def ranges(rows):
        data = tf.constant([r[0] for r in rows], tf.string)
        numbers = tf.reshape(tf.constant([n for r in rows for n in r[1:]], tf.int64), [-1, 2])
        return tf.data.Dataset.from_tensor_slices((data, numbers[:, 0], numbers[:, 1]))

    def text_range(data, start, end):
        return tf.data.Dataset.from_tensors(tf.strings.substr(data, start, end - start))

    return (ranges(rows[False]), text_range), (ranges(rows[True]), text_range)


def split(documents, mode, every=10, shard=None):
    """`(train, validation)` datasets from `documents_from_files` or `documents_from_texts`.

    Args:
        documents: their `(train, validation)` pair of `(ranges, open_range)`.
        mode: `"lines"` (datasets of lines) or `"chunks"` (of `(piece, starts_document)`).
        every: lines mode: the `every`-th non-blank line of each document is a validation line.
        shard: `(n, i)`: the training split reads only documents `i, i + n, ...` (a worker's files).
    """
    def part(ranges, open_range, validation):
        if mode == "lines":
            return ranges.flat_map(plain(lambda *r: _lines(_whole_lines(open_range(*r)), every, validation)))
        return ranges.flat_map(plain(lambda *r: _pieces(_whole_lines(open_range(*r)))))

    (train, open_train), (validation, open_validation) = documents
    if shard is not None:
        train = train.shard(*shard)
    return part(train, open_train, False), part(validation, open_validation, True)


def _whole_lines(blocks):
    """Byte blocks -> pieces of whole lines: each block's text up to its last line end; the rest carries on.

    A piece never ends inside a line, so never inside a UTF-8 character or
    between the CR and LF of a line end. A line longer than a block is
    carried until it ends (a file with no line ends is one piece).
    """
    marked = blocks.map(plain(lambda block: (block, False))).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(""), True)))

    @plain
    def step(carry, element):
        block, last = element
        text = tf.strings.join([carry, block])
        rest = tf.where(last, "", tf.strings.regex_replace(text, "(?s)^.*\n", ""))
        whole = tf.strings.substr(text, 0, tf.strings.length(text) - tf.strings.length(rest))
        return rest, whole

    return marked.scan(tf.constant(""), step).filter(plain(lambda piece: tf.strings.length(piece) > 0))


def _clean_lines(lines):
    """Lines -> the non-blank ones, trailing white space removed."""
    lines = tf.strings.regex_replace(lines, SPACE + "+$", "")
    return tf.boolean_mask(lines, tf.strings.length(lines) > 0)


def _lines(pieces, every, validation):
    """One document's lines of one split: its non-blank lines numbered from 0, every `every`-th held out."""
    every = tf.constant(every, tf.int64)

    @plain
    def number(seen, lines):
        n = tf.size(lines, out_type=tf.int64)
        held = (seen + tf.range(n, dtype=tf.int64)) % every == every - 1
        return seen + n, tf.boolean_mask(lines, held if validation else tf.logical_not(held))

    lines = pieces.map(plain(lambda piece: _clean_lines(tf.strings.split(_newlines(piece), "\n"))),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return lines.scan(tf.constant(0, tf.int64), number).unbatch()


def _newlines(text):
    """CRLF and lone CR line ends -> LF."""
    return tf.strings.regex_replace(text, "\r\n?", "\n")


def _pieces(pieces):
    """One document's pieces of one split as `(text, starts_document)`: the flag on the first piece."""
    return pieces.map(plain(_newlines)).enumerate().map(plain(lambda i, text: (text, tf.equal(i, 0))))
