"""A corpus of hostile inputs, generated into a folder (nothing large is kept in git).

``build_corpus(root)`` writes every case under ``root`` and returns them as ``Case`` records:
what the file is, whether it is given to Loupe as media or as a model, the exit status
``loupe analyze`` must give and the words its one error line must contain (the specific
reason, not just "failed"). Run it by hand to look at the files:

    python -m tests.hostile.corpus /tmp/hostile
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import pydicom
from onnx import TensorProto, helper, numpy_helper
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from loupe.base.media import clip_path
from loupe.inference.card import InputSpec, ModelCard, embed_card
from tests.helpers import make_argmax_model


@dataclass(frozen=True)
class Case:
    """One hostile input.

    kind: ``media`` (given as an input), ``model`` (given as ``--model``) or ``mixed`` (a
    folder of good and bad files). expect: words the error line must contain (case-
    insensitive) besides the file's path and name: the check removes those first, so a word of
    the file name ("empty" in ``empty.png``) cannot pass. extra_args: CLI options the case needs
    (e.g. a tighter memory budget). bad_files: for ``mixed``, the names that must each get a line.
    good_frames: for ``mixed``, the rows the good files must give.
    """

    name: str
    kind: str
    path: Path
    expect: tuple[str, ...]
    exit_code: int = 2
    extra_args: tuple[str, ...] = ()
    bad_files: tuple[str, ...] = ()
    good_frames: int = 0

    @property
    def shown_name(self) -> str:
        """The name the error line must carry."""
        return self.path.name


# ----------------------------------------------------------------------------- helpers


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, idat: bytes, color_type: int = 0, depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of width x height black pixels: a few hundred KB that decode to
    width x height bytes (rows streamed through zlib, never held in memory at once)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    parts = []
    block = row * 64
    for _ in range(height // 64):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (height % 64)))
    parts.append(comp.flush())
    return png_bytes(width, height, b"".join(parts))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header (SOF0) is edited to claim width x height."""
    ok, enc = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    assert ok
    data = bytearray(enc.tobytes())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def _remux_faststart(dst: Path) -> bytes:
    """carphone_pristine.mp4 with its index (moov) first, so a truncated copy still opens."""
    src = av.open(str(clip_path("carphone_pristine.mp4")))
    out = av.open(str(dst), "w", options={"movflags": "faststart"})
    stream = src.streams.video[0]
    ostream = out.add_stream_from_template(stream)
    for packet in src.demux(stream):
        if packet.dts is None:
            continue
        packet.stream = ostream
        out.mux(packet)
    out.close()
    src.close()
    return dst.read_bytes()


def audio_only_mp4(dst: Path) -> None:
    out = av.open(str(dst), "w")
    stream = out.add_stream("aac", rate=8000)
    stream.layout = "mono"
    t = np.arange(8000, dtype=np.float32) / 8000.0
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = 8000
    for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()


def y4m_claiming(width: int, height: int) -> bytes:
    """A raw YUV4MPEG2 stream whose header claims width x height (with a few bytes of frame)."""
    return f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + b"\x80" * 4096


