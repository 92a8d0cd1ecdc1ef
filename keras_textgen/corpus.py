"""Loading text corpora into `tf.data` datasets of strings, with a train/validation split.

Sources (the `source` string of `load` and of `keras-textgen --corpus`):

* `"python-docs"`: the standard library's `pydoc_data.topics` text, present
  with every CPython, so examples and tests run offline.
* a file path: `.txt` (or any other extension) is plain text; `.csv`,
  `.tsv` and `.jsonl` need `column=` (one name or several, joined by a space;
  in a CSV/TSV also a 1-based number, with or without a header row).
* a glob (`"data/*.txt"`) or a directory: its files, one corpus; any of
  these on a `tf.io.gfile` file system (`gs://...`). Text and CSV/TSV
  files over the memory budget are streamed from storage
  (`keras_textgen.sources`, `keras_textgen.tables.stream`).
* `"tfds:NAME[:FEATURE]"`: a TensorFlow Datasets dataset, e.g.
  `"tfds:ag_news_subset:title"` or `"tfds:tiny_shakespeare"`.

Modes: `"lines"` makes each non-blank line (or row) one example, like news
titles; `"chunks"` keeps documents whole so `make_dataset` can cut them into
fixed-length windows, as long texts (plays, books) need (a document read
from files arrives as `(piece, starts_document)` pairs).
"""

import contextlib
import dataclasses
import os
import re
import typing

import tensorflow as tf

from keras_textgen import errors
from keras_textgen import sources
from keras_textgen import tables
from keras_textgen.tables import NEWLINES, TABULAR  # noqa: F401  (one copy of each; TABULAR re-exported)

MODES = ("lines", "chunks")
BUILTIN = "python-docs"
# Default feature and mode of TFDS datasets this package knows well.
TFDS_DEFAULTS = {
    "ag_news_subset": ("title", "lines"),
    "tiny_shakespeare": ("text", "chunks"),
}
# Text corpora up to this size are read into memory (checked whole, encoded once and cached by
# make_dataset); larger ones stream from their files each pass. Memory trades against reading and
# encoding the text again every epoch (cheap next to training an LSTM on it).
MEMORY_BUDGET = 32_000_000
# JSONL files are parsed in Python (JSON), so in memory: up to this size. CSV/TSV files over the memory
# budget, or over this size, are streamed (`tables.stream`).
TABLE_LIMIT = 256_000_000


@dataclasses.dataclass
class Corpus:
    """A loaded corpus: string datasets for training and validation.

    Attributes:
        name: a short name for the source (used to name exports).
        mode: `"lines"` (one example per element) or `"chunks"` (documents).
        train: `tf.data.Dataset`: in lines mode of scalar `tf.string` lines;
            in chunks mode of `(piece, starts_document)` pairs for a file or
            python-docs source (see `keras_textgen.sources`), of whole
            documents (scalar strings) for TFDS. `texts_of` gives the text.
        validation: the same, held out.
        source: the source string it was loaded from.
        files, size_bytes, streamed: for a file source, the files read,
            their total size, and whether they are streamed from storage
            each pass (over the memory budget) or read into memory.
        shard_bytes: with `load`'s `shard` in force, the size of this
            worker's files, the only ones its training split reads (the
            validation split holds every file's); else `None`.
    """

    name: str
    mode: str
    train: tf.data.Dataset
    validation: tf.data.Dataset
    source: str = ""
    files: tuple = ()  # the files read, for a file source (sorted)
    size_bytes: int = 0  # their total size
    streamed: bool = False  # read from the files each pass, not held in memory
    shard_bytes: typing.Optional[int] = None  # the size of this worker's files, when the training split reads only those

    @property
    def sharded(self):
        """Whether the training split reads only this worker's files (`load`'s `shard` is in force)."""
        return self.shard_bytes is not None

    def describe(self):
        """How the corpus is read, in words.

        E.g. `'3 files, 93.0 MB, streamed from the files, over the memory budget'`.
        """
        if not self.files:
            return "in memory"
        count = f"{len(self.files)} files" if len(self.files) > 1 else "1 file"
        how = "streamed from the files, over the" if self.streamed else "read into memory, within the"
        return f"{count}, {self.size_bytes / 1e6:,.1f} MB, {how} memory budget"


