"""Raw text in ONNX: the run's TextEncoder as onnxruntime-extensions' operators
(cct_fast/export/text_graph.py), checked id for id against tensorflow-text, and the whole
export (strings -> logits, probabilities) against the Keras model."""

import importlib.util
import json
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

if importlib.util.find_spec("onnxruntime_extensions") is None:
    # Not importorskip: importing its package after TensorFlow is what library_path avoids.
    pytest.skip("onnxruntime-extensions is not installed", allow_module_level=True)

import cct_fast
from cct_fast.cli import main as cli
from cct_fast.data import text_data
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.errors import ExportError, MissingDependency
from cct_fast.export import load_onnx, text_graph, to_onnx

from helpers import relative_error

# Every Unicode scalar value but NUL, which ends a string in ONNX Runtime (KNOWN_DIFFERENCES).
CODE_POINTS = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]

# A deployment's view: onnxruntime, its extensions and the file; no TensorFlow, no cct_fast.
_DEPLOYED = """
import json, sys
import numpy as np
import onnxruntime as ort
from onnxruntime_extensions import get_library_path
path, texts = sys.argv[1], json.loads(sys.argv[2])
options = ort.SessionOptions()
options.register_custom_ops_library(get_library_path())
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
(probabilities,) = session.run(["probabilities"], {"texts": np.array(texts, dtype=object)})
print(json.dumps(probabilities.tolist()))
print(sorted(m for m in ("tensorflow", "cct_fast") if m in sys.modules))
"""


def _tokenize(encoder, texts):
    """What the ONNX tokenizer gives for ``texts``, and what ``encoder`` gives."""
    session = text_graph.session(text_graph.tokenizer_model(encoder))
    graph = session.run(None, {"texts": np.array(texts, dtype=object)})
    return graph, [np.asarray(value) for value in encoder(texts)]


def _nfkc_changes(text):
    """Whether NFKC case folding changes ``text`` beyond lower case (Python's Unicode tables
    are older than ICU's: a character Python does not know counts as changed)."""
    if any(unicodedata.category(c) == "Cn" for c in text):
        return True
    return unicodedata.normalize("NFKC", text).casefold() != text.lower()


def _differing_rows(graph, expected):
    return np.nonzero((graph[0] != expected[0]).any(1) | (graph[1] != expected[1]).any(1))[0]


@pytest.mark.parametrize("lower_case", [False, True])
def test_every_code_point_is_split_as_tensorflow_text_splits_it(lower_case):
    """Between two letters, each character is whitespace, punctuation, part of the word, or
    (case folded) removed, as FastWordpieceTokenizer's pretokenization has it; with case
    folding, only characters NFKC changes may differ."""
    encoder = TextEncoder(["[UNK]", "[PAD]", "a", "b", "##b"], seq_len=4, lower_case=lower_case)
    texts = ["a" + chr(c) + "b" for c in CODE_POINTS]
    graph, expected = _tokenize(encoder, texts)
    rows = _differing_rows(graph, expected)
    unexplained = [hex(CODE_POINTS[r]) for r in rows if not _nfkc_changes(chr(CODE_POINTS[r]))]
    print(f"{len(rows)} of {len(texts)} code points differ, all changed by NFKC")
    assert unexplained == []
    if not lower_case:
        assert len(rows) == 0
    # The three outcomes all occur: a, b split by whitespace; a, [UNK], b; one [UNK] word.
    outcomes = {tuple(row[mask]) for row, mask in zip(*expected, strict=True)}
    assert {(2, 3), (2, 0, 3), (0,)} <= outcomes


