"""Text classification datasets as lists of strings with integer labels.

- ``fortunes``: the Debian package ``fortunes`` (``apt-get install fortunes``), offline. Nine
  topical category files of ``/usr/share/games/fortunes`` (:data:`FORTUNE_CATEGORIES`), each
  text once, split 80/20 by a seeded stratified draw.
- ``agnews``: AG News (Zhang et al., 2015; 4 classes, 120,000 + 7,600 news items), and
  ``trec``: TREC question classification (Li and Roth, 2002; 6 coarse classes, 5,452 + 500
  questions), both fetched by ``keras.utils.get_file`` from their public files on first use.
- ``csv:PATH``: a CSV file with a header naming ``text`` and ``label`` columns (split 80/20
  like ``fortunes``), or a folder holding ``train.csv`` and ``test.csv``.
- ``folder:PATH``: ``PATH/train/<class>/*.txt`` and ``PATH/test/<class>/*.txt`` (or ``val``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import stat
from pathlib import Path

import numpy as np

from cct_fast.errors import DatasetError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Topics, not forms: "people", "definitions" or "songs-poems" say how a text is written rather
# than what it is about, and "cookie"/"fortunes"/"miscellaneous" mix everything.
FORTUNE_CATEGORIES = (
    "computers",
    "education",
    "food",
    "law",
    "love",
    "politics",
    "science",
    "sports",
    "startrek",
)
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed, so accuracies are comparable between runs
AGNEWS_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
TREC_URL = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
TREC_FILES = {"train": "train_5500.label", "test": "TREC_10.label"}
TREC_CLASSES = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]  # the coarse classes
TEXT_DATASETS = "'fortunes', 'agnews', 'trec', 'csv:PATH' or 'folder:PATH'"
# The longest text read, in bytes: a book, where the models read the first seq_len (64) pieces.
MAX_TEXT_BYTES = 10 * 2**20


@dataclasses.dataclass
class TextSplit:
    texts: list[str]
    labels: np.ndarray  # int32

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass
class TextDataset:
    name: str
    train: TextSplit
    test: TextSplit
    class_names: list[str]

    @property
    def num_classes(self):
        return len(self.class_names)


def load_text_dataset(spec: str) -> TextDataset:
    """``"fortunes"``, ``"agnews"``, ``"trec"``, ``"csv:PATH"`` or ``"folder:PATH"``."""
    if spec == "fortunes":
        return _fortunes(FORTUNES_DIR)
    if spec == "agnews":
        return _agnews()
    if spec == "trec":
        return _trec()
    if spec.startswith("csv:"):
        return _csv(Path(spec.removeprefix("csv:")).expanduser(), spec)
    if spec.startswith("folder:"):
        return _text_folder(Path(spec.removeprefix("folder:")).expanduser(), spec)
    raise DatasetError(f"Unknown text dataset {spec!r}: expected {TEXT_DATASETS}.")


def _labelled(name, train_texts, train_names, test_texts, test_names, class_names=None):
    """A dataset from class names per text; the classes are ``class_names`` (a published
    dataset's, in its label order), or else the training split's, sorted."""
    if class_names:
        unknown = sorted(set(train_names) - set(class_names))
        if unknown:
            raise DatasetError(
                f"{name}: labels {', '.join(map(str, unknown[:10]))} are not among its classes "
                f"{class_names}. Delete the downloaded files to fetch them again."
            )
    class_names = class_names or sorted(set(train_names))
    if len(class_names) < 2:
        raise DatasetError(
            f"{name}: every training text has the label {class_names[0]!r}; a classifier needs "
            "at least two classes."
        )
    unknown = sorted(set(test_names) - set(class_names))
    if unknown:
        raise DatasetError(
            f"{name}: the test split has classes the training split lacks: "
            f"{', '.join(map(str, unknown[:10]))}. A model cannot learn a class it never sees."
        )
    index = {label: i for i, label in enumerate(class_names)}

    def split(texts, names):
        return TextSplit(list(texts), np.asarray([index[n] for n in names], np.int32))

    return TextDataset(
        name, split(train_texts, train_names), split(test_texts, test_names), class_names
    )


def _seeded_split(name, texts, names):
    """80/20, stratified by class, from :data:`SPLIT_SEED`."""
    from sklearn.model_selection import train_test_split

    counts = {label: names.count(label) for label in set(names)}
    lonely = sorted(label for label, count in counts.items() if count < 2)
    if lonely:
        raise DatasetError(
            f"{name}: class(es) {', '.join(map(str, lonely[:10]))} have a single text; a split "
            "into training and test texts needs at least two of each."
        )
    test_count = math.ceil(len(texts) * TEST_FRACTION)
    if len(counts) > min(test_count, len(texts) - test_count):
        raise DatasetError(
            f"{name}: {len(texts)} texts of {len(counts)} classes cannot be split 80/20 with "
            f"every class on both sides ({test_count} test texts); give each class at least "
            "5 texts, or a folder with train.csv and test.csv."
        )
    train_x, test_x, train_y, test_y = train_test_split(
        texts, names, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=names
    )
    return _labelled(name, train_x, train_y, test_x, test_y)


def fortune_texts(path: Path) -> list[str]:
    """The texts of one fortune file: separated by lines holding only ``%``."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    texts = [" ".join(text.split()) for text in raw.split("\n%\n")]
    return [text for text in texts if text and text != "%"]


def _fortunes(directory):
    missing = [c for c in FORTUNE_CATEGORIES if not (directory / c).is_file()]
    if missing:
        raise DatasetError(
            f"The fortunes dataset reads {directory}/{{{','.join(FORTUNE_CATEGORIES)}}}; "
            f"{', '.join(missing)} missing. Install the Debian package: apt-get install fortunes."
        )
    texts, names, seen = [], [], set()
    for category in FORTUNE_CATEGORIES:
        for text in fortune_texts(directory / category):
            if text not in seen:  # a text in two files would be in both splits
                seen.add(text)
                texts.append(text)
                names.append(category)
    return _seeded_split("fortunes", texts, names)


def _fetch(name, url, filename):
    import keras

    try:
        return Path(keras.utils.get_file(f"cct_fast_{name}_{filename}", url + filename))
    except Exception as error:  # network errors come as many types
        raise DatasetError(
            f"Could not fetch {name} from {url + filename} ({type(error).__name__}: {error}). "
            "Keras downloads it on first use into ~/.keras/datasets; on an offline machine copy "
            "the file there under that name, or train on 'fortunes', 'csv:PATH' or "
            "'folder:PATH'."
        ) from None


def _agnews():
    splits = {}
    for split in ("train", "test"):
        path = _fetch("agnews", AGNEWS_URL, f"{split}.csv")
        texts, names = [], []
        with path.open(newline="", encoding="utf-8") as file:
            for row_number, row in enumerate(csv.reader(file), 1):
                if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
                    raise DatasetError(
                        f"{path}, row {row_number}: expected class (1-4), title, description; "
                        f"got {row[:3]!r}. Delete the file to fetch it again."
                    )
                texts.append(f"{row[1]} {row[2]}".replace("\\", " "))
                names.append(AGNEWS_CLASSES[int(row[0]) - 1])
        splits[split] = texts, names
    return _labelled("agnews", *splits["train"], *splits["test"], AGNEWS_CLASSES)


def _trec():
    splits = {}
    for split, filename in TREC_FILES.items():
        path = _fetch("trec", TREC_URL, filename)
        texts, names = [], []
        for line_number, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), 1):
            label, _, question = line.partition(" ")
            if ":" not in label or not question.strip():
                raise DatasetError(
                    f"{path}, line {line_number}: expected 'COARSE:fine question'; got "
                    f"{line[:60]!r}. Delete the file to fetch it again."
                )
            texts.append(question.strip())
            names.append(label.split(":")[0])
        splits[split] = texts, names
    return _labelled("trec", *splits["train"], *splits["test"], TREC_CLASSES)