def load(source=BUILTIN, mode=None, column=None, validation_fraction=0.1, data_dir=None, manual_dir=None,
         header=None, memory_budget=None, shard=None):
    """Loads a corpus and splits it into train and validation texts.

    Args:
        source: `"python-docs"`, a file, a glob (`"data/*.txt"`), a
            directory (its files), on any `tf.io.gfile` file system
            (`gs://`, `ram://`), or `"tfds:NAME[:FEATURE]"`.
        mode: `"lines"` or `"chunks"`; `None` picks the source's natural mode
            (chunks for python-docs and tiny_shakespeare, lines otherwise).
        column: for CSV/TSV/JSONL files, the text column, or a list of
            columns (or a comma-separated string) joined with a space. In a
            CSV/TSV file a column is a header name or a 1-based number
            (`"2"` or `2`), which also works without a header row.
        validation_fraction: share held out for validation when the source
            has no validation split of its own. The split is deterministic:
            every k-th line (lines mode) or the end of the text (chunks mode).
        data_dir: TFDS data directory (where prepared datasets live).
        manual_dir: TFDS manual download directory, e.g. a folder holding
            `tiny_shakespeare`'s `input.txt`, to load without network.
        header: CSV/TSV only: whether the first row names the columns;
            `None` detects it (a named column found there, or a numeric
            column whose first cell is not a number, means a header).
        memory_budget: bytes: text and CSV/TSV files up to this total are
            read into memory, larger ones are streamed (`MEMORY_BUDGET` when
            `None`; CSV/TSV also past `TABLE_LIMIT`, JSONL never).
        shard: `(n, i)`, for worker `i` of `n`: when the source is streamed
            and has at least `n` files, its training split reads only files
            `i, i + n, ...` (sorted), and only their heads are checked
            (`Corpus.sharded` says so, `Corpus.shard_bytes` their size);
            otherwise it is ignored.

    Returns:
        A `Corpus`.

    Example:

    >>> corpus = load("python-docs", mode="lines")
    >>> next(iter(corpus.train)).dtype
    tf.string
    """
    if mode is not None and mode not in MODES:
        raise errors.ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise errors.ConfigError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    source = os.fspath(source)
    if source == BUILTIN:
        import pydoc_data.topics

        text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
        return _from_documents(BUILTIN, source, [text], mode or "chunks", validation_fraction)
    if source.startswith("tfds:"):
        return _load_tfds(source, mode, validation_fraction, data_dir, manual_dir)
    if header not in (None, True, False):
        raise errors.ConfigError(f"header must be True, False or None (detect), got {header!r}")
    if memory_budget is not None and not memory_budget >= 0:
        raise errors.ConfigError(f"memory_budget must be a number of bytes >= 0, got {memory_budget!r}")
    return _load_file(source, mode or "lines", column, validation_fraction, header,
                      MEMORY_BUDGET if memory_budget is None else memory_budget, shard)


def budget_bytes(megabytes):
    """`--memory-budget` (MB, or `None` for the default) as `load`'s `memory_budget` (bytes, or `None`)."""
    return None if megabytes is None else megabytes * 1e6


def texts_of(dataset):
    """The text of a corpus split: a dataset of strings, whichever form its elements have.

    Chunks-mode splits of files hold `(piece, starts_document)` pairs; this
    drops the flag (for counting tokens or adapting a vocabulary).
    """
    if isinstance(dataset.element_spec, tuple):
        return dataset.map(sources.plain(lambda text, *_: text))
    return dataset


def _from_documents(name, source, documents, mode, validation_fraction, **fields):
    """Splits in-memory documents into train/validation datasets, with the streamed path's transforms."""
    _check_documents(source, documents, mode)
    every = _every(validation_fraction, sum(_count_lines(d) for d in documents))
    documents = sources.documents_from_texts([d for d in documents if d.strip()], mode, validation_fraction)
    train, validation = sources.split(documents, mode, every=every)
    return Corpus(name=name, mode=mode, source=source, train=train, validation=validation, **fields)


def _every(validation_fraction, lines=None):
    """Every how many lines one is held out; with the corpus's `lines` known, a short corpus still gets one."""
    every = max(2, round(1.0 / validation_fraction))
    return every if lines is None else max(2, min(every, lines))


