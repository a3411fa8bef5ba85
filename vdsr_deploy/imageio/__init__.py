"""Reading and writing images: modes, alpha, 16-bit, EXIF/ICC/DPI, atomic and streamed writes.

Decoding keeps the file's own samples: :attr:`DecodedImage.samples` is ``uint8`` or ``uint16``
``(H, W, C)`` with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), and
:attr:`DecodedImage.pixels` gives float32 ``[0, 1]`` (``samples / 255`` or ``/ 65535``).
16-bit PNG and TIFF stay 16-bit, colour included (Pillow itself reduces 16-bit colour to
8 bits; we decode the two bytes of every sample separately and join them).

Writing is atomic (a temporary file in the target folder, fsync, rename) and can be
streamed: :func:`open_image_writer` takes rows in order, so PNG and 16-bit TIFF outputs never
need the whole image in memory. JPEG, WebP, BMP and 8-bit TIFF go through Pillow, which needs
the whole (8-bit) image at once.

By stage: :mod:`.read` (decode), :mod:`.atomic` (the :class:`ImageWriter` base: temporary
file, fsync, rename), :mod:`.bands` (PNG and 16-bit TIFF band encoders), :mod:`.write`
(format choice, Pillow encoder, :func:`open_image_writer`, :func:`write_image`).
"""

from vdsr_deploy.fileops import not_regular_reason
from vdsr_deploy.imageio.atomic import (
    TEMP_SUFFIX,
    FileDigest,
    ImageWriter,
    appeared_meanwhile,
    file_digest,
    remove_live_temporaries,
    stale_temporaries,
)
from vdsr_deploy.imageio.read import (
    DEFAULT_MAX_PIXELS,
    EXIF_ORIENTATION,
    IMAGE_SUFFIXES,
    TIFF_LAYOUT_TAGS,
    DecodedImage,
    ImageHeader,
    ImageMetadata,
    Samples,
    probe_image,
    read_image,
    without_layout_tags,
)
from vdsr_deploy.imageio.write import (
    FORMAT_SUFFIX,
    WRITE_FORMATS,
    OutputLayout,
    adapt_channels,
    open_image_writer,
    output_format,
    output_layout,
    quantize,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXIF_ORIENTATION",
    "FORMAT_SUFFIX",
    "IMAGE_SUFFIXES",
    "TEMP_SUFFIX",
    "TIFF_LAYOUT_TAGS",
    "WRITE_FORMATS",
    "DecodedImage",
    "FileDigest",
    "ImageHeader",
    "ImageMetadata",
    "ImageWriter",
    "OutputLayout",
    "Samples",
    "adapt_channels",
    "appeared_meanwhile",
    "file_digest",
    "not_regular_reason",
    "open_image_writer",
    "output_format",
    "output_layout",
    "probe_image",
    "quantize",
    "read_image",
    "remove_live_temporaries",
    "stale_temporaries",
    "without_layout_tags",
    "write_image",
]
