"""The picture a probing page works on: a held-out dataset sample or an upload, as a `Picture`.

A `Picture` carries the pixels, the file it came from (a synthetic face's ground-truth mask lies
beside it; None for an upload) and a content key, so cached maps follow the image itself rather
than the widget that chose it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from emotion_core.data import faces, images
from emotion_core.views import dataset_tables, framing, live, samples
from pages import _cache


@dataclass(frozen=True)
class Picture:
    rgb: np.ndarray  # uint8 HxWx3
    path: Path | None  # None for an upload
    caption: str  # the sample's name or the upload's file name
    key: str  # content hash + shape + source: the maps' cache key for this picture
    handed: bool = False  # a face Predict cut and handed over (already framed for its run)
    cut: faces.Cut | None = None  # a face cut from the file at `path` (its mask is cut alike)

    @classmethod
    def of(cls, rgb: np.ndarray, path: Path | None, caption: str, *,
           handed: bool = False, cut: faces.Cut | None = None) -> Picture:
        digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()
        return cls(rgb, path, caption, f"{digest}{rgb.shape}{path or ''}", handed, cut)


@st.cache_data(show_spinner="Looking for the face...", max_entries=64)
def _largest_face(image: str, _pic: Picture) -> faces.FaceBox | None:
    return faces.largest_face(_pic.rgb)


def for_run(run_id: str, pic: Picture) -> tuple[Picture, str]:
    """The picture run `run_id` reads of `pic` (its face cut the way it was trained, see
    views.framing) and a caption saying so ("" for runs on whole pictures). A face handed over
    from Predict is already cut: it is read as it is. A synthetic sample's ground-truth mask is
    cut with the same box (`cut`), so its mask energy share still holds."""
    if pic.handed:
        return pic, ""
    framed = framing.for_run(pic.rgb, _cache.load_model(run_id)[1],
                             find=lambda _: _largest_face(pic.key, pic))
    if framed.cut is None:
        return pic, framed.note
    return Picture.of(framed.rgb, pic.path, pic.caption, cut=framed.cut), framed.note


HANDOFF = "explain_handoff"  # session key: the face and run Predict handed to Explain
HANDED = "face from Predict"  # the image source that shows it
SAMPLE_PHOTO = "sample photo"  # the real face committed with the code (samples.sample_photo)


def hand_to_explain(rgb: np.ndarray, caption: str, run_id: str) -> None:
    """Store a face crop and a run for the Explain page and open it (Predict's "why" link)."""
    st.session_state[HANDOFF] = {"rgb": rgb, "caption": caption, "run": run_id, "fresh": True}
    st.switch_page("pages/explain.py")


def take_handoff() -> tuple[Picture | None, str | None]:
    """(the face Predict handed over, the run to show first if it was just handed over)."""
    handed = st.session_state.get(HANDOFF)
    if not handed:
        return None, None
    fresh = handed.pop("fresh", False)
    pic = Picture.of(handed["rgb"], None, handed["caption"], handed=True)
    return pic, handed["run"] if fresh else None


def pick_image(key: str, dataset: str | None, handed: Picture | None = None, *,
               photo_first: bool = False) -> Picture | None:
    """Image source widget: a held-out dataset sample, an upload, or the face `handed` over from
    Predict; None (with a note) when there is no usable picture yet. `key` prefixes the widget
    keys; `photo_first` offers the committed sample photo before the dataset's samples (and so
    shows it until the user picks another source)."""
    # no dataset sample to offer where the dataset's folder is not here (a fresh clone with
    # only the bundled models): the committed sample photo comes first, so the page shows maps
    # at once, and the uploader is one click away
    here = dataset is not None and dataset_tables.dataset_root(dataset) is not None
    sources = ["dataset sample", SAMPLE_PHOTO] if here else [SAMPLE_PHOTO]
    options = ([HANDED] if handed is not None else []) \
        + (sources[::-1] if photo_first else sources) + ["upload"]
    if st.session_state.get(f"{key}_src") not in options:
        st.session_state.pop(f"{key}_src", None)
    source = st.radio("Image", options, horizontal=True, key=f"{key}_src")
    if source == HANDED and handed is not None:
        st.image(handed.rgb, caption=handed.caption, width=160)
        return handed
    if source == SAMPLE_PHOTO:
        st.caption(samples.SAMPLE_PHOTO_NAME)
        return Picture.of(samples.sample_photo(), None, samples.SAMPLE_PHOTO_NAME)
    if source == "upload":
        if not here:
            st.caption("No dataset samples to pick from: this dataset's image folder is not on "
                       "this machine.")
        return _upload(key)
    try:
        choices = _cache.sample_choices(dataset)
    except FileNotFoundError as exc:
        st.info(str(exc))
        return None
    if not choices:
        st.info("This dataset has no held-out images: upload a picture instead.")
        return None
    rel = st.selectbox("Sample", choices, key=f"{key}_sample")
    try:
        rgb, path = samples.load_sample(dataset, rel)
    except FileNotFoundError as exc:
        st.info(f"{exc}: upload a picture instead.")
        return None
    except images.ImageDecodeError as exc:
        st.error(f"Cannot read {rel}: {exc}")
        return None
    return Picture.of(rgb, path, rel)


def _upload(key: str) -> Picture | None:
    up = st.file_uploader("Upload a picture", type=None, key=f"{key}_upload")
    if up is None:
        return None
    try:
        return Picture.of(live.decode_picture(up.getvalue()), None, up.name)
    except live.UploadError as exc:
        st.error(str(exc))
        return None