def _count_lines(text):
    return sum(1 for line in NEWLINES.split(text) if line.strip())


def _check_documents(source, documents, mode):
    """The one-line errors of a corpus with no text, or (lines mode) too few lines to split."""
    if mode == "lines":
        lines = sum(_count_lines(d) for d in documents)
        if not lines:
            raise errors.DataError(f"corpus {source!r} is empty: it has no non-blank lines")
        if lines < 2:
            raise errors.DataError(
                f"corpus {source!r} has {lines} non-blank line; a train/validation split needs at least 2")
    elif not any(d.strip() for d in documents):
        raise errors.DataError(f"corpus {source!r} is empty: it has no text")


def _load_file(source, mode, column, validation_fraction, header, memory_budget, shard=None):
    files = sources.resolve(source)
    single = len(files.paths) == 1 and not sources.is_glob(source)
    name = os.path.splitext(os.path.basename(files.paths[0] if single else source.rstrip("/*")))[0] or "corpus"
    exts = sorted({os.path.splitext(p)[1].lower() for p in files.paths})
    tabular = [e for e in exts if e in TABULAR or e == ".jsonl"]
    columns = tables.columns(column)
    if tabular:
        if len(exts) > 1:
            raise errors.ConfigError(f"{source} mixes {', '.join(exts)} files; a corpus of CSV/TSV/JSONL files "
                                     f"has one kind")
        if exts[0] in TABULAR and files.total_bytes > min(memory_budget, TABLE_LIMIT):
            if mode != "lines":
                raise errors.ConfigError(
                    f"{source} is {files.total_bytes / 1e6:,.1f} MB, over the memory budget, so streamed, and a "
                    f"streamed {exts[0]} corpus is read in lines mode only (its held-out end in chunks mode needs "
                    f"its joined size): use --mode lines, or a larger --memory-budget")
            documents = tables.stream(files, exts[0], columns, header)  # plans every file from its head
            shard = shard if _by_file(files, shard) else None
            train, validation = sources.split(documents, mode, _every(validation_fraction), shard)
            return Corpus(name=name, mode=mode, source=source, train=train, validation=validation, streamed=True,
                          files=tuple(files.paths), size_bytes=files.total_bytes, shard_bytes=_shard_bytes(files, shard))
        if files.total_bytes > TABLE_LIMIT:
            raise errors.DataError(
                f"{source} is {files.total_bytes / 1e6:,.0f} MB; {exts[0]} files are parsed in memory up to "
                f"{TABLE_LIMIT / 1e6:,.0f} MB: write the text column to a .txt file (one row per line) to stream it")
        documents = [tables.document(path, exts[0], columns, header) for path in files.paths]
        return _from_documents(name, source, documents, mode, validation_fraction, files=tuple(files.paths),
                               size_bytes=files.total_bytes)
    first = os.path.basename(files.paths[0])
    if columns:
        raise errors.ConfigError(f"--column applies to .csv/.tsv/.jsonl files, not {first}")
    if header is not None:
        raise errors.ConfigError(f"--header/--no-header apply to .csv/.tsv files, not {first}")
    # Files are read by the same graph ops whatever their size; within the memory budget they are first
    # checked whole (and make_dataset caches their encoded text), beyond it only their heads are.
    streamed = files.total_bytes > memory_budget
    every = _every(validation_fraction)
    if not streamed:
        texts = [sources.check_text(path) for path in files.paths]
        _check_documents(source, texts, mode)
        if mode == "lines":
            every = _every(validation_fraction, sum(_count_lines(t) for t in texts))
    shard = shard if streamed and _by_file(files, shard) else None
    if streamed:  # a worker checks the heads of the files it trains on; the others' workers check theirs
        for path in files.paths[shard[1]::shard[0]] if shard else files.paths:
            sources.check_text(path, limit=sources.HEAD_BYTES)
    train, validation = sources.split(sources.documents_from_files(files, mode, validation_fraction), mode, every,
                                      shard)
    return Corpus(name=name, mode=mode, source=source, train=train, validation=validation, streamed=streamed,
                  files=tuple(files.paths), size_bytes=files.total_bytes, shard_bytes=_shard_bytes(files, shard))


