"""Stand-in for `pip install -r requirements.txt`: builds in this demo may download nothing.

It does the same kind of slow, cacheable work an install does (byte-compiling a library tree)
and records the pinned requirements, so the dependency layer behaves like a real one.
"""

import compileall
import pathlib
import sys
import time

requirements = [
    line.strip()
    for line in pathlib.Path(sys.argv[1]).read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
compileall.compile_dir(f"/usr/lib/python3.{sys.version_info.minor}", quiet=1)
time.sleep(2)  # a real install takes a while; the cache is what saves it
pathlib.Path("/app/.installed").write_text("\n".join(requirements) + "\n")
print(f"installed {len(requirements)} requirements")
