"""A run's :class:`~cct_fast.data.text_encoder.TextEncoder` as an ONNX graph: a batch of
strings in, ``(token_ids, mask)`` out, in onnxruntime-extensions' operators and plain ONNX, so
that a text export takes raw text and a deployment carries no TensorFlow.

``TextEncoder`` case-folds, splits on whitespace and punctuation (tensorflow-text's
``FastWordpieceTokenizer`` pretokenization), maps each word to WordPiece ids, the whole word
to ``[UNK]`` where it cannot be pieced, and pads to ``seq_len`` with id 1. The graph does each
step with an operator that exists in ONNX Runtime:

1. ``StringLower`` (lower_case encoders): Unicode lower case; then ``StringRegexReplace``
   removes the default-ignorable characters (soft hyphen, zero-width spaces), as NFKC case
   folding does.
2. ``StringRegexReplace`` (RE2): a space on each side of each punctuation character (general
   category P, ASCII ``$+<=>^`|~`` and the CJK ideographs, as tensorflow-text has it), and
   each whitespace character (category Z, tab to carriage return, U+0085) made a space.
3. ``StringECMARegexSplitWithOffsets``: the words of each text and where each text's words begin.
   (The RE2 split operator of onnxruntime-extensions 0.15 does not split.)
4. ``WordpieceTokenizer``: each word's pieces, then ``LabelEncoder`` their ids. This operator
   keeps the pieces found before one that fails and adds ``[UNK]``; the graph turns such a
   word into one ``[UNK]``, as tensorflow-text does.
5. Gathers that lay the pieces out as ``(batch, seq_len)``, padded with id 1.

Without case folding the two agree on every Unicode code point; on the whole fortunes
corpus (15,217 texts) one text differs, by an "ß". Where they differ
(:data:`KNOWN_DIFFERENCES`) is in what ONNX Runtime's string operators cannot express:
``case_fold_utf8`` is NFKC case folding ("ß" to "ss", "ﬁ" to "fi", fullwidth letters to
ASCII), where ``StringLower`` maps each character to its lower case.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import numpy as np

from cct_fast.base.optional import require
from cct_fast.data.text_encoder import PADDING_ID, RESERVED_TOKENS
from cct_fast.errors import ExportError
from cct_fast.export.examples import TEXT_INPUTS

TEXTS_INPUT = "texts"
OUTPUTS = ("logits", "probabilities")
DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' operators
ML_DOMAIN = "ai.onnx.ml"  # LabelEncoder
UNKNOWN_ID = RESERVED_TOKENS.index("[UNK]")
# What tensorflow-text's pretokenization splits off as one-character words: Unicode
# punctuation (general category P; the ranges after it are punctuation added to Unicode after
# the tables of onnxruntime-extensions' RE2, which tensorflow-text's ICU has), the ASCII
# symbols BERT counts as punctuation, and the CJK ideograph blocks.
PUNCTUATION = (
    r"\p{P}\x{61D}\x{1B4E}-\x{1B4F}\x{1B7D}-\x{1B7F}\x{2E53}-\x{2E5D}\x{10D6E}"
    r"\x{10F86}-\x{10F89}\x{113D4}-\x{113D5}\x{113D7}-\x{113D8}\x{116B9}\x{11B00}-\x{11B09}"
    r"\x{11BE1}\x{11F43}-\x{11F4F}\x{12FF1}-\x{12FF2}\x{16D6D}-\x{16D6F}\x{1E5FF}"
    r"$+<=>^`|~"
    r"\x{3400}-\x{4DBF}\x{4E00}-\x{9FFF}\x{F900}-\x{FAFF}"
    r"\x{20000}-\x{2A6DF}\x{2A700}-\x{2CEAF}\x{2F800}-\x{2FA1F}"
)
# Default_Ignorable_Code_Point (soft hyphen, zero-width spaces, joiners, variation selectors,
# tags): NFKC case folding removes them, so a lower_case encoder does not see them.
IGNORABLE = (
    r"\x{AD}\x{34F}\x{61C}\x{115F}-\x{1160}\x{17B4}-\x{17B5}\x{180B}-\x{180F}\x{200B}-\x{200F}"
    r"\x{202A}-\x{202E}\x{2060}-\x{206F}\x{3164}\x{FE00}-\x{FE0F}\x{FEFF}\x{FFA0}\x{FFF0}-\x{FFF8}"
    r"\x{1BCA0}-\x{1BCA3}\x{1D173}-\x{1D17A}\x{E0000}-\x{E0FFF}"
)
WHITESPACE = r"\t-\r\x{85}\p{Z}"
# FastWordpieceTokenizer's max_bytes_per_token: a longer word is [UNK]. WordpieceTokenizer
# counts characters, so the two agree on words of one-byte characters.
MAX_WORD_LENGTH = 100
KNOWN_DIFFERENCES = (
    "case folding: TextEncoder applies NFKC case folding (case_fold_utf8) and the graph "
    "Unicode lower case (StringLower), so a text holding a character NFKC changes (ß, "
    "ligatures, fullwidth and other compatibility forms: 716 code points in tensorflow-text "
    "2.21, or a letter and a combining accent, which NFKC composes) can tokenize differently",
    f"a word over {MAX_WORD_LENGTH} bytes but not over {MAX_WORD_LENGTH} characters is [UNK] "
    "in TextEncoder and pieced in the graph",
    "ONNX Runtime's string tensors end a text at a NUL character",
)


def _extensions_package():
    """The onnxruntime_extensions package, or the message that names the extra."""
    return require(
        "onnxruntime_extensions",
        "Raw-text ONNX (the tokenizer in the graph)",
        "'cct-fast[onnx-text]'",
    )


def session(proto):
    """An ONNX Runtime CPU session of ``proto`` with onnxruntime-extensions' operators."""
    return _session(proto, library_path())