def _read_csv(path):
    """``(texts, class names)`` from the ``text`` and ``label`` columns of ``path``."""
    limit = csv.field_size_limit(MAX_TEXT_BYTES)  # the module's default is 128 KiB
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.reader(file))
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path} is not UTF-8 text ({error.reason}); save it as UTF-8."
        ) from None
    except csv.Error as error:
        raise DatasetError(
            f"{path} is not a readable CSV file: {error} (a text may take "
            f"{MAX_TEXT_BYTES // 2**20} MiB)."
        ) from None
    finally:
        csv.field_size_limit(limit)
    if not rows:
        raise DatasetError(f"{path} is empty: expected a header with 'text' and 'label'.")
    header = [cell.strip().lower() for cell in rows[0]]
    if "text" not in header or "label" not in header:
        raise DatasetError(
            f"{path} needs columns named 'text' and 'label' in its header; its columns are "
            f"{rows[0]}."
        )
    text_at, label_at = header.index("text"), header.index("label")
    texts, names, bad = [], [], []
    for row_number, row in enumerate(rows[1:], 2):
        if len(row) <= max(text_at, label_at) or not row[label_at].strip():
            bad.append(row_number)
            continue
        texts.append(row[text_at])
        names.append(row[label_at].strip())
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise DatasetError(
            f"{path}: {len(bad)} row(s) lack a text or label cell (rows {shown}); fill or "
            "remove them."
        )
    if not texts:
        raise DatasetError(f"{path} holds a header and no rows.")
    return texts, names


