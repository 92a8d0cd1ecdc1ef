"""CSV/TSV/JSONL corpus files: the text of chosen columns, one row per line.

Python's `csv` and `json` modules do the parsing (quoted fields, a header
row detected or declared, JSON objects); the rows become one document whose
lines `keras_textgen.sources` then splits like any text. CSV/TSV files over
the memory budget are streamed instead (`stream`): Python reads only their
heads (header row, columns) and `tf.data.experimental.CsvDataset` the rows.
JSONL files are parsed in memory up to `corpus.TABLE_LIMIT` bytes.

Example:

>>> document("news.csv", ".csv", columns("title,description"), header=None)
'Stocks rise Markets, up\nRain ahead Wet, cold'
"""

import csv
import io
import json
import os
import re
import uuid

import tensorflow as tf

from keras_textgen import errors
from keras_textgen import sources

TABULAR = {".csv": ",", ".tsv": "\t"}
NEWLINES = re.compile(r"\r\n|\r|\n")


def columns(column):
    if column is None:
        return None
    if isinstance(column, int) and not isinstance(column, bool):
        column = [column]
    if isinstance(column, str):
        column = column.split(",")
    columns = [str(c).strip() for c in column if str(c).strip()]
    return columns or None


def _is_position(column):
    """Whether a `--column` value is a 1-based column number ("2") rather than a name."""
    return column.isascii() and column.isdigit()


def document(path, ext, columns, header):
    """The rows of a CSV/TSV/JSONL file as one document, one row per line."""
    text = sources.check_text(path)
    if not columns:
        raise errors.ConfigError(f"{path} is a {ext[1:].upper()} file: name its text column with --column")
    if ext == ".jsonl":
        if header is not None:
            raise errors.ConfigError(f"--header/--no-header apply to .csv/.tsv files, not {os.path.basename(path)}")
        rows = _read_jsonl(path, text, columns)
    else:
        rows = _read_table(path, text, columns, TABULAR[ext], header)
    # One row is one example in lines mode; a row's own newlines become spaces.
    return "\n".join(" ".join(NEWLINES.split(r)) for r in rows)


def _rows(path, text, delimiter):
    """The rows of CSV/TSV text, those with no non-blank field left out."""
    try:
        return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                if any(f.strip() for f in row)]
    except csv.Error as e:
        raise errors.DataError(f"{path} is not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file: {e}") \
            from None


def _read_table(path, text, columns, delimiter, header=None):
    """The text of `columns` (names, or 1-based numbers as strings) of each row of a CSV/TSV file."""
    rows = _rows(path, text, delimiter)
    if not rows:
        return []
    header, picked = _pick(path, rows, columns, header)
    body = rows[1:] if header else rows
    return [" ".join(row[i].strip() for i in picked if i < len(row) and row[i].strip()) for row in body]


def _pick(path, rows, columns, header):
    """`(header, picked)`: whether `rows[0]` is a header row, and the 0-based positions `columns` name."""
    first = [f.strip() for f in rows[0]]
    declared = header
    if header is None:
        header = _has_header(rows, columns)
    names = first if header else []
    picked = []
    for c in columns:
        if _is_position(c):  # a number is a position, even where a header cell reads the same
            if not 1 <= int(c) <= len(first):
                raise errors.DataError(f"{path} has {len(first)} columns: --column {c} is out of range "
                                       f"(columns are numbered from 1)")
            picked.append(int(c) - 1)
        elif c in names:
            picked.append(names.index(c))
        elif header:
            raise errors.DataError(f"{path} has no column {c!r}; its columns are {names} "
                                   f"(pick one by name, or by number from 1, e.g. --column {len(names)})")
        else:
            why = ("it is read without a header row (--no-header)" if declared is False
                   else "its first row looks like data, not a header")
            shown = ", ".join(f"{i}: {_short(f)!r}" for i, f in enumerate(first, start=1))
            raise errors.DataError(f"{path} has no column {c!r}: {why}, so pick columns by number from 1, "
                                   f"e.g. --column {len(first)} (first row: {shown}; pass --header if it names "
                                   f"the columns)")
    return header, picked


def _short(text, width=24):
    return text if len(text) <= width else text[:width - 3] + "..."


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _has_header(rows, columns, sample=100):
    """Whether the first row of a table is a header (when `header=None`).

    A column named in `columns` (not a number) is looked up in the first row:
    found means a header. Otherwise, as `csv.Sniffer.has_header` does, a
    column whose other rows are all numbers votes for a header if its first
    cell is not a number and against if it is (AG News as distributed:
    `"3","Title","Description"` rows). Without any vote the first row is data.
    """
    first = [f.strip() for f in rows[0]]
    if any(c in first for c in columns if not _is_position(c)):
        return True
    if any(not _is_position(c) for c in columns):
        return _votes(rows, sample) >= 0  # a name not in the first row: say so against the header
    return _votes(rows, sample) > 0


