"""Build the Linux packages of qarac_gui: the PyInstaller folder, a portable .tar.gz and a .deb, all in dist/.

    python packaging/build.py                        everything (several minutes)
    python packaging/build.py --skip-pyinstaller     repackage the existing dist/qarac-gui/ only
    python packaging/build.py --self-test            afterwards, run the bundle's own check (trains the demo)

It bundles the Python environment it runs in. Use a virtual environment that holds only the app and
PyInstaller, or PyInstaller's hooks pull in whatever else is installed (see packaging/README.md):

    python3 -m venv .build-venv
    .build-venv/bin/pip install torch==2.13.0          # first and pinned: the CPU wheel, not a CUDA one
    .build-venv/bin/pip install ".[demo]" pyinstaller
    .build-venv/bin/python packaging/build.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))     # the helper modules beside this file

from bundle_facts import NAME, ROOT, app_version, machine, mib, torch_build, tree_size  # noqa: E402

SPEC = ROOT / "packaging" / "qarac_gui.spec"


def run_pyinstaller(dist: Path, work: Path) -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        sys.exit(f"error: PyInstaller is not installed in {sys.prefix}; see the top of {__file__}")
    if sys.prefix == sys.base_prefix:
        print("warning: not in a virtual environment; everything installed here may end up in the bundle")
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work), str(SPEC)], check=True, cwd=ROOT)


def self_test(bundle: Path) -> bool:
    """The bundle's own end-to-end check, offscreen, with a throwaway data folder."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="qarac-gui-bundle-test-") as data:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QARAC_GUI_DATA=data, HF_HUB_OFFLINE="1")
        result = subprocess.run([str(bundle / NAME), "--self-test"], env=env, capture_output=True, text=True)
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:])
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the qarac_gui bundle, .tar.gz and .deb in dist/.")
    parser.add_argument("--skip-pyinstaller", action="store_true",
                        help="reuse the bundle already in dist/qarac-gui (only repackage)")
    parser.add_argument("--no-deb", action="store_true", help="skip the .deb (it needs dpkg-deb)")
    parser.add_argument("--no-tarball", action="store_true", help="skip the .tar.gz")
    parser.add_argument("--deb-compression", default="xz", choices=("xz", "gzip", "zstd", "none"),
                        help="dpkg-deb -Z (default xz: the smallest; gzip is several times faster)")
    parser.add_argument("--maintainer", default=os.environ.get("QARAC_DEB_MAINTAINER"),
                        help="the .deb's Maintainer field, 'Name <email>' (or QARAC_DEB_MAINTAINER)")
    parser.add_argument("--self-test", action="store_true", help="run the bundle's --self-test at the end")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)

    began = time.monotonic()
    dist, work = args.dist.resolve(), ROOT / "build"
    bundle = dist / NAME
    version = app_version()
    timings = {}

    if not args.skip_pyinstaller:
        t = time.monotonic()
        run_pyinstaller(dist, work / "pyinstaller")
        timings["PyInstaller"] = time.monotonic() - t
    if not (bundle / NAME).is_file():
        sys.exit(f"error: no bundle in {bundle}; run without --skip-pyinstaller first")

    outputs = {"bundle folder": bundle}
    if not args.no_tarball:
        from make_tarball import build_tarball
        t = time.monotonic()
        outputs["tar.gz"] = build_tarball(bundle, version, machine(), dist)
        timings["tar.gz"] = time.monotonic() - t
    if not args.no_deb:
        if shutil.which("dpkg-deb") is None:
            print("note: no dpkg-deb on this machine, so no .deb (--no-deb silences this)")
        else:
            from make_deb import MAINTAINER, build_deb
            t = time.monotonic()
            deb, missing = build_deb(bundle, version, work / "deb", dist, args.deb_compression,
                                     args.maintainer or MAINTAINER)
            outputs["deb"] = deb
            timings["deb"] = time.monotonic() - t
            if missing:
                print("warning: libraries the bundle links that no package here provides: " + ", ".join(
                    sorted(missing)))

    ok = self_test(bundle) if args.self_test else True

    print(f"\nqarac_gui {version}: torch {torch_build(bundle)}")
    for label, path in outputs.items():
        print(f"  {label:14} {mib(tree_size(path)):>10}  {path}")
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    print(f"  built in {time.monotonic() - began:.0f} s ({steps})")
    if args.self_test:
        print(f"  self-test: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
