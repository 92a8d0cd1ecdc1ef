import json

import pytest

import keras_textgen as ktg
from keras_textgen import errors
from conftest import LINES, SHAKESPEARE_DIR, needs_shakespeare


def texts(ds):
    """A split's texts; a chunks-mode split's elements are (piece, starts_document) pairs."""
    return [t.decode() for t in ktg.corpus.texts_of(ds).as_numpy_iterator()]


def test_python_docs_is_builtin_and_offline():
    corpus = ktg.corpus.load("python-docs")
    assert corpus.mode == "chunks" and corpus.name == "python-docs"
    train, val = texts(corpus.train), texts(corpus.validation)
    assert len(train) == 1 and len(val) == 1
    assert len(train[0]) > 300_000 and 0.05 < len(val[0]) / (len(train[0]) + len(val[0])) < 0.15
    assert "def" in train[0]


def test_lines_mode_split_is_deterministic_and_complete(text_file):
    a = ktg.corpus.load(str(text_file))
    b = ktg.corpus.load(str(text_file))
    assert texts(a.train) == texts(b.train) and texts(a.validation) == texts(b.validation)
    assert sorted(texts(a.train) + texts(a.validation)) == sorted(LINES)
    assert len(texts(a.validation)) == 1  # every 10th line of 12


def test_short_corpus_still_has_a_validation_line(tmp_path):
    path = tmp_path / "five.txt"
    path.write_text("one\ntwo\nthree\nfour\nfive\n")
    corpus = ktg.corpus.load(str(path))
    assert texts(corpus.validation) == ["five"]
    assert texts(corpus.train) == ["one", "two", "three", "four"]


def test_chunks_mode_keeps_the_text(text_file):
    corpus = ktg.corpus.load(str(text_file), mode="chunks")
    assert "".join(texts(corpus.train) + texts(corpus.validation)) == "\n".join(LINES) + "\n"


def test_mixed_newlines_and_blank_lines(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n\n   \nfour  \n")
    corpus = ktg.corpus.load(str(path), validation_fraction=0.5)
    assert sorted(texts(corpus.train) + texts(corpus.validation)) == ["four", "one", "three", "two"]


def test_csv_columns_joined(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text('title,description,label\n"Stocks rise","Markets, up",1\nRain ahead,"Wet, cold",2\n'
                    "Team wins,Big game,3\n")
    corpus = ktg.corpus.load(str(path), column="title,description", validation_fraction=0.34)
    assert sorted(texts(corpus.train) + texts(corpus.validation)) == [
        "Rain ahead Wet, cold", "Stocks rise Markets, up", "Team wins Big game"]


def test_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("id\ttext\n1\thello there\n2\tgeneral kenobi\n")
    assert sorted(texts(ktg.corpus.load(str(tsv), column="text").train) +
                  texts(ktg.corpus.load(str(tsv), column="text").validation)) == ["general kenobi", "hello there"]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"title": t, "n": i}) for i, t in enumerate(["x y", "z w", "q"])) + "\n")
    corpus = ktg.corpus.load(str(jsonl), column=["title"], validation_fraction=0.34)
    assert sorted(texts(corpus.train) + texts(corpus.validation)) == ["q", "x y", "z w"]