def _session(proto, library):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    return ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


@functools.cache
def library_path() -> str:
    """The path of onnxruntime-extensions' operator library, loaded so that its regular
    expressions run on its own RE2.

    TensorFlow loads its libraries with their symbols global, RE2's among them, and a library
    loaded after it the usual way calls TensorFlow's RE2 through its own headers: its regex
    operators then silently replace and split nothing. So the library is loaded with
    ``RTLD_DEEPBIND`` (glibc), which binds it to its own RE2; where its Python package has
    loaded it already, a private copy of the file is loaded that way instead. Once the
    package's own load has run a regex after TensorFlow's, even the copy goes wrong in that
    process (measured with onnxruntime-extensions 0.15.2 and TensorFlow 2.21): a check of one
    replace refuses that case.
    """
    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None:
        _extensions_package()  # raises the message that names the extra
    folder = Path(spec.origin).parent
    paths = [folder / f"_extensions_pydll{suffix}" for suffix in EXTENSION_SUFFIXES]
    found = next((p for p in paths if p.is_file()), None)
    path = str(found) if found else _extensions_package().get_library_path()
    if "onnxruntime_extensions" in sys.modules:  # loaded the usual way, perhaps after TF
        path = _private_copy(path)
    ctypes.CDLL(path, mode=getattr(os, "RTLD_DEEPBIND", 0) | os.RTLD_LOCAL)
    spaced = _regex_check(path)
    if spaced != SPACED:
        raise ExportError(
            "onnxruntime-extensions' regular expressions do not run on its own RE2 in this "
            f"process (a test replace gave {spaced!r} where {SPACED!r} is right), so its "
            "graphs would tokenize wrongly: it ran after TensorFlow had loaded. Run the "
            "raw-text graph in a process without TensorFlow, or one that has not used "
            "onnxruntime-extensions before cct_fast loads it."
        )
    return path


