"""Text datasets (fortunes, AG News, TREC, CSV, folders) and the text recipe."""

import math
import os

import numpy as np
import pytest

from cct_fast.data import text_data
from cct_fast.data.text_data import load_text_dataset
from cct_fast.errors import DatasetError
from cct_fast.train.recipe import TEXT_DEFAULTS, RecipeError, make_recipe


def _write_csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "".join(f'"{text}",{label}\n' for text, label in rows))
    return path


def _fortune_files(directory, per_category=5):
    directory.mkdir()
    for category in text_data.FORTUNE_CATEGORIES:
        texts = [f"A {category} text number {i}\nover two lines." for i in range(per_category)]
        texts.append("A text in every file.")  # a duplicate across files is kept once
        (directory / category).write_text("\n%\n".join(texts) + "\n%\n")
    return directory


def test_fortunes_is_a_seeded_stratified_split_of_the_chosen_categories(tmp_path):
    dataset = text_data._fortunes(_fortune_files(tmp_path / "fortunes"))
    assert dataset.class_names == sorted(text_data.FORTUNE_CATEGORIES)
    texts = dataset.train.texts + dataset.test.texts
    assert len(texts) == len(set(texts)) == 9 * 5 + 1
    assert "A computers text number 0 over two lines." in texts  # whitespace folded
    assert len(dataset.test) == math.ceil(0.2 * len(texts))  # as scikit-learn rounds
    again = text_data._fortunes(tmp_path / "fortunes")
    assert again.test.texts == dataset.test.texts
    np.testing.assert_array_equal(again.test.labels, dataset.test.labels)


def test_the_installed_fortunes_package():
    if not text_data.FORTUNES_DIR.is_dir():
        pytest.skip("the Debian package fortunes is not installed (apt-get install fortunes)")
    dataset = load_text_dataset("fortunes")
    assert dataset.num_classes == 9
    assert 3000 < len(dataset.train) + len(dataset.test) < 4000
    majority = np.bincount(dataset.test.labels).max() / len(dataset.test)
    assert 0.25 < majority < 0.35  # computers; the learning check must beat it clearly


def test_missing_fortunes_say_how_to_install_them(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install fortunes"):
        text_data._fortunes(tmp_path)


def test_agnews_and_trec_read_their_public_files(tmp_path, monkeypatch):
    files = {
        "cct_fast_agnews_train.csv": '"3","Stocks rise","Markets\\ rallied."\n"2","Cup","Won."\n',
        "cct_fast_agnews_test.csv": '"1","Summit","Leaders met."\n',
        "cct_fast_trec_train_5500.label": "DESC:manner How did serfdom develop ?\nHUM:ind Who "
        "was Galileo ?\nNUM:date When ?\n",
        "cct_fast_trec_TREC_10.label": "HUM:desc Who is Colin Powell ?\n",
    }
    asked = []

    def get_file(name, url):
        asked.append(url)
        path = tmp_path / name
        path.write_bytes(files[name].encode("latin-1"))
        return str(path)

    monkeypatch.setattr("keras.utils.get_file", get_file)
    news = load_text_dataset("agnews")
    assert news.class_names == ["World", "Sports", "Business", "Sci/Tech"]  # label order
    assert news.train.texts[0] == "Stocks rise Markets  rallied."
    assert [news.class_names[i] for i in news.train.labels] == ["Business", "Sports"]
    questions = load_text_dataset("trec")
    assert questions.class_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert questions.test.texts == ["Who is Colin Powell ?"]
    assert asked[0].endswith("ag_news_csv/train.csv") and asked[-1].endswith("TREC_10.label")


def test_offline_downloads_and_bad_files_are_named(tmp_path, monkeypatch):
    def offline(name, url):
        raise OSError("Network is unreachable")

    monkeypatch.setattr("keras.utils.get_file", offline)
    with pytest.raises(DatasetError, match=r"Could not fetch trec .*Network is unreachable"):
        load_text_dataset("trec")
    bad = tmp_path / "bad.csv"
    bad.write_text('"9","title"\n')
    monkeypatch.setattr("keras.utils.get_file", lambda name, url: str(bad))
    with pytest.raises(DatasetError, match=r"row 1: expected class \(1-4\), title, description"):
        load_text_dataset("agnews")


def test_a_csv_file_is_split_and_a_csv_folder_keeps_its_splits(tmp_path):
    rows = [(f"text {i}", "ab"[i % 2]) for i in range(20)]
    single = load_text_dataset(f"csv:{_write_csv(tmp_path / 'all.csv', rows)}")
    assert single.class_names == ["a", "b"] and (len(single.train), len(single.test)) == (16, 4)
    folder = tmp_path / "splits"
    folder.mkdir()
    lines = [f'{i},{label},"{text}"' for i, (text, label) in enumerate(rows)]
    (folder / "train.csv").write_text("\n".join(["id,Label,Text", *lines]) + "\n")
    _write_csv(folder / "test.csv", rows[:3])
    both = load_text_dataset(f"csv:{folder}")
    assert (len(both.train), len(both.test)) == (20, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        ("words,label\nhi,a\n", r"needs columns named 'text' and 'label'.*\['words', 'label'\]"),
        ("text,label\n", "holds a header and no rows"),
        ("", "is empty"),
        ("text,label\nhi,a\nhello,\nhey,b\n", r"1 row\(s\) lack a text or label cell \(rows 3\)"),
        ("text,label\nhi,a\nhey,b\nho,b\n", "class\\(es\\) a have a single text"),
        ("text,label\n" + "hi,a\n" * 10, "every training text has the label 'a'.*two classes"),
        (
            "text,label\n" + "".join(f"t{i},c{i // 2}\n" for i in range(600)),
            "600 texts of 300 classes cannot be split 80/20 .*120 test texts",
        ),
    ],
    ids=["columns", "no rows", "empty", "a row lacks", "a single text", "one class", "classes"],
)
def test_unreadable_csv_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_text_dataset(f"csv:{path}")


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "data.csv"
    rows = "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(10))
    path.write_bytes(("text,label\n" + rows).encode("utf-8-sig"))
    dataset = load_text_dataset(f"csv:{path}")
    assert dataset.class_names == ["a", "b"]


