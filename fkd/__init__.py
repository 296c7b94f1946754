"""fkd: facial keypoint detection you can see, train and trust.

The public surface is small on purpose:

    import fkd
    lm = fkd.Landmarker()                  # weights from weights/, detector shipped in weights/
    faces = lm.predict("photo.jpg")        # list[Face]: box, score, keypoints (original pixels)
"""
from fkd.io import ImageError, load_image
from fkd.landmarker import Face, Landmarker, WeightsError

__all__ = ["Face", "ImageError", "Landmarker", "WeightsError", "load_image"]