def _private_copy(path):
    """A copy of the library at ``path``, removed when the process ends: loading it is
    loading the library afresh, however the original was loaded."""
    folder = tempfile.mkdtemp(prefix="cct_fast_extensions_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return shutil.copy(path, folder)


# What the regex check's replace must make of "a,b".
SPACED = "a , b"


def _regex_check(path):
    """What the library at ``path`` makes of spacing the punctuation of ``"a,b"``."""
    from onnx import TensorProto, helper

    build = _Builder()
    build.contrib(
        "StringRegexReplace", [TEXTS_INPUT, build.string(r"(\p{P})"), build.string(r" \1 ")]
    )
    graph = helper.make_graph(
        build.nodes,
        "regex_check",
        [helper.make_tensor_value_info(TEXTS_INPUT, TensorProto.STRING, [1])],
        [helper.make_tensor_value_info(build.nodes[0].output[0], TensorProto.STRING, [1])],
        build.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    )
    check = _session(model, path)
    return check.run(None, {TEXTS_INPUT: np.array(["a,b"], dtype=object)})[0][0]


def with_tokenizer(proto, encoder):
    """``proto``, a text model's ``(token_ids, mask) -> logits`` graph, with ``encoder``'s
    tokenizer before it and a softmax after it: input ``texts``, outputs ``logits`` and
    ``probabilities``, each (batch, classes)."""
    from onnx import helper

    graph = proto.graph
    model_inputs = {value.name: value for value in graph.input}
    batch = model_inputs[TEXT_INPUTS[0]].type.tensor_type.shape.dim[0]
    batch_size = batch.dim_value if batch.HasField("dim_value") else None
    opset = next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))
    tokenizer = tokenizer_model(encoder, batch_size, opset)
    (logits,) = graph.output
    nodes = [
        *tokenizer.graph.node,
        *graph.node,
        helper.make_node("Identity", [logits.name], [OUTPUTS[0]]),
        helper.make_node("Softmax", [logits.name], [OUTPUTS[1]], axis=-1),
    ]
    classes = logits.type.tensor_type.shape.dim[1]
    shape = [batch_size, classes.dim_value if classes.HasField("dim_value") else None]
    composed = helper.make_graph(
        nodes,
        graph.name,
        list(tokenizer.graph.input),
        [
            helper.make_tensor_value_info(name, logits.type.tensor_type.elem_type, shape)
            for name in OUTPUTS
        ],
        [*tokenizer.graph.initializer, *graph.initializer],
        value_info=[*graph.value_info, *graph.input],
    )
    versions = {}
    for entry in [*proto.opset_import, *tokenizer.opset_import]:
        domain = entry.domain or ""
        versions[domain] = max(versions.get(domain, 0), entry.version)
    return helper.make_model(
        composed,
        opset_imports=[
            helper.make_opsetid(domain, version) for domain, version in versions.items()
        ],
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
    )


def check_texts(encoder, count, rng):
    """``count`` texts that exercise ``encoder``'s graph: words of its vocabulary, whole and
    joined from pieces, in mixed case, with punctuation, unknown words, empty texts and texts
    longer than ``seq_len``."""
    words = [entry for entry in encoder.vocabulary[len(RESERVED_TOKENS) :] if entry[:2] != "##"]
    suffixes = [entry[2:] for entry in encoder.vocabulary if entry[:2] == "##"]
    words = words or ["word"]
    texts = ["", " \t ", "Zqxjk, zqxjk!", "A-B's (c) $5 + 3 <= 9?"]
    while len(texts) < count:
        length = int(rng.integers(1, encoder.seq_len + 8))
        chosen = [str(rng.choice(words)) for _ in range(length)]
        if suffixes:
            chosen[0] += str(rng.choice(suffixes))
        text = " ".join(word.upper() if rng.random() < 0.2 else word for word in chosen)
        texts.append(text + str(rng.choice([".", "?", "!", " :-)", ""])))
    return texts[:count]


