"""fkd: facial keypoint detection you can see, train and trust.

The public surface is small on purpose:

    import fkd
    lm = fkd.Landmarker()                  # weights from weights/, detector shipped in weights/
    faces = lm.predict("photo.jpg")        # list[Face]: box, score, keypoints (original pixels)
"""
import importlib as _importlib

# imported when first used: `python -m fkd.calibration` (a module fkd.landmarker imports) would
# otherwise be in sys.modules before it runs as __main__, and Python warns about that
_EXPORTS = {"Face": "fkd.landmarker", "Landmarker": "fkd.landmarker", "WeightsError": "fkd.weights",
            "ImageError": "fkd.io", "load_image": "fkd.io"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    try:  # fkd.landmarker, fkd.io, ... after a bare `import fkd`, as when this file imported them
        return _importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