def _csv(path, spec):
    if path.is_dir():
        files = [path / "train.csv", path / "test.csv"]
        if not all(f.is_file() for f in files):
            raise DatasetError(f"Expected {files[0]} and {files[1]}, or a single CSV file.")
        return _labelled(spec, *_read_csv(files[0]), *_read_csv(files[1]))
    if not path.is_file():
        raise DatasetError(f"CSV file {path} does not exist.")
    return _seeded_split(spec, *_read_csv(path))


def _text_folder(root, spec):
    if not root.is_dir():
        raise DatasetError(f"Text folder {root} does not exist.")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise DatasetError(
            f"Expected {root}/train/<class>/*.txt and {root}/test (or val)/<class>/*.txt."
        )
    splits = {}
    for split, directory in (("train", root / "train"), ("test", test_dir)):
        texts, names = [], []
        classes = sorted(p for p in directory.iterdir() if p.is_dir())
        if not classes:
            raise DatasetError(f"{directory} holds no class folders.")
        empty, unreadable = [], []
        for folder in classes:
            files = sorted(folder.glob("*.txt"))
            if not files and split == "train":
                empty.append(folder.name)
            for file in files:
                problem = _unreadable_text_file(file)
                if problem:
                    unreadable.append(f"{file}: {problem}")
                    continue
                try:
                    texts.append(file.read_text(encoding="utf-8"))
                except UnicodeDecodeError as error:
                    raise DatasetError(
                        f"{file} is not UTF-8 text ({error.reason}); save it as UTF-8."
                    ) from None
                names.append(folder.name)
        if unreadable:
            raise DatasetError(
                f"{len(unreadable)} .txt file(s) under {directory} cannot be read as texts:\n  "
                + "\n  ".join(unreadable[:10])
            )
        if empty:
            raise DatasetError(
                f"Class folder(s) {', '.join(empty)} under {directory} hold no .txt files: each "
                "class folder is a class, so remove the empty ones or fill them."
            )
        splits[split] = texts, names
    return _labelled(spec, *splits["train"], *splits["test"])


def _unreadable_text_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as one text (a FIFO would block the run for ever), or None."""
    try:
        status = path.stat()
    except OSError as error:  # a broken link, a link loop
        return os.strerror(error.errno) if error.errno else str(error)
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    if status.st_size > MAX_TEXT_BYTES:
        return (
            f"{status.st_size / 2**20:,.0f} MiB, over the {MAX_TEXT_BYTES // 2**20} MiB a text "
            "may take (cct_fast.data.text_data.MAX_TEXT_BYTES)"
        )
    return None