def tokenizer_model(encoder, batch_size=None, opset=17):
    """The ONNX model of ``encoder``: input ``texts``, strings (batch,); outputs ``token_ids``
    int32 and ``mask`` bool, each (batch, ``seq_len``), as ``encoder(texts)`` gives them."""
    from onnx import TensorProto, helper

    build = _Builder()
    texts = TEXTS_INPUT
    if encoder.lower_case:
        texts = build.contrib("StringLower", [texts])
        texts = build.contrib(
            "StringRegexReplace", [texts, build.string(f"[{IGNORABLE}]"), build.string("")]
        )
    pattern = build.string(f"([{PUNCTUATION}])|[{WHITESPACE}]")
    spaced = build.contrib("StringRegexReplace", [texts, pattern, build.string(r" \1 ")])
    words, _, _, text_splits = build.contrib(
        "StringECMARegexSplitWithOffsets",
        [spaced, build.string(" +"), build.string("")],
        outputs=4,
    )
    pieces, word_splits, _, _ = build.contrib(
        "WordpieceTokenizer",
        [words, build.constant(np.zeros(0, np.int64))],
        outputs=4,
        vocab=json.dumps({piece: i for i, piece in enumerate(encoder.vocabulary)}),
        suffix_indicator="##",
        unknown_token=RESERVED_TOKENS[UNKNOWN_ID],
        max_input_chars_per_word=MAX_WORD_LENGTH,
    )
    ids = build.node(
        "LabelEncoder",
        [pieces],
        domain=ML_DOMAIN,
        keys_strings=encoder.vocabulary,
        values_int64s=list(range(len(encoder.vocabulary))),
        default_int64=UNKNOWN_ID,
    )
    ids, word_kept = _whole_words_unknown(build, ids, word_splits)
    # Pieces kept up to each word boundary, then up to each text boundary.
    kept_before_word = build.node(
        "Concat",
        [
            build.constant(np.zeros(1, np.int64)),
            build.node("CumSum", [word_kept, build.constant(np.int64(0))]),
        ],
        axis=0,
    )
    kept_at_text = build.node("Gather", [kept_before_word, text_splits])
    starts = build.slice(kept_at_text, 0, -1)
    ends = build.slice(kept_at_text, 1, None)
    positions = build.node(
        "Add",
        [build.unsqueeze(starts, 1), build.constant(np.arange(encoder.seq_len, dtype=np.int64))],
    )
    mask = build.node("Less", [positions, build.unsqueeze(ends, 1)])
    # Padding reads the element after the last piece: PADDING_ID.
    padded = build.node("Concat", [ids, build.constant(np.array([PADDING_ID], np.int64))], axis=0)
    past_end = build.node("Shape", [ids])
    positions = build.node("Where", [mask, positions, past_end])
    token_ids = build.node(
        "Cast", [build.node("Gather", [padded, positions])], to=TensorProto.INT32
    )
    build.nodes.append(helper.make_node("Identity", [token_ids], [TEXT_INPUTS[0]]))
    build.nodes.append(helper.make_node("Identity", [mask], [TEXT_INPUTS[1]]))
    shape = [batch_size, encoder.seq_len]
    graph = helper.make_graph(
        build.nodes,
        "cct_fast_tokenizer",
        [helper.make_tensor_value_info(TEXTS_INPUT, TensorProto.STRING, [batch_size])],
        [
            helper.make_tensor_value_info(TEXT_INPUTS[0], TensorProto.INT32, shape),
            helper.make_tensor_value_info(TEXT_INPUTS[1], TensorProto.BOOL, shape),
        ],
        build.initializers,
    )
    return helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", opset),
            helper.make_opsetid(ML_DOMAIN, 3),
            helper.make_opsetid(DOMAIN, 1),
        ],
    )


