"""NudeNet's detector (a YOLOv8n model exported to ONNX, shipped inside the `nudenet` wheel) run on
the CPU with onnxruntime. Installed with the optional `[safety]` extra; nothing is downloaded.

Licence: the wheel's metadata says MIT, but the LICENSE files inside it and the NudeNet repository
are AGPL-3.0 since v3, and the 320n model is derived from Ultralytics YOLOv8 (AGPL-3.0). That is
why this is an optional extra an operator chooses to install.
"""

import functools
import io

from PIL import Image

from ..images import MAX_INPUT_PIXELS, InvalidImage

# NudeNet's labels that mean the image is not safe for work. Covered parts, faces, feet, belly
# and armpits are not: the safe-rating anime the API draws is full of them.
EXPOSED_LABELS = frozenset({
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "BUTTOCKS_EXPOSED",
})
MODEL = "nudenet-320n"


@functools.cache
def detector():
    """One ONNX session per process: building it reads the 12 MB model (~100 ms). NudeNet and
    onnxruntime are the optional `[safety]` extra, imported here on first use, in the worker."""
    from nudenet import NudeDetector

    return NudeDetector()


def detect(data: bytes) -> list[dict]:
    """NudeNet's detections ({"class", "score", "box"}) for encoded image bytes."""
    return detector().detect(_bgr_pixels(data))


def nsfw_labels(detections: list[dict], *, threshold: float) -> list[str]:
    """The NSFW labels detected with at least `threshold` confidence, most confident first."""
    found = sorted((d for d in detections if d["class"] in EXPOSED_LABELS and d["score"] >= threshold),
                   key=lambda d: -d["score"])
    return list(dict.fromkeys(d["class"] for d in found))


def _bgr_pixels(data: bytes):
    """Decoded with Pillow under the same pixel cap as the rest of the pipeline, then laid out as
    OpenCV's imread gives it (BGR, uint8), which is what NudeNet's preprocessing expects."""
    import numpy as np  # with the [safety] extra

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise InvalidImage(f"image of {image.width}x{image.height} is too large")
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1])
