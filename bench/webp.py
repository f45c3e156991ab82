"""WEBP encoding cost at the three sizes, by Pillow `method` (the speed/size trade-off).

    .venv/bin/python bench/webp.py
"""

import io
import statistics
import time

from PIL import Image, ImageDraw

SIZES = {"portrait": (832, 1280), "square": (1024, 1024), "landscape": (1280, 832)}
QUALITY = 90
RUNS = 7


def sample_image(width, height):
    """A busy picture (gradients and shapes), closer to a real render than a flat colour."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for i in range(0, width, 37):
        draw.ellipse([i, (i * 7) % height, i + 90, (i * 7) % height + 140], fill=((i * 3) % 255, 120, (i * 5) % 255))
    return image


def main():
    print(f"WEBP encode, quality {QUALITY}, median of {RUNS} runs (ms) and size (KiB)")
    print(f"{'orientation':<11} " + " ".join(f"{'m' + str(m) + ' ms':>8} {'KiB':>6}" for m in range(5)))
    for name, (width, height) in SIZES.items():
        image = sample_image(width, height)
        cells = []
        for method in range(5):
            times, size = [], 0
            for _ in range(RUNS):
                buffer = io.BytesIO()
                start = time.perf_counter()
                image.save(buffer, format="WEBP", quality=QUALITY, method=method)
                times.append((time.perf_counter() - start) * 1000)
                size = buffer.tell()
            cells.append(f"{statistics.median(times):>8.1f} {size / 1024:>6.0f}")
        print(f"{name:<11} " + " ".join(cells))


if __name__ == "__main__":
    main()