def _by_file(files, shard):
    """Whether `shard` `(n, i)` can shard these files by file: every worker gets at least one."""
    return shard is not None and shard[0] > 1 and len(files.paths) >= shard[0]


def _shard_bytes(files, shard):
    """The size of the files of `shard` `(n, i)` (`None` for no shard), from the sizes `sources.resolve` read."""
    return None if shard is None else sum(files.sizes[shard[1]::shard[0]])


def _split_lines(text):
    """Graph op: one string -> its non-blank lines (trailing white space removed)."""
    text = tf.strings.regex_replace(text, "\r\n?", "\n")
    lines = tf.strings.regex_replace(tf.strings.split(text, "\n"), r"\s+$", "")
    return tf.boolean_mask(lines, tf.strings.length(lines) > 0)


@contextlib.contextmanager
def _few_download_retries(retries=1):
    """Offline, TFDS retries each download 10 times with back-off (minutes of waiting).

    The retry count is a module constant of TFDS's downloader, read when a
    download session starts; it is lowered only around our call.
    """
    from tensorflow_datasets.core.download import downloader

    saved = getattr(downloader, "MAX_RETRIES", None)
    if saved is not None:
        downloader.MAX_RETRIES = retries
    try:
        yield
    finally:
        if saved is not None:
            downloader.MAX_RETRIES = saved


def _load_tfds(source, mode, validation_fraction, data_dir, manual_dir):
    parts = source.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise errors.ConfigError(f"a TFDS source is 'tfds:NAME[:FEATURE]', got {source!r}")
    name = parts[1]
    feature, default_mode = TFDS_DEFAULTS.get(name, (None, "lines"))
    feature = parts[2] if len(parts) == 3 and parts[2] else feature
    mode = mode or default_mode
    if manual_dir and not os.path.isdir(manual_dir):
        raise errors.DataError(f"the TFDS manual dir {os.fspath(manual_dir)} is not a folder "
                               f"(it should hold the dataset's source files)")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise errors.DataError(f"tensorflow_datasets is not usable here: {e}") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise errors.DataError(f"unknown TFDS dataset {name!r} ({type(e).__name__})") from None
    text_features = [k for k, v in builder.info.features.items() if getattr(v, "dtype", None) == tf.string]
    if feature is None:
        if len(text_features) != 1:
            raise errors.ConfigError(f"name the TFDS text feature, e.g. tfds:{name}:FEATURE; text features: {text_features}")
        feature = text_features[0]
    if feature not in text_features:
        raise errors.DataError(f"TFDS dataset {name!r} has no text feature {feature!r}; text features: {text_features}")
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)) if manual_dir else None
    try:
        with _few_download_retries():
            builder.download_and_prepare(download_config=config)
    except Exception as e:
        message = str(e).strip()
        host = re.search(r"host='([^']+)'", message)
        if host:
            reason = f"the download from {host.group(1)} failed"
        else:
            reason = message.splitlines()[0][:160] if message else type(e).__name__
        raise errors.DataError(
            f"cannot prepare TFDS dataset {name!r}: {reason}. It needs network access to download, "
            "a prepared copy in --data-dir, or its source files in --manual-dir") from None
    splits = list(builder.info.splits.keys())
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits:
        raise errors.DataError(f"TFDS dataset {name!r} has no train split (splits: {splits})")

    def texts(split):
        ds = builder.as_dataset(split=split, shuffle_files=False).map(sources.plain(lambda ex: ex[feature]))
        if mode == "lines":
            ds = ds.flat_map(sources.plain(lambda t: tf.data.Dataset.from_tensor_slices(_split_lines(t))))
        return ds

    if val_split is None:
        every = _every(validation_fraction)
        full = texts("train").enumerate()
        train = full.filter(sources.plain(lambda i, t: i % every != every - 1)).map(sources.plain(lambda i, t: t))
        validation = full.filter(sources.plain(lambda i, t: i % every == every - 1)).map(sources.plain(lambda i, t: t))
    else:
        train, validation = texts("train"), texts(val_split)
    return Corpus(name=name, mode=mode, source=source, train=train, validation=validation)
