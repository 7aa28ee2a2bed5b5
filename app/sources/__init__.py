"""Qt-free frame sources: camera, video file, images and folders, DICOM."""

from loupe.sources.base import Frame, Source, SourceError

__all__ = ["Frame", "Source", "SourceError"]