def dicom(
    path: Path,
    rows: int = 16,
    cols: int = 16,
    frames: int | None = None,
    pixel_data: bytes | None = b"",
    syntax: str = ExplicitVRLittleEndian,
    series: str = "1.2.826.0.1.3680043.8.498.1",
    position: tuple[float, float, float] = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    image: bool = True,
    bits: int = 16,
) -> Path:
    """A small CT-like DICOM file written from scratch. ``pixel_data`` b"": the right amount of
    pixels for ``frames`` (a ramp); None: no pixel data at all."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesDescription = "hostile"
    ds.InstanceNumber = 1
    if image:
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = bits
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelSpacing = [0.5, 0.5]
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = list(orientation)
        if frames is not None:
            ds.NumberOfFrames = frames
        if pixel_data is not None:
            n = rows * cols * (frames or 1)
            if pixel_data == b"":
                dtype = np.uint16 if bits == 16 else np.uint8
                pixel_data = (np.arange(n) % 200).astype(dtype).tobytes()
            ds.PixelData = pixel_data
            ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def claim_syntax(path: Path, uid: str) -> Path:
    """Rewrite the transfer syntax in a file written as Explicit VR Little Endian to ``uid``
    (19 characters, the length of the real one), leaving the data as it is: a header that lies."""
    assert len(uid) == len(ExplicitVRLittleEndian)
    data = path.read_bytes()
    at = data.index(ExplicitVRLittleEndian.encode() + b"\x00", 128)
    path.write_bytes(data[:at] + uid.encode() + data[at + len(uid):])
    return path


def onnx_save(model: onnx.ModelProto, path: Path, check: bool = True) -> Path:
    model.ir_version = min(model.ir_version, 10)
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def seg_card(labels: tuple[str, ...] = ("a", "b", "c")) -> ModelCard:
    return ModelCard(task="segmentation", name="hostile", input=InputSpec(), labels=labels,
                     output={"kind": "logits"})


def identity_model(in_shape, out_shape=None, in_type=TensorProto.FLOAT, card: ModelCard | None = None,
                   task: str | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("image", in_type, list(in_shape))
    y = helper.make_tensor_value_info("out", in_type, list(out_shape or in_shape))
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "hostile", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if card is not None:
        embed_card(model, card)
    if task is not None:
        model.metadata_props.add(key="loupe.task", value=task)
    return model


def conv_model_with_external(location: str) -> onnx.ModelProto:
    """A 1x1 convolution whose weights say they live in an external file ``location``."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "36")):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["out"])], "ext", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    embed_card(model, seg_card())
    return model


def raw_card_model(entries: dict[str, str]) -> onnx.ModelProto:
    model = identity_model(["n", 3, "h", "w"])
    for k, v in entries.items():
        model.metadata_props.add(key=k, value=v)
    return model


class _Evil:
    """Unpickling this would run ``print`` (any callable would do): Loupe must never unpickle."""

    def __reduce__(self):
        return (print, ("pwned by a pickle",))


# ----------------------------------------------------------------------------- the corpus


