"""Face alignment onto the ArcFace five-point template.

We call insightface's `norm_crop` (a similarity transform estimated by
scikit-image onto `arcface_dst`) instead of keeping a copy: both built-in
recognizers and any ArcFace-compatible drop-in model were trained on crops
made exactly this way, so a divergent copy would cost accuracy silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
from insightface.utils import face_align

from models.face import DetectedFace

# insightface calls the scikit-image API that 0.26 deprecated; the result is
# unchanged, and the warning would otherwise appear on every CLI run.
warnings.filterwarnings(
    "ignore", message=r"`estimate` is deprecated", category=FutureWarning, module="insightface"
)

ALIGNED_SIZE = 112


def align_face(
    image: npt.NDArray[np.uint8], face: DetectedFace, size: int = ALIGNED_SIZE
) -> npt.NDArray[np.uint8]:
    """The face warped onto the template: a size x size crop in the image's colour order."""
    crop: npt.NDArray[np.uint8] = face_align.norm_crop(image, face.landmarks, image_size=size)
    return crop
