"""CameraSource against a fake ``cv2.VideoCapture`` (no camera needed)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import ClassVar

import cv2
import numpy as np
import pytest

from loupe.sources import camera as camera_module
from loupe.sources.base import SourceError
from loupe.sources.camera import CameraSource, list_cameras


class FakeCapture:
    """Stands in for cv2.VideoCapture: serves ``frames`` (BGR), then fails ``fail`` times."""

    instances: ClassVar[list[FakeCapture]] = []

    def __init__(
        self,
        device: int,
        frames: list[np.ndarray] | None = None,
        opened: bool = True,
        fail: int = 0,
        then: list[np.ndarray] | None = None,
        fps: float = 30.0,
    ) -> None:
        self.device = device
        self.frames = list(frames or [])
        self.opened = opened
        self.fail = fail
        self.then = list(then or [])
        self.props: dict[int, float] = {
            cv2.CAP_PROP_FRAME_WIDTH: 32.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 24.0,
            cv2.CAP_PROP_FPS: fps,
        }
        self.set_calls: list[tuple[int, float]] = []
        self.released = 0
        self.reads = 0
        FakeCapture.instances.append(self)

    def isOpened(self) -> bool:
        return self.opened and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.frames:
            return True, self.frames.pop(0)
        if self.fail > 0:
            self.fail -= 1
            return False, None
        if self.then:
            return True, self.then.pop(0)
        return False, None

    def set(self, prop: int, value: float) -> bool:
        self.set_calls.append((prop, value))
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def release(self) -> None:
        self.released += 1


def bgr(b: int, g: int, r: int, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    image[:] = (b, g, r)
    return image


@pytest.fixture(autouse=True)
def _reset_instances() -> None:
    FakeCapture.instances.clear()


def install(monkeypatch: pytest.MonkeyPatch, factory: Callable[[int], FakeCapture]) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", factory)


def test_opencv_logging_is_quiet_by_default() -> None:
    assert os.environ.get("OPENCV_LOG_LEVEL")
    assert camera_module.cv2 is cv2


def test_frames_come_out_rgb_with_capture_times(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [bgr(255, 0, 0), bgr(0, 255, 0), bgr(0, 0, 255)]
    install(monkeypatch, lambda device: FakeCapture(device, frames=frames))
    with CameraSource(0, width=640, height=480, fps=30, max_failures=2, retry_delay=0) as cam:
        assert cam.live is True
        assert cam.frame_count is None
        assert cam.name == "Camera 0"
        assert cam.fps == 30.0
        fake = FakeCapture.instances[0]
        assert fake.device == 0
        assert (cv2.CAP_PROP_FRAME_WIDTH, 640.0) in fake.set_calls
        assert (cv2.CAP_PROP_FRAME_HEIGHT, 480.0) in fake.set_calls
        assert (cv2.CAP_PROP_FPS, 30.0) in fake.set_calls
        got = [next(iter(cam)) for _ in range(3)]
    assert [f.index for f in got] == [0, 1, 2]
    assert got[0].pixels.shape == (24, 32, 3)
    assert got[0].pixels.dtype == np.uint8
    assert tuple(got[0].pixels[0, 0]) == (0, 0, 255)  # blue in BGR -> blue in RGB
    assert tuple(got[1].pixels[0, 0]) == (0, 255, 0)
    assert tuple(got[2].pixels[0, 0]) == (255, 0, 0)
    stamps = [f.timestamp for f in got]
    assert stamps[0] >= 0 and stamps == sorted(stamps)
    assert got[0].metadata["device"] == 0
    captures = [f.metadata["capture_time"] for f in got]
    assert captures == sorted(captures)
    assert captures[1] - captures[0] == pytest.approx(stamps[1] - stamps[0])
    assert fake.released == 1


def test_greyscale_and_bgra_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    grey = np.full((24, 32), 77, np.uint8)
    bgra = np.zeros((24, 32, 4), np.uint8)
    bgra[:] = (10, 20, 30, 255)
    install(monkeypatch, lambda device: FakeCapture(device, frames=[grey, bgra]))
    with CameraSource(1, retry_delay=0) as cam:
        first, second = cam.read(), cam.read()
    assert first is not None and second is not None
    assert first.pixels.shape == (24, 32) and first.pixels[0, 0] == 77
    assert second.pixels.shape == (24, 32, 3)
    assert tuple(second.pixels[0, 0]) == (30, 20, 10)


def test_vanishing_camera_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [bgr(1, 2, 3)] * 3
    install(monkeypatch, lambda device: FakeCapture(device, frames=frames, fail=1000))
    cam = CameraSource(0, retry_delay=0)
    got = []
    with pytest.raises(SourceError) as info:
        for frame in cam:
            got.append(frame)
    assert len(got) == 3
    assert str(info.value) == "Camera 0 stopped delivering frames (disconnected?)"
    assert FakeCapture.instances[0].reads == 3 + cam.max_failures
    cam.close()
    assert FakeCapture.instances[0].released == 1


def test_a_few_dropped_reads_are_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        lambda device: FakeCapture(device, frames=[bgr(0, 0, 0)], fail=3, then=[bgr(9, 9, 9)]),
    )
    with CameraSource(0, max_failures=5, retry_delay=0) as cam:
        assert cam.read() is not None
        frame = cam.read()
    assert frame is not None and frame.index == 1 and frame.pixels[0, 0, 0] == 9


def test_unopenable_device(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, lambda device: FakeCapture(device, opened=False))
    with pytest.raises(SourceError) as info:
        CameraSource(0)
    assert str(info.value) == "Camera 0 could not be opened: no such device or it is in use"
    assert FakeCapture.instances[0].released == 1
    with pytest.raises(SourceError, match="Camera 7 could not be opened"):
        CameraSource(7)


def test_close_is_idempotent_and_ends_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, lambda device: FakeCapture(device, frames=[bgr(0, 0, 0)] * 5))
    cam = CameraSource(0, retry_delay=0)
    it = iter(cam)
    assert next(it).index == 0
    cam.seek(10)  # no effect on a live source
    cam.close()
    cam.close()
    assert list(it) == []
    assert cam.read() is None
    assert FakeCapture.instances[0].released == 1


def test_list_cameras_probes_and_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, lambda device: FakeCapture(device, opened=device in (0, 2)))
    assert list_cameras(max_index=4) == [0, 2]
    assert [c.device for c in FakeCapture.instances] == [0, 1, 2, 3]
    assert all(c.released == 1 for c in FakeCapture.instances)
    assert list_cameras(max_index=0) == []


def test_close_during_a_blocking_read_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    started, proceed = threading.Event(), threading.Event()

    class SlowCapture(FakeCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            started.set()
            proceed.wait(300)  # blocked until the test lets it go (after close() has returned)
            return True, bgr(0, 0, 0)

    install(monkeypatch, lambda device: SlowCapture(device))
    cam = CameraSource(0, retry_delay=0)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(cam.read()))
    reader.start()
    assert started.wait(60)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (cam.close(), closed.set()))
    closer.start()
    # close() returns while the read is still blocked: a close() that waited for the read would
    # never return here, since the read only ends after this (no clock: 60 s is a deadlock guard)
    assert closed.wait(60), "close() waited for the blocked read"
    assert reader.is_alive() and not result
    assert FakeCapture.instances[0].released == 0
    proceed.set()
    reader.join(60)
    closer.join(60)
    assert result == [None]  # the frame read after close() is dropped
    assert FakeCapture.instances[0].released == 1  # ... and the reader released the camera
    assert FakeCapture.instances[0].released == 1
