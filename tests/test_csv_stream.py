"""CSV/TSV corpora over the memory budget, streamed through `CsvDataset`: the same rows and split as in memory."""

import csv
import re

import pytest

import keras_textgen as ktg
from keras_textgen import errors, preparation, sources, training
from test_corpus import AG_NEWS_ROWS, write_ag_news_csv


def texts(ds):
    return [t.decode() for t in ds.as_numpy_iterator()]


def both(path, **kwargs):
    """The corpus read into memory and streamed (`memory_budget=0`): `(in_memory, streamed)`."""
    in_memory = ktg.corpus.load(str(path), **kwargs)
    streamed = ktg.corpus.load(str(path), memory_budget=0, **kwargs)
    assert not in_memory.streamed and streamed.streamed
    return in_memory, streamed


def assert_same(path, **kwargs):
    in_memory, streamed = both(path, **kwargs)
    assert texts(streamed.train) == texts(in_memory.train)
    assert texts(streamed.validation) == texts(in_memory.validation)
    assert texts(streamed.validation)  # the split holds rows out
    return texts(streamed.train), texts(streamed.validation)


def write_news(path, delimiter=",", header=True, rows=23):
    """A table whose fields have commas, quotes, line ends, padding, blank cells and non-ASCII text."""
    body = []
    for i in range(rows):
        description = [f'Markets, up "{i}"', f"two\nlines {i}", f"  padded {i}\t", "", f"café {i}\r\nend"][i % 5]
        body.append([str(i % 4 + 1), f"Title {i}", description])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerows(([["label", "title", "description"]] if header else []) + body)
    return path


@pytest.mark.parametrize("column", ["title", "2", 2, "description", "title,description", "description,title,1"])
def test_streamed_rows_and_split_are_the_in_memory_ones(tmp_path, column):
    train, validation = assert_same(write_news(tmp_path / "news.csv"), column=column)
    blank = 4 if column == "description" else 0  # rows 3, 8, 13, 18: an empty description is no example
    assert len(train) + len(validation) == 23 - blank and len(validation) == (23 - blank) // 10  # 10th, 20th


def test_two_columns_are_joined_by_a_space_with_their_line_ends_made_spaces(tmp_path):
    train, validation = assert_same(write_news(tmp_path / "news.csv"), column="title,description")
    assert train[:5] == ['Title 0 Markets, up "0"', "Title 1 two lines 1", "Title 2 padded 2", "Title 3",
                         "Title 4 café 4 end"]


def test_tsv_streams(tmp_path):
    assert_same(write_news(tmp_path / "news.tsv", delimiter="\t"), column="title,description")


def test_headerless_csv_streams_by_number(tmp_path):
    path = write_ag_news_csv(tmp_path / "train.csv")
    for header in (None, False, True):
        train, validation = assert_same(path, column="2,3", header=header, validation_fraction=0.34)
        assert len(train) + len(validation) == len(AG_NEWS_ROWS) - (header is True)
    assert_same(write_news(tmp_path / "plain.csv", header=False), column=3)


def test_a_bom_blank_lines_and_crlf_row_ends(tmp_path):
    path = tmp_path / "bom.csv"
    rows = b"".join(b"row %d,%d\r\n" % (i, i) for i in range(12))
    path.write_bytes(b"\xef\xbb\xbfone,1\r\n\r\ntwo,2\r\n,\r\n" + rows)
    train, validation = assert_same(path, column=1)
    assert train[:2] == ["one", "two"]


def test_a_glob_of_csv_files_splits_each_file(tmp_path):
    (tmp_path / "data").mkdir()
    write_news(tmp_path / "data" / "a.csv", rows=12)
    write_news(tmp_path / "data" / "b.csv", header=False, rows=15)
    in_memory, streamed = both(tmp_path / "data" / "*.csv", column=2)
    assert texts(streamed.train) == texts(in_memory.train)
    assert texts(streamed.validation) == texts(in_memory.validation) == ["Title 9", "Title 9"]
    assert "2 files" in streamed.describe()


