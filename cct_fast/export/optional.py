"""The optional packages export needs, imported with one message that says how to get them."""


def require(module):
    """``import module``, or an ImportError naming the extra that installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"ONNX export needs {module}: pip install 'cct-fast[onnx]' (or '[gpu]')."
        ) from None