@needs_shakespeare
def test_tfds_tiny_shakespeare_offline_through_manual_dir(tmp_path):
    corpus = ktg.corpus.load("tfds:tiny_shakespeare", manual_dir=SHAKESPEARE_DIR, data_dir=tmp_path)
    assert corpus.mode == "chunks"
    train = texts(corpus.train)
    assert len(train) == 1 and train[0].startswith("First Citizen:")
    lines = ktg.corpus.load("tfds:tiny_shakespeare:text", mode="lines", manual_dir=SHAKESPEARE_DIR,
                            data_dir=tmp_path)
    first = texts(lines.train.take(3))
    assert first == ["First Citizen:", "Before we proceed any further, hear me speak.", "All:"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\n   \n\t\n", "empty"),
    (b"caf\xe9 au lait\n", "not UTF-8 text: invalid byte 0xe9 at offset 3"),
    (b"abc\x00def\n", "NUL bytes"),
    (b"just one line\n", "at least 2"),
])
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(errors.DataError, match=message):
        ktg.corpus.load(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(errors.DataError, match="not found"):
        ktg.corpus.load(str(tmp_path / "nope.txt"))
    with pytest.raises(errors.DataError, match="directory"):
        ktg.corpus.load(str(tmp_path))


def test_csv_missing_column(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("title,label\nx,1\ny,2\n")
    with pytest.raises(errors.DataError, match="no column 'body'; its columns are"):
        ktg.corpus.load(str(path), column="body")
    with pytest.raises(errors.ConfigError, match="--column"):
        ktg.corpus.load(str(path))


# AG News as distributed (train.csv): no header row, every field quoted, class index first.
AG_NEWS_ROWS = [
    ("3", "Wall St. Bears Claw Back Into the Black (Reuters)",
     "Reuters - Short-sellers, Wall Street's dwindling\\band of ultra-cynics, are seeing green again."),
    ("3", "Carlyle Looks Toward Commercial Aerospace (Reuters)", "Reuters - Private investment firm Carlyle Group."),
    ("3", "Oil and Economy Cloud Stocks' Outlook (Reuters)", "Reuters - Soaring crude prices plus worries."),
    ("4", "Iraq Halts Oil Exports from Main Southern Pipeline", 'Authorities have halted oil "export" flows.'),
    ("2", "Sharapova Wins the Title", "Maria Sharapova, 17, won."),
    ("1", "Rebels Take Town, Army Says", "Rebels took the town,\nthe army said."),
]


def write_ag_news_csv(path):
    """Writes AG_NEWS_ROWS as the distributed file: `"3","Title","Description"` rows, no header."""
    def quote(field):
        return '"' + field.replace('"', '""') + '"'

    path.write_text("".join(",".join(quote(f) for f in row) + "\n" for row in AG_NEWS_ROWS), encoding="utf-8")
    return path


def all_texts(corpus):
    return texts(corpus.train) + texts(corpus.validation)


def test_headerless_ag_news_csv_by_column_number(tmp_path):
    path = write_ag_news_csv(tmp_path / "train.csv")
    titles = [row[1] for row in AG_NEWS_ROWS]
    for column in ("2", 2, [2]):
        corpus = ktg.corpus.load(str(path), column=column, validation_fraction=0.34)
        assert sorted(all_texts(corpus)) == sorted(titles)  # the first row is data: detected, not dropped
    both = ktg.corpus.load(str(path), column="2,3", validation_fraction=0.34)
    assert "Rebels Take Town, Army Says Rebels took the town, the army said." in all_texts(both)
    assert 'Iraq Halts Oil Exports from Main Southern Pipeline Authorities have halted oil "export" flows.' \
        in all_texts(both)
    declared = ktg.corpus.load(str(path), column=2, header=False, validation_fraction=0.34)
    assert sorted(all_texts(declared)) == sorted(titles)
    # Declared a header, the first row names the columns and is not an example.
    assert sorted(all_texts(ktg.corpus.load(str(path), column=2, header=True, validation_fraction=0.34))) == \
        sorted(titles[1:])


def test_a_header_row_is_detected_and_numbers_still_work(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("label,title\n1,Stocks rise\n2,Rain ahead\n3,Team wins\n")
    expected = ["Rain ahead", "Stocks rise", "Team wins"]
    assert sorted(all_texts(ktg.corpus.load(str(path), column="2", validation_fraction=0.34))) == expected
    assert sorted(all_texts(ktg.corpus.load(str(path), column="title", validation_fraction=0.34))) == expected
    # Declared headerless, the header row is an example like the others.
    assert sorted(all_texts(ktg.corpus.load(str(path), column=2, header=False, validation_fraction=0.25))) == \
        expected + ["title"]


def test_column_errors_say_how_to_pick_by_number(tmp_path):
    headerless = write_ag_news_csv(tmp_path / "train.csv")
    with pytest.raises(errors.DataError, match=r"no column 'title': its first row looks like data, not a header, "
                                               r"so pick columns by number from 1, e\.g\. --column 3 "
                                               r"\(first row: 1: '3', 2: 'Wall St"):
        ktg.corpus.load(str(headerless), column="title")
    with pytest.raises(errors.DataError, match=r"read without a header row \(--no-header\)"):
        ktg.corpus.load(str(headerless), column="title", header=False)
    with pytest.raises(errors.DataError, match=r"has 3 columns: --column 4 is out of range"):
        ktg.corpus.load(str(headerless), column="2,4")
    with pytest.raises(errors.DataError, match=r"--column 0 is out of range \(columns are numbered from 1\)"):
        ktg.corpus.load(str(headerless), column=0)
    named = tmp_path / "named.csv"
    named.write_text("title,label\nx,1\ny,2\n")
    with pytest.raises(errors.DataError, match=r"no column 'body'; its columns are \['title', 'label'\] "
                                               r"\(pick one by name, or by number from 1, e\.g\. --column 2\)"):
        ktg.corpus.load(str(named), column="body")
    with pytest.raises(errors.ConfigError, match="apply to .csv/.tsv files"):
        ktg.corpus.load(str(_txt(tmp_path)), header=False)


def _txt(folder):
    path = folder / "plain.txt"
    path.write_text("one\ntwo\n")
    return path


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"t": "a"}\n{broken\n')
    with pytest.raises(errors.DataError, match="line 2 is not valid JSON"):
        ktg.corpus.load(str(path), column="t")


def test_unknown_tfds_dataset(tmp_path):
    with pytest.raises(errors.DataError, match="unknown TFDS dataset 'no_such_dataset_xyz'"):
        ktg.corpus.load("tfds:no_such_dataset_xyz", data_dir=tmp_path)


def test_tfds_without_network_says_so(tmp_path):
    # tiny_shakespeare without its manual_dir must download, which fails offline (or
    # succeeds online); either way no traceback-only failure.
    try:
        ktg.corpus.load("tfds:tiny_shakespeare", data_dir=tmp_path / "empty")
    except errors.DataError as e:
        assert "cannot prepare TFDS dataset 'tiny_shakespeare'" in str(e)
        assert "network" in str(e) and "--manual-dir" in str(e)
    else:
        pytest.skip("this machine has network access: the download worked")


def test_bad_mode_and_source_syntax():
    with pytest.raises(errors.ConfigError, match="mode"):
        ktg.corpus.load("python-docs", mode="pages")
    with pytest.raises(errors.ConfigError, match="tfds:NAME"):
        ktg.corpus.load("tfds:")