def test_a_streamed_csv_says_so_when_training(tmp_path):
    path = write_news(tmp_path / "news.csv")
    config = training.TrainConfig(corpus=str(path), column="title", batch_size=4, units=8, memory_budget=0)
    prepared = preparation.prepare(config)
    assert prepared.corpus.streamed
    assert prepared.corpus.describe() == "1 file, 0.0 MB, streamed from the files, over the memory budget"
    in_memory = preparation.prepare(training.TrainConfig(corpus=str(path), column="title", batch_size=4, units=8))
    assert in_memory.corpus.describe().endswith("read into memory, within the memory budget")


def test_a_bad_column_is_the_same_one_line_error_streamed(tmp_path):
    path = write_news(tmp_path / "news.csv")
    with pytest.raises(errors.DataError) as e:
        ktg.corpus.load(str(path), column="body", memory_budget=0)
    assert "no column 'body'; its columns are ['label', 'title', 'description']" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(errors.DataError, match="has 3 columns: --column 4 is out of range"):
        ktg.corpus.load(str(path), column=4, memory_budget=0)


@pytest.mark.parametrize("content", [b'title,n\nsay "hi",1\nb,2\n', b'title,n\n "quoted",1\nb,2\n',
                                     b"title,n\nx,1\ny\nz,3\n"],
                         ids=["quote-inside", "space-before-quote", "short-row"])
def test_what_csvdataset_reads_otherwise_is_a_one_line_error_not_other_text(tmp_path, content):
    path = tmp_path / "odd.csv"
    path.write_bytes(content)
    assert texts(ktg.corpus.load(str(path), column="n").train)  # Python's csv reads it, in memory
    with pytest.raises(errors.DataError, match=r"odd\.csv cannot be streamed: .*write the column to a \.txt file") as e:
        ktg.corpus.load(str(path), column="n", memory_budget=0)
    assert "\n" not in str(e.value)


def test_rows_past_the_head_are_read_by_the_stream(tmp_path, monkeypatch):
    """Only the head is parsed in Python; its last, maybe cut, row is left to the stream."""
    monkeypatch.setattr(sources, "HEAD_BYTES", 100)
    path = write_news(tmp_path / "news.csv", rows=40)
    assert path.stat().st_size > 300
    assert_same(path, column="title,description")


def test_chunks_mode_of_a_streamed_csv_is_a_one_line_error(tmp_path):
    with pytest.raises(errors.ConfigError, match=r"streamed \.csv corpus is read in lines mode only"):
        ktg.corpus.load(str(write_news(tmp_path / "news.csv")), column="title", mode="chunks", memory_budget=0)


def test_shards_read_their_own_files(tmp_path):
    (tmp_path / "data").mkdir()
    for name in "abc":
        write_news(tmp_path / "data" / f"{name}.csv", rows=11)
    whole = texts(ktg.corpus.load(str(tmp_path / "data"), column="title,description", memory_budget=0).train)
    shards = [texts(ktg.corpus.load(str(tmp_path / "data"), column="title,description", memory_budget=0,
                                    shard=(2, i)).train) for i in (0, 1)]
    assert shards[0] == whole[:10] + whole[20:] and shards[1] == whole[10:20]
    assert all(re.match(r"Title \d+", t) for t in whole)


def test_a_bad_row_past_the_head_stops_the_vocabulary_pass_with_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "HEAD_BYTES", 100)
    path = tmp_path / "late.csv"
    path.write_text("title,n\n" + "".join(f"t{i},{i}\n" for i in range(40)) + "short\nx,1\n")
    config = training.TrainConfig(corpus=str(path), column="n", batch_size=4, units=8, memory_budget=0)
    with pytest.raises(errors.DataError, match=r"TensorFlow's CSV reader stops reading .*late\.csv "
                                               r"\(Expect 1 fields but have 0 in record\); ") as e:
        preparation.prepare(config)
    assert "\n" not in str(e.value)


def test_in_a_glob_the_file_csvdataset_cannot_read_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    write_news(tmp_path / "data" / "a.csv", rows=12)
    (tmp_path / "data" / "b.csv").write_text('label,title,description\n1,say "hi",x\n2,b,y\n')
    with pytest.raises(errors.DataError, match=r"b\.csv cannot be streamed: TensorFlow's CSV reader stops in its "
                                               r"first rows \(Unquoted fields cannot have quotes inside\)"):
        ktg.corpus.load(str(tmp_path / "data" / "*.csv"), column="title", memory_budget=0)
