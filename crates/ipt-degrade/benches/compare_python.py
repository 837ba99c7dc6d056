#!/usr/bin/env python3
"""Time Pillow and OpenCV on the same resize operations as `benches/degrade.rs`.

Setup (outside the repository):
    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install pillow opencv-python-headless numpy
Run:
    /tmp/pyvenv/bin/python crates/ipt-degrade/benches/compare_python.py [--repeat N]

Input: a random 1024x1024 RGB uint8 image. Operations: shrink to 256x256 (x0.25) and enlarge
to 4096x4096 (x4) with Pillow `Image.resize(..., Image.BICUBIC)` (single-threaded by design) and
OpenCV `cv2.resize` with INTER_CUBIC and INTER_AREA, OpenCV at 1 and 2 threads. Prints the median
time and throughput in input megapixels per second (1024x1024 = 1.048576 MP), the unit criterion
reports for the Rust benches.
"""
import argparse
import statistics
import time

import PIL
import cv2
import numpy as np
from PIL import Image

MP = 1024 * 1024 / 1e6


def bench(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8)
    pil = Image.fromarray(arr)
    print(f"Pillow {PIL.__version__} OpenCV {cv2.__version__} numpy {np.__version__}")
    rows = []
    for name, size in [("down_x0.25", 256), ("up_x4", 4096)]:
        t = bench(lambda: pil.resize((size, size), Image.BICUBIC), args.repeat)
        rows.append((f"Pillow BICUBIC {name}", t))
        for threads in (1, 2):
            cv2.setNumThreads(threads)
            for interp, iname in [(cv2.INTER_CUBIC, "INTER_CUBIC"), (cv2.INTER_AREA, "INTER_AREA")]:
                t = bench(lambda: cv2.resize(arr, (size, size), interpolation=interp), args.repeat)
                rows.append((f"OpenCV {iname} {threads}T {name}", t))
    for label, t in rows:
        print(f"{label:<36} {t * 1e3:9.2f} ms  {MP / t:9.1f} MP/s")


if __name__ == "__main__":
    main()