def _whole_words_unknown(build, ids, word_splits):
    """Each word with an ``[UNK]`` piece as one ``[UNK]``: ``(ids kept, pieces kept per
    word)``. Every word has at least one piece, so ``word_splits`` rises strictly."""
    from onnx import TensorProto

    word_starts = build.slice(word_splits, 0, -1)
    word_ends = build.slice(word_splits, 1, None)
    later_starts = build.slice(word_starts, 1, None)  # every word's start but the first's
    piece_count = build.node("Shape", [ids])
    # The word of each piece: a 1 at each word's first piece but the first, summed.
    starts_marked = build.node(
        "ScatterElements",
        [
            build.node("ConstantOfShape", [piece_count], value=_int64_tensor(0)),
            later_starts,
            build.node(
                "ConstantOfShape",
                [build.node("Shape", [later_starts])],
                value=_int64_tensor(1),
            ),
        ],
    )
    word_of_piece = build.node("CumSum", [starts_marked, build.constant(np.int64(0))])
    unknown = build.node(
        "Cast",
        [build.node("Equal", [ids, build.constant(np.int64(UNKNOWN_ID))])],
        to=TensorProto.INT64,
    )
    unknown_before = build.node(
        "Concat",
        [
            build.constant(np.zeros(1, np.int64)),
            build.node("CumSum", [unknown, build.constant(np.int64(0))]),
        ],
        axis=0,
    )
    word_unknown = build.node(
        "Greater",
        [
            build.node(
                "Sub",
                [
                    build.node("Gather", [unknown_before, word_ends]),
                    build.node("Gather", [unknown_before, word_starts]),
                ],
            ),
            build.constant(np.int64(0)),
        ],
    )
    in_unknown_word = build.node("Gather", [word_unknown, word_of_piece])
    piece_index = build.node(
        "Range",
        [
            build.constant(np.int64(0)),
            build.node("Squeeze", [piece_count]),
            build.constant(np.int64(1)),
        ],
    )
    first_of_word = build.node(
        "Equal", [build.node("Gather", [word_starts, word_of_piece]), piece_index]
    )
    keep = build.node("Or", [build.node("Not", [in_unknown_word]), first_of_word])
    ids = build.node(
        "Compress",
        [build.node("Where", [in_unknown_word, build.constant(np.int64(UNKNOWN_ID)), ids]), keep],
        axis=0,
    )
    pieces_per_word = build.node("Sub", [word_ends, word_starts])
    word_kept = build.node("Where", [word_unknown, build.constant(np.int64(1)), pieces_per_word])
    return ids, word_kept


def _int64_tensor(value):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([value], np.int64))


class _Builder:
    """Nodes and constants of a graph under construction, each output named in turn."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def _name(self, kind):
        return f"tokenizer/{kind}_{len(self.nodes) + len(self.initializers)}"

    def node(self, op_type, inputs, outputs=1, domain="", **attributes):
        from onnx import helper

        names = [self._name(op_type) + (f":{i}" if outputs > 1 else "") for i in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, inputs, names, domain=domain, name=names[0], **attributes)
        )
        return names if outputs > 1 else names[0]

    def contrib(self, op_type, inputs, outputs=1, **attributes):
        return self.node(op_type, inputs, outputs, domain=DOMAIN, **attributes)

    def constant(self, array):
        from onnx import numpy_helper

        name = self._name("constant")
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def string(self, text):
        from onnx import TensorProto, helper

        name = self._name("string")
        self.initializers.append(helper.make_tensor(name, TensorProto.STRING, [], [text.encode()]))
        return name

    def slice(self, tensor, start, end):
        end = np.iinfo(np.int64).max if end is None else end
        return self.node(
            "Slice",
            [
                tensor,
                self.constant(np.array([start], np.int64)),
                self.constant(np.array([end], np.int64)),
            ],
        )

    def unsqueeze(self, tensor, axis):
        return self.node("Unsqueeze", [tensor, self.constant(np.array([axis], np.int64))])