def build_corpus(root: Path) -> list[Case]:
    root = Path(root)
    media = root / "media"
    models = root / "models"
    for d in (media, models):
        d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, kind: str, path: Path, *expect: str, **kw) -> None:
        cases.append(Case(name, kind, path, tuple(expect), **kw))

    def put(folder: Path, fname: str, data: bytes) -> Path:
        p = folder / fname
        p.write_bytes(data)
        return p

    clip = clip_path("carphone_pristine.mp4").read_bytes()
    fast = _remux_faststart(root / "faststart.mp4")
    rng = np.random.default_rng(8)
    ok, good_png = cv2.imencode(".png", np.full((24, 32, 3), (10, 200, 30), np.uint8))
    assert ok
    good_png_bytes = good_png.tobytes()
    good_model = make_argmax_model(root / "good.onnx")
    put(root, "good.png", good_png_bytes)

    # --- videos ----------------------------------------------------------------------------
    add("zero-byte video", "media", put(media, "empty.mp4", b""), "empty", "0 bytes")
    add("truncated video (index lost)", "media", put(media, "cut_index.mp4", clip[: len(clip) // 2]),
        "truncated", "moov")
    add("truncated video (half the frames)", "media", put(media, "cut_half.mp4", fast[: len(fast) // 2]),
        "ended at frame", "of 120", "truncated")
    add("truncated video (header only)", "media", put(media, "cut_head.mp4", fast[:3000]),
        "failed at frame 0", "truncated")
    corrupt = bytearray(fast)
    mid = len(corrupt) // 2
    corrupt[mid: mid + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    add("video with a corrupt middle", "media", put(media, "corrupt_middle.mp4", bytes(corrupt)),
        "failed at frame", "damaged")
    add("random bytes named .avi", "media", put(media, "noise.avi", rng.integers(0, 256, 50000, dtype=np.uint8).tobytes()),
        "not a video file FFmpeg can read")
    add("text named .mp4", "media", put(media, "notes.mp4", b"Meeting notes\nThis is plain text, not a video.\n" * 20),
        "text file", "not a video")
    add("HTML page named .mp4", "media", put(media, "download.mp4", b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>\n"),
        "HTML", "not a video")
    add("video named .png", "media", put(media, "clip.png", clip), "not a PNG image", "MP4 video")
    add("video named .jpg", "media", put(media, "clip.jpg", clip), "not a JPEG image", "MP4 video")
    add("PNG named .dcm", "media", put(media, "scan.dcm", good_png_bytes), "not a DICOM file", "PNG image")
    add("ONNX model named .mp4", "media", put(media, "model.mp4", good_model.read_bytes()),
        "ONNX model", "load it as the model")
    add("audio-only .mp4", "media", media / "audio.mp4", "no video stream", "audio")
    audio_only_mp4(media / "audio.mp4")
    add("y4m header claiming 60000x60000", "media", put(media, "huge.y4m", y4m_claiming(60000, 60000)),
        "60000 x 60000", "limit")

    # --- images ----------------------------------------------------------------------------
    add("PNG header claiming 60000x60000", "media", put(media, "huge_header.png", png_bytes(60000, 60000, zlib.compress(b"\x00" * 100))),
        "60000 x 60000", "3600 megapixels", "limit")
    add("JPEG header claiming 60000x60000", "media", put(media, "huge_header.jpg", jpeg_claiming(60000, 60000)),
        "60000 x 60000", "limit")
    add("PNG bomb (12000x12000 in a small file)", "media", put(media, "bomb.png", png_bomb(12000, 12000)),
        "12000 x 12000", "144 megapixels", "limit")
    add("16-bit RGBA PNG over the memory budget", "media",
        put(media, "deep.png", png_bytes(6000, 6000, zlib.compress(b"\x00" * 10), color_type=6, depth=16)),
        "6000 x 6000", "288 MB", "memory budget", extra_args=("--max-memory-mb", "100"))
    add("zero-byte PNG", "media", put(media, "empty.png", b""), "empty", "0 bytes")
    add("PNG with a broken body", "media", put(media, "broken.png", good_png_bytes[:40] + b"\x00" * 60),
        "damaged")

    # --- DICOM -----------------------------------------------------------------------------
    add("DICOM without pixel data", "media", dicom(media / "no_pixels.dcm", pixel_data=None),
        "pixel data is missing")
    add("DICOM that is not an image", "media", dicom(media / "report.dcm", image=False),
        "holds no image")
    add("DICOM with an unsupported transfer syntax (MPEG-2)", "media",
        dicom(media / "mpeg2.dcm", syntax="1.2.840.10008.1.2.4.100",
              pixel_data=pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 508]), bits=8),
        "MPEG2", "not supported")
    add("DICOM with an unknown transfer syntax UID", "media",
        claim_syntax(dicom(media / "unknown_syntax.dcm"), "1.2.3.4.5.6.7.8.9.0"), "unknown transfer syntax",
        "1.2.3.4.5.6.7.8.9.0")
    add("DICOM claiming RLE Lossless over raw pixels", "media",
        claim_syntax(dicom(media / "lying_syntax.dcm"), "1.2.840.10008.1.2.5"), "RLE Lossless", "not encapsulated")
    frames = pydicom.encaps.encapsulate([rng.integers(0, 256, 300, dtype=np.uint8).tobytes()])
    add("DICOM claiming JPEG 2000 over garbage", "media",
        dicom(media / "garbage_j2k.dcm", syntax="1.2.840.10008.1.2.4.90", pixel_data=frames, bits=8),
        "frame 0", "JPEG 2000")
    add("DICOM with a frame count far beyond its data", "media",
        dicom(media / "frames_beyond.dcm", frames=100000, pixel_data=np.zeros(2 * 16 * 16, np.uint16).tobytes()),
        "100000 frames", "pixel data holds 2")
    add("DICOM over the frames-per-file limit", "media",
        dicom(media / "many_frames.dcm", rows=4, cols=4, frames=3000, bits=8),
        "3000 frames", "limit", extra_args=("--max-dicom-frames", "1000"))
    add("DICOM claiming 60000x60000", "media",
        dicom(media / "huge.dcm", rows=60000, cols=60000, pixel_data=b"\x00" * 1024),
        "60000 x 60000", "limit")
    add("text named .dcm", "media", put(media, "notes.dcm", b"just some text\n" * 10), "not a DICOM file", "text file")
    series_sizes = media / "series_sizes"
    series_sizes.mkdir()
    for k in range(3):
        dicom(series_sizes / f"s{k}.dcm", rows=16 if k != 1 else 24, cols=16, position=(0, 0, 2.0 * k))
    add("DICOM series mixing slice sizes", "media", series_sizes, "inconsistent", "16 x 16", "16 x 24")
    series_tilt = media / "series_tilted"
    series_tilt.mkdir()
    for k in range(3):
        orient = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if k != 2 else (1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        dicom(series_tilt / f"t{k}.dcm", position=(0, 0, 2.0 * k), orientation=orient)
    add("DICOM series mixing orientations", "media", series_tilt, "inconsistent", "orientation")

    # --- ONNX ------------------------------------------------------------------------------
    good_bytes = good_model.read_bytes()
    add("zero-byte ONNX", "model", put(models, "empty.onnx", b""), "empty", "0 bytes")
    add("truncated ONNX", "model", put(models, "truncated.onnx", good_bytes[: len(good_bytes) // 2]),
        "truncated or damaged")
    add("not ONNX (random bytes)", "model", put(models, "noise.onnx", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()),
        "not an ONNX model")
    add("not ONNX (text)", "model", put(models, "readme.onnx", b"This is where the model would go.\n"),
        "not an ONNX model", "text")
    add("pickle renamed .onnx", "model", put(models, "evil.onnx", pickle.dumps(_Evil(), protocol=4)),
        "not an ONNX model", "pickle", "never loads pickles")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"weights": [1, 2, 3]}, protocol=2))
        z.writestr("archive/version", "3\n")
    add("PyTorch checkpoint renamed .onnx", "model", put(models, "checkpoint.onnx", buf.getvalue()),
        "not an ONNX model", "PyTorch checkpoint", "never loads pickles")
    outside = root / "outside"
    outside.mkdir()
    add("external data outside the model's folder", "model",
        onnx_save(conv_model_with_external("../../etc/passwd"), models / "escape.onnx", check=False),
        "external data", "../../etc/passwd", "outside the model's folder")
    add("external data at an absolute path", "model",
        onnx_save(conv_model_with_external("/etc/passwd"), models / "absolute.onnx", check=False),
        "external data", "/etc/passwd", "outside the model's folder")
    link_dir = models / "linked"
    link_dir.mkdir()
    (outside / "weights.bin").write_bytes(np.eye(3, dtype=np.float32).tobytes())
    (link_dir / "weights.bin").symlink_to(outside / "weights.bin")
    add("external data through a symlink leading out", "model",
        onnx_save(conv_model_with_external("weights.bin"), link_dir / "linked.onnx", check=False),
        "external data", "outside the model's folder")
    add("external data file missing", "model",
        onnx_save(conv_model_with_external("missing.bin"), models / "missing_data.onnx", check=False),
        "external data", "missing.bin", "missing")
    short = models / "short"
    short.mkdir()
    (short / "w.bin").write_bytes(b"\x00" * 8)
    add("external data shorter than it claims", "model",
        onnx_save(conv_model_with_external("w.bin"), short / "short.onnx", check=False),
        "external data", "w.bin", "36 bytes")
    add("card that is not valid JSON", "model",
        onnx_save(raw_card_model({"loupe.task": "segmentation", "loupe.input": "{color: RGB"}), models / "bad_json.onnx"),
        "bad model card", "loupe.input", "not valid JSON")
    add("card with wrong value types", "model",
        onnx_save(raw_card_model({"loupe.task": "segmentation", "loupe.input": json.dumps({"mean": "bright"})}),
                  models / "bad_types.onnx"),
        "bad model card", "loupe.input")
    add("card naming an unknown task", "model",
        onnx_save(raw_card_model({"loupe.task": "teleportation"}), models / "unknown_task.onnx"),
        "bad model card", "teleportation")
    sidecar_model = onnx_save(identity_model(["n", 3, "h", "w"]), models / "sidecar.onnx")
    (models / "sidecar.onnx.loupe.json").write_text("{not json")
    add("sidecar card that is not JSON", "model", sidecar_model, "sidecar", "cannot be read")
    add("input of the wrong rank", "model",
        onnx_save(identity_model(["n", 3]), models / "rank2.onnx"), "rank 2", "N x C x H x W")
    add("input of the wrong dtype", "model",
        onnx_save(identity_model(["n", 3, "h", "w"], in_type=TensorProto.INT64, card=seg_card()), models / "int64.onnx"),
        "tensor(int64)", "float")
    add("input channels that contradict the card", "model",
        onnx_save(identity_model(["n", 1, "h", "w"], card=seg_card()), models / "one_channel.onnx"),
        "1 channel", "RGB")
    two_in = identity_model(["n", 3, "h", "w"], card=seg_card())
    two_in.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, "h", "w"]))
    add("two required inputs", "model", onnx_save(two_in, models / "two_inputs.onnx", check=False),
        "2 inputs", "one image")
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])
    classifier = helper.make_model(
        helper.make_graph([helper.make_node("ReduceMean", ["image"], ["scores"], axes=[2, 3], keepdims=0)],
                          "classifier", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    embed_card(classifier, seg_card())
    add("segmentation card on a classifier's output", "model", onnx_save(classifier, models / "classifier.onnx"),
        "output", "rank 2", "segmentation")
    density_card = ModelCard(task="density", name="d", input=InputSpec(), output={"stride": 1})
    add("density card on a 3-channel output", "model",
        onnx_save(identity_model(["n", 3, "h", "w"], card=density_card), models / "density3.onnx"),
        "density", "1 channel", "3")
    huge_ir = identity_model(["n", 3, "h", "w"], card=seg_card())
    add("IR version from the future", "model", put(models, "future.onnx", _with_ir(huge_ir, 99)),
        "ONNX Runtime", "IR version")
    bad_op = helper.make_model(helper.make_graph([helper.make_node("NoSuchOp", ["image"], ["out"], domain="")],
                                                 "badop", [x], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]),
                               opset_imports=[helper.make_opsetid("", 17)])
    embed_card(bad_op, seg_card())
    add("unknown operator", "model", onnx_save(bad_op, models / "bad_op.onnx", check=False),
        "ONNX Runtime", "NoSuchOp")

    # --- a folder mixing good and bad files -------------------------------------------------
    mixed = root / "mixed"
    mixed.mkdir()
    for k in range(3):
        ok, enc = cv2.imencode(".png", np.full((20, 30, 3), 60 * k, np.uint8))
        (mixed / f"good{k}.png").write_bytes(enc.tobytes())
    (mixed / "good_clip.mp4").write_bytes(fast)
    (mixed / "bad_text.png").write_bytes(b"not a picture\n")
    (mixed / "bad_empty.mp4").write_bytes(b"")
    (mixed / "bad_bomb.png").write_bytes(png_bytes(60000, 60000, zlib.compress(b"\x00" * 100)))
    add("folder mixing good and bad files", "mixed", mixed, exit_code=3,
        bad_files=("bad_text.png", "bad_empty.mp4", "bad_bomb.png"), good_frames=3 + 120)
    return cases


def _with_ir(model: onnx.ModelProto, ir: int) -> bytes:
    model.ir_version = ir
    return model.SerializeToString()


def good_files(root: Path) -> tuple[Path, Path]:
    """The good image and the good model ``build_corpus`` left in ``root``."""
    return Path(root) / "good.png", Path(root) / "good.onnx"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else "hostile")
    cases = build_corpus(root)
    for c in cases:
        print(f"{c.kind:6s} {c.path.relative_to(root)!s:40s} {c.name}")
    print(f"{len(cases)} cases in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
