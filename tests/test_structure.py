"""The package's shape: imports go downward through its layers, nothing inside imports the
package itself, no import cycle, and the kernels' TensorFlow glue says each thing once."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cct_fast"
# Bottom to top. A module may import from its own part or from a lower one. lazy (the packages'
# names imported on first use) imports nothing of cct_fast; zoo sits above weights because
# create_model loads weights, and data beside it (its text encoder writes atomically); testing
# above zoo because its comparisons build models; export and train are peers and do not import
# each other.
LAYERS = {
    "errors": 0,
    "lazy": 0,
    "base": 1,
    "compute": 1,
    "core": 2,
    "weights": 3,
    "zoo": 4,
    "data": 4,
    "testing": 5,
    "export": 6,
    "train": 6,
    "cli": 7,
    "__init__": 7,
}
TOP = ("cct_fast/__init__.py", "cct_fast/cli.py")


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path, modules):
    """(line, imported cct_fast module, whether it names the top-level package itself)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in modules
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "cct_fast"]
    return found


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _import_graph():
    modules = _modules()
    return {
        name: {target for _, target in _imports(path, modules)} for name, path in modules.items()
    }


def test_every_part_of_the_package_has_a_layer():
    assert {_part(name) for name in _modules()} == set(LAYERS)


def test_imports_go_downward_and_only_the_top_imports_the_package():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        relative = path.relative_to(ROOT).as_posix()
        for line, target in _imports(path, modules):
            where = f"{relative}:{line} imports {target}"
            if target == "cct_fast":
                if relative not in TOP:
                    wrong.append(f"{where}: only {' and '.join(TOP)} import the package itself")
                continue
            source, imported = _part(name), _part(target)
            if LAYERS[imported] > LAYERS[source] or (
                LAYERS[imported] == LAYERS[source] and imported != source
            ):
                wrong.append(f"{where}: {imported} is not below {source}")
    assert not wrong, "\n".join(wrong)


def test_the_modules_import_each_other_without_a_cycle():
    graph = _import_graph()
    state = {}  # module -> "visiting" or "done"

    def visit(module, trail):
        if state.get(module) == "done":
            return
        if state.get(module) == "visiting":
            cycle = trail[trail.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[module] = "visiting"
        for target in sorted(graph.get(module, ())):
            # a package's __init__ importing its own modules is how it re-exports them
            if target != "cct_fast" and not module.startswith(target + "."):
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_the_walk_sees_imports_inside_functions():
    """The cycle this test suite was written to stop hid in a function body."""
    source = "def f():\n    from cct_fast.zoo import create_model\n"
    path = ROOT / "build" / "structure_probe.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    try:
        assert _imports(path, _modules()) == [(2, "cct_fast.zoo")]
    finally:
        path.unlink()


def _repeated_runs(paths, length=6):
    """Runs of ``length`` lines (stripped, none blank or a lone brace) that appear twice."""
    seen, repeated = {}, []
    for path in paths:
        lines = [line.strip() for line in path.read_text().splitlines()]
        for start in range(len(lines) - length + 1):
            run = tuple(lines[start : start + length])
            if any(line in ("", "}", "{", "};") or line.startswith("//") for line in run):
                continue
            where = f"{path.name}:{start + 1}"
            if run in seen:
                repeated.append(f"{where} repeats {seen[run]}")
            else:
                seen[run] = where
    return repeated


def test_the_kernels_tensorflow_glue_writes_nothing_twice():
    glue = sorted((ROOT / "kernels" / "tf").glob("*.*"))
    assert len(glue) >= 4
    assert not _repeated_runs(glue)


def test_the_repetition_check_finds_a_copied_block(tmp_path):
    block = "".join(f"int step_{i} = {i};\n" for i in range(6))
    first, second = tmp_path / "a.cc", tmp_path / "b.cc"
    first.write_text("void f() {\n" + block + "}\n")
    second.write_text("void g() {\n" + block + "}\n")
    assert _repeated_runs([first, second]) == ["b.cc:2 repeats a.cc:2"]


def test_the_version_is_written_once():
    """pyproject.toml reads it from cct_fast.__version__, so the installed package has it."""
    import importlib.metadata

    import cct_fast

    assert "version=" not in (ROOT / "setup.py").read_text()
    assert 'version = { attr = "cct_fast.__version__" }' in (ROOT / "pyproject.toml").read_text()
    assert importlib.metadata.version("cct-fast") == cct_fast.__version__


# The independent references the tests compare with, written from the official files.
REFERENCES = "cct_fast/testing/"


def _tables_of_official_names(path, names):
    """(line, official names) of each dict or set literal in ``path`` keyed by official
    names: a second table a new name would have to be added to."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        keys = (
            node.keys
            if isinstance(node, ast.Dict)
            else node.elts
            if isinstance(node, ast.Set)
            else ()
        )
        named = [k.value for k in keys if isinstance(k, ast.Constant) and k.value in names]
        if named:
            found.append((node.lineno, named))
    return found


def test_only_the_model_cards_hold_an_official_names_facts():
    from cct_fast.core.names import list_models

    names = set(list_models())
    cards = PACKAGE / "core" / "cards.py"
    tables = {
        path.relative_to(ROOT).as_posix(): _tables_of_official_names(path, names)
        for path in PACKAGE.rglob("*.py")
        if path != cards and not path.relative_to(ROOT).as_posix().startswith(REFERENCES)
    }
    assert {path: found for path, found in tables.items() if found} == {}


def test_the_table_check_finds_a_table_keyed_by_official_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        'URLS = {\n    "cct_7_3x1_32": "a",\n    "other": "b",\n}\nKEPT = {"cct_2_3x2_32"}\n'
    )
    names = {"cct_7_3x1_32", "cct_2_3x2_32"}
    assert _tables_of_official_names(probe, names) == [(1, ["cct_7_3x1_32"]), (5, ["cct_2_3x2_32"])]


def test_the_image_and_text_models_share_their_encoder_code():
    """The shared fields, their checks and what derives from them are EncoderConfig's, and the
    encoder, pooling and head EncoderClassifier's: neither kind of model writes them again."""
    from cct_fast.core.config import CCTConfig, EncoderConfig
    from cct_fast.core.encoder_classifier import EncoderClassifier
    from cct_fast.core.model import CCT
    from cct_fast.core.text_config import TextConfig
    from cct_fast.core.text_model import TextCCT

    def code(cls):
        return {
            name
            for name, value in vars(cls).items()
            if not name.startswith("__") and (callable(value) or isinstance(value, property))
        }

    extended = {"_problems", "width_field"}  # each adds its own checks and its width's name
    assert len(code(EncoderConfig)) >= 12
    for config_type in (CCTConfig, TextConfig):
        assert code(config_type) & code(EncoderConfig) <= extended, config_type.__name__
    assert {"_add_encoder", "_add_class_token", "_classify", "get_config"} <= code(
        EncoderClassifier
    )
    for model_type in (CCT, TextCCT):
        assert not code(model_type) & (code(EncoderClassifier) - {"build", "call"})
    core = PACKAGE / "core"
    assert not _repeated_runs([core / "config.py", core / "text_config.py"])
