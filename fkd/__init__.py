"""fkd: facial keypoint detection you can see, train and trust.

The public surface is small on purpose:

    import fkd
    lm = fkd.Landmarker()                  # weights from weights/, detector shipped in weights/
    faces = lm.predict("photo.jpg")        # list[Face]: box, score, keypoints (original pixels)
"""
import importlib

# imported when first used: `python -m fkd.calibration` (a module fkd.landmarker imports) would
# otherwise be in sys.modules before it runs as __main__, and Python warns about that
_EXPORTS = {"Face": "fkd.landmarker", "Landmarker": "fkd.landmarker", "WeightsError": "fkd.weights",
            "ImageError": "fkd.io", "load_image": "fkd.io"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fkd' has no attribute {name!r}")
