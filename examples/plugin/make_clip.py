"""Write a short test clip: a bright square moving right over a dark background, 24 frames at
12 fps. Usage: python make_clip.py OUT.mp4"""

import sys

import av
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else "square.mp4"
with av.open(out, "w") as container:
    stream = container.add_stream("mpeg4", rate=12)
    stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
    for i in range(24):
        img = np.full((96, 160, 3), 30, np.uint8)
        x = 10 + 4 * i
        img[32:64, x:x + 32] = 220
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
print(f"wrote {out}")
