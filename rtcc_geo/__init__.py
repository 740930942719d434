"""rtcc-geo: open geospatial analytics for police Real Time Crime Centers."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Arrow's allocator, for this process when pyarrow is not loaded yet (Arrow reads it once, when
# its default pool is created; pandas imports pyarrow) and for the processes it starts. With
# Arrow's default, mimalloc, a store scan's peak RSS grew with the rows per part file (counts by
# category x district x month: 208 -> 326 MB from a 1 M to a 4 M store; 159 -> 202 MB with
# jemalloc, as fast; MIMALLOC_ARENA_EAGER_COMMIT=0 with MIMALLOC_PURGE_DELAY=0 did as well). Only
# on Linux, where Arrow's builds ship jemalloc and where it was measured; a value already set in
# the environment wins.
if _sys.platform.startswith("linux"):
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    if "pyarrow" in _sys.modules and _os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc":
        # Imported after pandas or pyarrow (a notebook's usual order): Arrow may have read the
        # variable already, so switch its default pool too (later allocations use it).
        try:
            import pyarrow as _pa

            _pa.set_memory_pool(_pa.jemalloc_memory_pool())
        except (ImportError, NotImplementedError):  # a build without jemalloc keeps its own
            pass
