"""Named bounds for everything dist reads into memory (after containers/image's iolimits).

Streams (layers, archives) are never read whole; these bound only the small
documents that must be parsed in memory.
"""

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_INDEX_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_ARCHIVE_JSON_BYTES = 8 * 1024 * 1024  # index.json, manifest.json, repositories in archives
# The names of an archive's links (docker save links a layer shared by two images), held until its
# manifest.json is read: a gzip of a million symlink headers was 7 MB and 1 GB of memory.
MAX_ARCHIVE_LINK_BYTES = 8 * 1024 * 1024
MAX_WALK_DEPTH = 16  # index → index → ... → manifest; real images use 2 or 3

COPY_CHUNK = 1024 * 1024
TAR_BUFSIZE = 1024 * 1024  # tarfile reads and writes archives in chunks this big