def test_a_csv_in_another_encoding_is_refused(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        load_text_dataset(f"csv:{path}")


def test_a_text_folder_and_its_errors(tmp_path):
    for split, count in (("train", 3), ("test", 1)):
        for name in ("ham", "spam"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.txt").write_text(f"{name} {i}")
    dataset = load_text_dataset(f"folder:{tmp_path}")
    assert dataset.class_names == ["ham", "spam"] and len(dataset.train) == 6
    assert dataset.test.texts == ["ham 0", "spam 0"]
    (tmp_path / "train" / "eggs").mkdir()
    with pytest.raises(DatasetError, match="Class folder\\(s\\) eggs under .* hold no .txt files"):
        load_text_dataset(f"folder:{tmp_path}")
    (tmp_path / "train" / "eggs").rmdir()
    (tmp_path / "test" / "toast").mkdir()
    (tmp_path / "test" / "toast" / "0.txt").write_text("toast")
    with pytest.raises(DatasetError, match="test split has classes the training split lacks"):
        load_text_dataset(f"folder:{tmp_path}")
    with pytest.raises(DatasetError, match="Unknown text dataset 'imdb'"):
        load_text_dataset("imdb")


def test_text_models_get_the_text_recipe_and_their_own_datasets():
    recipe = make_recipe(model="text_cct_2")
    assert recipe.dataset == "fortunes"
    assert {key: getattr(recipe, key) for key in TEXT_DEFAULTS} == TEXT_DEFAULTS
    assert make_recipe(model="text_cct_2", epochs=3, seq_len=32).seq_len == 32
    assert make_recipe(model="cct_2_3x2_32", dataset="digits").mixup_alpha == 0.0
    with pytest.raises(RecipeError, match="text_cct_2 is a text model and digits an image"):
        make_recipe(model="text_cct_2", dataset="digits")
    with pytest.raises(RecipeError, match="cct_2_3x2_32 is an image model and csv:x.csv a text"):
        make_recipe(model="cct_2_3x2_32", dataset="csv:x.csv")
    with pytest.raises(RecipeError, match="embeddings is for text models; cct_2_3x2_32 is an"):
        make_recipe(model="cct_2_3x2_32", dataset="digits", embeddings="glove.txt")
    with pytest.raises(RecipeError, match="vocab_min_count, token_dropout are for text models"):
        make_recipe(model="cct_2_3x2_32", dataset="digits", vocab_min_count=2, token_dropout=0.1)
    with pytest.raises(RecipeError, match=r"token_dropout=1.0 .*expected a value in \[0, 1\)"):
        make_recipe(model="text_cct_2", token_dropout=1.0)
    with pytest.raises(RecipeError, match=r"vocab_min_count=0 .*expected a value in \[1, inf\)"):
        make_recipe(model="text_cct_2", vocab_min_count=0)
    with pytest.raises(RecipeError, match="no embeddings file is given"):
        make_recipe(model="text_cct_2", freeze_embeddings=True)


def test_a_text_folder_names_every_file_that_is_no_readable_text(tmp_path, monkeypatch):
    """A FIFO once blocked the run for ever and a link loop ended in a raw OSError."""
    for split in ("train", "test"):
        for name in ("ham", "spam"):
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "0.txt").write_text(f"{name} text")
    ham = tmp_path / "train" / "ham"
    (ham / "linked.txt").symlink_to(tmp_path / "train" / "spam" / "0.txt")
    assert len(load_text_dataset(f"folder:{tmp_path}").train) == 3  # a link to a text is read
    os.mkfifo(ham / "fifo.txt")
    (ham / "loop.txt").symlink_to(ham / "loop.txt")
    (ham / "gone.txt").symlink_to(tmp_path / "missing.txt")
    (ham / "long.txt").write_text("word " * 300)
    monkeypatch.setattr(text_data, "MAX_TEXT_BYTES", 1000)
    with pytest.raises(DatasetError, match=r"4 .txt file\(s\) under .*train cannot be read") as no:
        load_text_dataset(f"folder:{tmp_path}")
    lines = str(no.value).splitlines()[1:]
    assert [line.split(": ")[0].rsplit("/", 1)[1] for line in lines] == [
        "fifo.txt",
        "gone.txt",
        "long.txt",
        "loop.txt",
    ]
    assert "not a regular file" in lines[0] and "No such file" in lines[1]
    assert "over the 0 MiB a text may take" in lines[2] and "symbolic links" in lines[3]


def test_texts_of_a_megabyte_are_read_from_a_csv(tmp_path):
    """The csv module's own field limit is 128 KiB."""
    long = "word " * 200_000
    _write_csv(tmp_path / "long.csv", [(long, "a"), (long, "b")] * 5)
    dataset = load_text_dataset(f"csv:{tmp_path / 'long.csv'}")
    assert sorted(map(len, dataset.train.texts + dataset.test.texts)) == [len(long)] * 10
