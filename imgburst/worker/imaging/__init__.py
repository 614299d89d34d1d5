"""Pure imaging: image bytes + recipe -> encoded outputs. No I/O, no Celery, no store.

- `source`: open untrusted bytes safely, decode no more than needed;
- `geometry`, `adjust`, `watermark`: one function per recipe operation;
- `encode`: formats, `auto`, colour profiles, metadata, `max_bytes`;
- `pipeline`: composes them (`APPLY` maps operations to functions).
"""

from imgburst.worker.imaging.errors import (
    ANIMATION_SOURCES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    Limits,
)
from imgburst.worker.imaging.pipeline import APPLY, Rendered, process, render
from imgburst.worker.imaging.source import Source, decode, keep_freed_blocks, open_image

__all__ = ["ANIMATION_SOURCES", "APPLY", "DEFAULT_MAX_PIXELS", "ImageError", "Limits",
           "Rendered", "Source", "decode", "keep_freed_blocks", "open_image", "process", "render"]
