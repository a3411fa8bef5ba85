"""Reading and writing video through FFmpeg's libraries (PyAV, the ``[video]`` extra).

PyAV is imported only inside the functions that need it (:mod:`.library`), so importing this
package costs nothing and works without it. By stage: :mod:`.probe` (what a file holds:
streams, frame count, keyframes, pixel format, colour tags, rotation), :mod:`.segments`
(pure: the keyframe cut points of a resumable job), :mod:`.frames` (decoded frames <-> numpy
samples, through RGB or as the decoded planes), :mod:`.write` (encoder choice, segment files,
the final file joined by stream copy with every other stream of the source).
"""

from vdsr_deploy.videoio.library import INSTALL_HINT, require_av
from vdsr_deploy.videoio.probe import (
    MUXERS,
    VIDEO_SUFFIXES,
    ColourTags,
    OtherStream,
    VideoInfo,
    is_video_path,
    muxer_for,
    probe_video,
)
from vdsr_deploy.videoio.segments import Segment, cut_points, plan_segments, segment_of

__all__ = [
    "INSTALL_HINT",
    "MUXERS",
    "VIDEO_SUFFIXES",
    "ColourTags",
    "OtherStream",
    "Segment",
    "VideoInfo",
    "cut_points",
    "is_video_path",
    "muxer_for",
    "plan_segments",
    "probe_video",
    "require_av",
    "segment_of",
]
