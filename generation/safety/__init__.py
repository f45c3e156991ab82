"""The image safety check that applies to every backend when allowNSFW is false.

Without the optional `[safety]` extra installed there is no classifier, and the check relies on
the prompt policy and the backend's own checker (Runware's NSFWContent).
"""

from ..backends.base import BackendImage


def is_flagged(image: BackendImage) -> bool:
    """True when the image must not be returned to a caller who asked for allowNSFW=false."""
    return bool(image.nsfw)
