"""fkd: facial keypoint detection you can see, train and trust.

    import fkd
    lm = fkd.Landmarker()                  # fkd.DEFAULT_MODEL; fkd.MODELS lists the others
    faces = lm.predict("photo.jpg")        # list[Face]: box, score, keypoints (original pixels)
"""
from fkd.io import ImageError, load_image
from fkd.landmarker import Face, Landmarker, Settings
from fkd.weights import WeightsError
from fkd.zoo import DEFAULT_MODEL, MODELS

__all__ = ["DEFAULT_MODEL", "MODELS", "Face", "ImageError", "Landmarker", "Settings", "WeightsError", "load_image"]