@pytest.fixture(scope="module")
def fortunes():
    """Every text of every fortunes file, and an encoder learned from an eighth of them (more
    only makes the fixture slower: the corpus check covers every text either way)."""
    folder = text_data.FORTUNES_DIR
    if not folder.is_dir():
        pytest.skip("the Debian package fortunes is not installed (apt-get install fortunes)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.suffix)
    texts = [text for path in files for text in text_data.fortune_texts(path)]
    return texts, TextEncoder.learn(texts[::8], vocab_size=4000, seq_len=64, min_count=3)


def test_the_whole_fortunes_corpus_tokenizes_id_for_id_as_the_encoder(fortunes):
    texts, encoder = fortunes
    graph, expected = _tokenize(encoder, texts)
    rows = _differing_rows(graph, expected)
    for row in rows:
        print("differs:", repr(texts[row][:120]))
    assert len(texts) > 10_000
    assert [texts[r] for r in rows if not _nfkc_changes(texts[r])] == []
    assert expected[1].sum() > 10 * len(texts)  # real texts, many pieces each


def test_awkward_texts_tokenize_as_the_encoder(fortunes):
    _, encoder = fortunes
    texts = [
        "",
        " \t\n ",
        "UPPER and lower, MiXeD!",
        "zzqqxx unknownish wordsmithery",  # unknown words: one [UNK] each, not pieces + [UNK]
        "a" * 100,
        "b" * 101,  # over max_bytes_per_token: [UNK]
        "word " * 200,  # truncated to seq_len
        "soft\u00adhyphen zero\u200bwidth",  # removed by case folding
        "(nested [brackets]) {and} $5 + 3 <= 9 | ~x ^y `z`",
        "中文字符 and emoji 🙂 and an em—dash",  # no NFKC change (… would be ...)
    ]
    graph, expected = _tokenize(encoder, texts)
    assert _differing_rows(graph, expected).tolist() == []
    empty, _ = _tokenize(encoder, [])
    assert empty[0].shape == (0, 64) and empty[0].dtype == np.int32 and empty[1].dtype == bool


@pytest.fixture(scope="module")
def raw_export(fortunes, tmp_path_factory):
    """A fresh text_cct_2 on the fortunes encoder, exported to take raw text."""
    _, encoder = fortunes
    model = cct_fast.create_model(
        "text_cct_2", vocab_size=encoder.vocab_size, seq_len=encoder.seq_len, num_classes=9
    )
    path = tmp_path_factory.mktemp("raw") / "fortunes.onnx"
    to_onnx(model, path, encoder=encoder)
    return model, encoder, path


def test_a_raw_text_export_computes_the_keras_logits(fortunes, raw_export, rng):
    texts, _ = fortunes
    model, encoder, path = raw_export
    chosen = [texts[i] for i in rng.choice(len(texts), 256, replace=False)]
    predictor = load_onnx(path, providers=["CPUExecutionProvider"])
    assert predictor.raw_text and not predictor.text
    logits = predictor.predict(chosen)
    expected = np.asarray(model(encoder(chosen), training=False))
    assert relative_error(logits, expected) < 1e-4
    probabilities = predictor.predict_probabilities(chosen)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(1) == expected.argmax(1)).all()
    with pytest.raises(TypeError, match="sequence of strings"):
        predictor.predict("one string, not a batch")