def _votes(rows, sample):
    first, body = rows[0], rows[1:sample + 1]
    votes = 0
    for i, cell in enumerate(first):
        values = [row[i].strip() for row in body if i < len(row) and row[i].strip()]
        if values and all(_is_number(v) for v in values):
            votes += -1 if _is_number(cell.strip()) else 1
    return votes


def _read_jsonl(path, text, columns):
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise errors.DataError(f"{path} line {number} is not valid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise errors.DataError(f"{path} line {number} is not a JSON object")
        missing = [c for c in columns if c not in record]
        if missing:
            raise errors.DataError(f"{path} line {number} has no field {missing[0]!r}; it has {sorted(record)}")
        row = " ".join(str(record[c]).strip() for c in columns if record[c] is not None and str(record[c]).strip())
        if "\x00" in row:  # a JSON "\u0000" escape: the NUL check of sources.check_text cannot see it
            raise errors.DataError(f"{path} line {number} contains a NUL character (\\u0000)")
        rows.append(row)
    return rows


# -- streamed CSV/TSV ---------------------------------------------------------------------------
# Rows per element of a streamed table (joined into one piece of lines).
STREAM_ROWS = 1024


def stream(files, ext, columns, header):
    """The rows of CSV/TSV files read by graph ops (`CsvDataset`): `(train, validation)` documents.

    Each file's head (`sources.HEAD_BYTES`) is read in Python: checked like
    any streamed text, and parsed by `_read_table` to detect its header row
    and resolve `columns`. Then the file is read by a `CsvDataset` of the
    chosen columns (strings), each row's fields trimmed and joined by a
    space as `_read_table` does, its own line ends made spaces, and the rows
    cut into pieces of lines for `sources.split` (lines mode: the `every`-th
    non-blank row of each file is held out, as in memory).

    Before it is streamed, each file's head is read both ways, and must
    give the same lines: a CSV that `CsvDataset` parses otherwise than
    Python's `csv` (a quote inside an unquoted field, a space before a
    quoted one, a row shorter than the last chosen column) is a one-line
    error there, not different text. Beyond the head such a row stops the
    first pass over the rows (the vocabulary pass of `preparation.prepare`,
    which makes it a one-line error with `stream_error`).

    Returns:
        `((ranges, open_range), (ranges, open_range))` as `sources.split` takes them.
    """
    delimiter = TABULAR[ext]
    if not columns:
        raise errors.ConfigError(f"{files.paths[0]} is a {ext[1:].upper()} file: name its text column with --column")
    heads = [_plan(path, size, columns, delimiter, header) for path, size in zip(files.paths, files.sizes)]
    heads = [h for h in heads if h is not None]
    plans = [plan for plan, _ in heads]
    if not plans:
        raise errors.DataError(f"corpus {files.source!r} is empty: it has no non-blank lines")
    widths = {len(p[2]) for p in plans}
    if len(widths) > 1:
        raise errors.ConfigError(f"--column {','.join(columns)} names a different number of distinct columns "
                                 f"in the files of {files.source}; name them the same way in every file")
    width = widths.pop()
    _check_heads(heads, delimiter, width)
    return _documents(plans, delimiter, width)


def _documents(plans, delimiter, width):
    ranges = tf.data.Dataset.from_tensor_slices((
        tf.constant([p[0] for p in plans], tf.string), tf.constant([p[1] for p in plans], tf.int64),
        tf.constant([p[2] for p in plans], tf.int64), tf.constant([p[3] for p in plans], tf.int64)))
    open_rows = _open_rows(delimiter, width)
    return (ranges, open_rows), (ranges, open_rows)


def _plan(path, size, columns, delimiter, header):
    """`(plan, (head, rows))` of one file, `None` for a file of no rows.

    `plan` is `(path, skip, select_cols, order)` for `_open_rows`; `head` the
    complete rows of the file's first `sources.HEAD_BYTES` (checked as text)
    and `rows` their chosen text as `_read_table` reads it.
    """
    if size == 0:
        return None
    head = sources.check_text(path, limit=sources.HEAD_BYTES)
    truncated = size > sources.HEAD_BYTES
    lines = list(io.StringIO(head, newline=""))
    rows, ends = [], []
    try:
        reader = csv.reader(iter(lines), delimiter=delimiter)
        for row in reader:
            rows.append(row)
            ends.append(reader.line_num)
    except csv.Error as e:
        raise errors.DataError(f"{path} is not a readable {'TSV' if delimiter == chr(9) else 'CSV'} file: {e}") \
            from None
    if truncated:  # the head's last row may be cut short
        rows, ends = rows[:-1], ends[:-1]
    if not any(any(f.strip() for f in row) for row in rows):
        if truncated:
            raise errors.DataError(f"{path}: no complete row in its first {sources.HEAD_BYTES / 1e6:.0f} MB; "
                                   f"rows that long are not streamed")
        return None
    kept = "".join(lines[:ends[-1]])
    filled = [any(f.strip() for f in row) for row in rows]
    first = filled.index(True)
    found, picked = _pick(path, [r for r, f in zip(rows, filled) if f], columns, header)
    # CsvDataset skips empty lines but not those of blank fields (",,"), which Python's rows hold as [].
    skip = sum(1 for row in rows[:first] if row) + (1 if found else 0)
    selected = sorted(set(picked))
    plan = (path, skip, selected, [selected.index(i) for i in picked])
    return plan, (kept, _read_table(path, kept, columns, delimiter, found))


def _starts_with_bom(path):
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read(3) == b"\xef\xbb\xbf"


def _check_heads(heads, delimiter, width):
    """Reads each head's complete rows as the stream will and as `_read_table` does: they must give the same lines.

    All heads are read by one pipeline each way; only when they differ is
    each file read alone, to name it.
    """
    def lines(documents):
        train, _ = sources.split(documents, "lines", every=1 << 62)
        return [t.decode("utf-8", "replace") for t in train.as_numpy_iterator()]

    folder = f"ram://keras-textgen-heads-{uuid.uuid4().hex}"
    copies = [f"{folder}/{i}" for i in range(len(heads))]
    try:
        for copy, ((path, *_), (text, _)) in zip(copies, heads):
            with tf.io.gfile.GFile(copy, "wb") as f:
                f.write((b"\xef\xbb\xbf" if _starts_with_bom(path) else b"") + text.encode("utf-8"))

        def same(which):
            expected = lines(sources.documents_from_texts(
                ["\n".join(" ".join(NEWLINES.split(r)) for r in heads[i][1][1]) for i in which], "lines"))
            got = lines(_documents([(copies[i],) + heads[i][0][1:] for i in which], delimiter, width))
            if got != expected:
                at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
                return (f"TensorFlow's CSV reader reads its row {at + 1} otherwise than Python's csv module; write "
                        f"the column to a .txt file (one row per line) to stream it")
            return None

        try:
            if same(range(len(heads))) is None:
                return
        except tf.errors.InvalidArgumentError:
            pass
        for i, ((path, *_), _) in enumerate(heads):
            try:
                why = same([i])
            except tf.errors.InvalidArgumentError as e:
                why = stream_error(path, e, head=True)
            if why:
                raise errors.DataError(f"{path} cannot be streamed: {why}")
        raise errors.DataError("the CSV/TSV files cannot be streamed: TensorFlow's CSV reader reads their first rows "
                               "otherwise than Python's csv module")
    finally:
        for copy in copies:
            if tf.io.gfile.exists(copy):
                tf.io.gfile.remove(copy)


def _open_rows(delimiter, width):
    """`(path, skip, select_cols, order) -> ` a dataset of pieces of lines: the joined chosen fields, one row a line."""
    defaults = [tf.constant("", tf.string)] * width

    def open_rows(path, skip, select_cols, order):
        records = tf.data.experimental.CsvDataset(path, defaults, field_delim=delimiter, select_cols=select_cols,
                                                  buffer_size=sources.BLOCK_BYTES)
        first_is_bom = tf.logical_and(tf.equal(skip, 0), tf.equal(select_cols[0], 0))

        def join(number, fields):
            fields = tf.stack(fields, axis=1)  # [rows, width]
            at_start = tf.logical_and(first_is_bom, tf.logical_and(tf.equal(number, 0),
                                                                   tf.equal(tf.range(tf.shape(fields)[0]), 0)))
            fields = tf.concat([tf.expand_dims(tf.where(at_start, tf.strings.regex_replace(
                fields[:, 0], "^\ufeff", ""), fields[:, 0]), 1), fields[:, 1:]], axis=1)
            fields = tf.strings.regex_replace(tf.gather(fields, order, axis=1), f"^{sources.SPACE}+|{sources.SPACE}+$", "")
            rows = tf.strings.reduce_join(tf.ragged.boolean_mask(fields, tf.strings.length(fields) > 0), axis=1,
                                          separator=" ")
            rows = tf.strings.regex_replace(rows, r"\r\n|\r|\n", " ")
            return tf.strings.join([tf.strings.reduce_join(rows, separator="\n"), "\n"])

        return records.skip(skip).batch(STREAM_ROWS).enumerate().map(
            sources.plain(join), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return open_rows


def stream_error(source, error, head=False):
    """The one-line message of a `CsvDataset` parse error (`tf.errors.InvalidArgumentError`)."""
    reason = re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:.*$", "", error.message.strip().splitlines()[0]) or "a parse error"
    where = "in its first rows" if head else f"reading {source}"
    return (f"TensorFlow's CSV reader stops {where} ({reason}); quote whole fields only (\"say \"\"hi\"\"\", "
            f"not say \"hi\"), give every row the chosen columns, or write the column to a .txt file "
            f"(one row per line) to stream it")
