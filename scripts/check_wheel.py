"""What the wheel must hold, and what it must not."""

import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
must = [
    "mipfast/__init__.py",
    "mipfast/_native.pyi",
    "mipfast/py.typed",
    "mipfast/dashboard/static/index.html",
    "mipfast/dashboard/static/app.js",
]
missing = [m for m in must if m not in names]
if not any(n.startswith("mipfast/_native") and n.endswith(".so") for n in names):
    missing.append("mipfast/_native*.so")
if not any(".dist-info/" in n and n.endswith("LICENSE") for n in names):
    missing.append("*.dist-info/**/LICENSE")
stray = [
    n
    for n in names
    if n.startswith(("tests/", "bench/", "fuzz/", "rust/", "target/", "scripts/"))
    or "__pycache__" in n
    or n.endswith((".pyc", ".o", ".rs", ".toml"))
]
for m in missing:
    print(f"the wheel lacks {m}", file=sys.stderr)
for n in stray:
    print(f"the wheel holds {n}, which it must not", file=sys.stderr)
if missing or stray:
    sys.exit(1)
print(f"wheel contents OK ({len(names)} files)")