def test_a_deployment_runs_the_export_without_tensorflow(fortunes, raw_export):
    texts, _ = fortunes
    model, encoder, path = raw_export
    chosen = texts[:5] + [""]
    result = subprocess.run(
        [sys.executable, "-c", _DEPLOYED, str(path), json.dumps(chosen)],
        capture_output=True,
        text=True,
        check=True,
    )
    probabilities, imported = result.stdout.strip().splitlines()[-2:]
    assert imported == "[]"
    expected = np.asarray(model(encoder(chosen), training=False))
    expected = np.exp(expected - expected.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert relative_error(np.array(json.loads(probabilities)), expected) < 1e-4


def test_the_cli_exports_a_text_run_for_raw_text(topic_run, tmp_path, capsys):
    from cct_fast.train.evaluation import load_run

    run, _ = topic_run
    out = tmp_path / "topics.onnx"
    assert cli(["export", str(run.folder), "-o", str(out), "--raw-text"]) == 0
    assert "input 'texts', a batch of strings" in capsys.readouterr().out
    trained = load_run(run.folder)
    texts = ["a cow and a dog in the field", "", "UNSEEN words only, zzz", "the stock market"]
    logits = load_onnx(out, providers=["CPUExecutionProvider"]).predict(texts)
    expected = np.asarray(trained.model(trained.encoder(texts), training=False))
    assert relative_error(logits, expected) < 1e-4


def test_what_cannot_take_raw_text_is_refused(topic_run, fortunes, tmp_path, capsys):
    _, encoder = fortunes
    image_model = cct_fast.create_model("cct_2_3x2_32", num_classes=3)
    with pytest.raises(ExportError, match="takes images"):
        to_onnx(image_model, tmp_path / "a.onnx", encoder=encoder)
    text_model = cct_fast.create_model("text_cct_2", vocab_size=50, seq_len=16, num_classes=3)
    with pytest.raises(ExportError, match="not from the same run"):
        to_onnx(text_model, tmp_path / "b.onnx", encoder=encoder)
    assert cli(["export", "text_cct_2", "-o", str(tmp_path / "c.onnx"), "--raw-text"]) == 2
    assert "--raw-text exports a text run folder" in capsys.readouterr().err
    run, _ = topic_run
    args = ["export", str(run.folder), "-o", str(tmp_path / "d"), "--format", "savedmodel"]
    assert cli([*args, "--raw-text"]) == 2
    assert "--raw-text apply to ONNX exports only" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_without_onnxruntime_extensions_the_message_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)  # as if not installed
    text_graph.library_path.cache_clear()
    model = cct_fast.create_model("text_cct_2", vocab_size=4, seq_len=4, num_classes=2)
    encoder = TextEncoder(["[UNK]", "[PAD]", "a", "b"], seq_len=4)
    try:
        with pytest.raises(MissingDependency, match=r"cct-fast\[onnx-text\]"):
            to_onnx(model, tmp_path / "m.onnx", encoder=encoder)
    finally:
        text_graph.library_path.cache_clear()
    assert not any(tmp_path.iterdir())


_AFTER_TENSORFLOW = """
import sys
import numpy as np
import tensorflow  # noqa: F401
import onnxruntime_extensions  # loaded after TensorFlow, as a user might
from cct_fast.data.text_encoder import TextEncoder
from cct_fast.errors import ExportError
from cct_fast.export import text_graph
if sys.argv[1] == "used":  # the package's own library runs a regex first
    print("own library:", text_graph._regex_check(onnxruntime_extensions.get_library_path()))
encoder = TextEncoder(["[UNK]", "[PAD]", "a", "b"], seq_len=4)
try:
    ids, _ = text_graph.session(text_graph.tokenizer_model(encoder)).run(
        None, {"texts": np.array(["a,b"], dtype=object)})
    print(ids.tolist())
except ExportError as error:
    print("refused:", error)
"""


@pytest.mark.parametrize("package", ["imported", "used"])
def test_extensions_loaded_after_tensorflow_tokenize_right_or_refuse(package):
    """Loaded the usual way after TensorFlow, onnxruntime-extensions' RE2 calls bind to
    TensorFlow's, which replaces nothing. Imported so, the graph still tokenizes right (a
    private copy of the library); used so first, it may refuse, but never tokenize wrongly."""
    result = subprocess.run(
        [sys.executable, "-c", _AFTER_TENSORFLOW, package],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    print("\n".join(lines[-2:]))
    if package == "imported":
        assert lines[-1] == "[[2, 0, 3, 1]]"
    else:
        assert lines[-1] == "[[2, 0, 3, 1]]" or lines[-1].startswith(
            "refused: onnxruntime-extensions' regular expressions do not run on its own RE2"
        )
