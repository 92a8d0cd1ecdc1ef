"""CSV/TSV/JSONL corpus files: the text of chosen columns, one row per line, parsed in memory.

Python's `csv` and `json` modules do the parsing (quoted fields, a header
row detected or declared, JSON objects); the rows become one document whose
lines `keras_textgen.sources` then splits like any text. Files are parsed in
memory up to `corpus.TABLE_LIMIT` bytes.

Example:

>>> document("news.csv", ".csv", columns("title,description"), header=None)
'Stocks rise Markets, up\nRain ahead Wet, cold'
"""

import csv
import io
import json
import os
import re

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


def _read_table(path, text, columns, delimiter, header=None):
    """The text of `columns` (names, or 1-based numbers as strings) of each row of a CSV/TSV file."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [row for row in reader if any(f.strip() for f in row)]
    if not rows:
        return []
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
    body = rows[1:] if header else rows
    return [" ".join(row[i].strip() for i in picked if i < len(row) and row[i].strip()) for row in body]


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
