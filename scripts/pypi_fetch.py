#!/usr/bin/env python3
"""Downloads one file of a PyPI release by name from the simple index and checks its sha256.

Used by scripts/setup for source distributions, which `pip download` would try
to build. Usage: pypi_fetch.py PROJECT FILENAME SHA256 DEST_DIR
"""
import hashlib
import os
import re
import sys
import urllib.request


def main() -> int:
    project, filename, sha256, dest = sys.argv[1:5]
    index = os.environ.get("TOKENFAB_PYPI_SIMPLE", "https://pypi.org/simple")
    page = urllib.request.urlopen(f"{index}/{project}/", timeout=60).read().decode()
    links = [l for l in re.findall(r'href="([^"]+)"', page) if l.split("#")[0].endswith("/" + filename)]
    if not links:
        print(f"pypi_fetch: {filename} not found in {index}/{project}/", file=sys.stderr)
        return 1
    url = links[0].split("#")[0]
    os.makedirs(dest, exist_ok=True)
    tmp = os.path.join(dest, filename + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as resp, open(tmp, "wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        os.remove(tmp)
        print(f"pypi_fetch: sha256 mismatch for {filename}: got {digest.hexdigest()}", file=sys.stderr)
        return 1
    os.replace(tmp, os.path.join(dest, filename))
    return 0


if __name__ == "__main__":
    sys.exit(main())
