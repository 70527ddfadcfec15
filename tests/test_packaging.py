"""The Linux packaging (packaging/): static checks that always run, and the built bundle, run only on request.

The bundle test builds for minutes, so it runs only with QARAC_TEST_BUNDLE set: `1` builds with
packaging/build.py (in QARAC_BUILD_PYTHON, default .build-venv/bin/python), `reuse` takes what dist/ holds.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import qarac_gui

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DESKTOP = ROOT / "resources" / "qarac-gui.desktop"
PNG_DIR = ROOT / "resources" / "icons" / "png"
SIZES = (16, 32, 48, 64, 128, 256, 512)


@pytest.fixture(scope="module")
def packaging_modules():
    """packaging/'s helper modules, imported the way build.py imports them (they import each other by name)."""
    sys.path.insert(0, str(PACKAGING))
    try:
        import bundle_facts
        import make_deb
        import prune
    finally:
        sys.path.remove(str(PACKAGING))
    return bundle_facts, make_deb, prune


def read_desktop(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str            # desktop entry keys are case-sensitive
    parser.read_string(path.read_text())
    return dict(parser["Desktop Entry"])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


# -- static: no build needed --

def test_desktop_entry_has_the_keys_menus_need():
    entry = read_desktop(DESKTOP)
    assert entry["Type"] == "Application"
    for key in ("Name", "GenericName", "Comment", "Categories"):
        assert entry[key].strip(), key
    assert entry["Exec"].split()[0] == "qarac-gui" and entry["Exec"].split()[1:] in ([], ["%f"], ["%F"])
    assert entry["Icon"] == "qarac-gui"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].endswith(";") and "Development" in entry["Categories"].split(";")


def test_desktop_entry_matches_what_the_app_tells_the_window_system():
    # Wayland matches a window to its entry by desktopFileName; X11 docks match StartupWMClass to the WM_CLASS
    # class, which Qt takes from the application name.
    source = (ROOT / "qarac_gui" / "app.py").read_text()
    desktop_name = re.search(r'setDesktopFileName\("([^"]+)"\)', source).group(1)
    app_name = re.search(r'setApplicationName\("([^"]+)"\)', source).group(1)
    assert DESKTOP.name == f"{desktop_name}.desktop"
    assert read_desktop(DESKTOP)["StartupWMClass"] == app_name


def test_png_icons_exist_at_every_size():
    for size in SIZES:
        assert png_size(PNG_DIR / f"qarac-gui-{size}.png") == (size, size)


def test_windows_icon_holds_several_sizes():
    data = (PACKAGING / "windows" / "qarac_gui.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1) and count >= 4


def test_versions_come_from_the_package(packaging_modules):
    bundle_facts, make_deb, _prune = packaging_modules
    assert bundle_facts.app_version() == qarac_gui.__version__
    control = make_deb.control_text(bundle_facts.app_version(), "amd64", 1, "libc6", "2.x (CPU only)")
    fields = dict(line.split(": ", 1) for line in control.splitlines() if re.match(r"^[A-Z][\w-]*: ", line))
    assert fields["Version"] == bundle_facts.debian_version(qarac_gui.__version__)
    assert fields["Package"] == "qarac-gui" and fields["Architecture"] == "amd64"
    assert "@" not in control.replace(fields["Maintainer"], "")         # every placeholder filled


def test_debian_versions_sort_prereleases_first(packaging_modules):
    bundle_facts = packaging_modules[0]
    assert bundle_facts.debian_version("1.2.0") == "1.2.0"
    assert bundle_facts.debian_version("1.2.0rc1") == "1.2.0~rc1"
    assert bundle_facts.debian_version("1.2.0.dev3") == "1.2.0~dev3"


def test_prune_keeps_what_imports_need(packaging_modules):
    prune = packaging_modules[2]
    assert prune.unused("torch/include/ATen/ATen.h")
    assert prune.unused("torch/bin/test_api")
    assert not prune.unused("torch/bin/torch_shm_manager")        # importing torch checks that it exists
    assert not prune.unused("torch/testing/_internal/logging_tensor.py")
    assert not prune.unused("torch/lib/libtorch_cpu.so")
    assert not prune.unused("PySide6/Qt/plugins/platforms/libqxcb.so")
    assert not prune.unused("PySide6/Qt/plugins/platforms/libqwayland.so")
    assert not prune.unused("PySide6/Qt/plugins/platforms/libqoffscreen.so")
    assert prune.unused("PySide6/Qt/plugins/platformthemes/libqgtk3.so")


def test_shell_scripts_parse():
    for script in ("linux/install.sh", "linux/uninstall.sh", "linux/deb/postinst", "linux/deb/postrm",
                   "macos/build_dmg.sh"):
        subprocess.run(["sh", "-n", str(PACKAGING / script)], check=True)
        assert os.access(PACKAGING / script, os.X_OK), f"{script} is not executable"


def fake_archive(folder: Path) -> Path:
    """The unpacked .tar.gz's layout, with a stand-in bundle."""
    top = folder / "qarac-gui-0-linux-test"
    bundle = top / "qarac-gui"
    (bundle / "_internal").mkdir(parents=True)
    for tool in ("qarac-gui", "qarac-train"):
        (bundle / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\"\n")
        (bundle / tool).chmod(0o755)
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(PACKAGING / "linux" / script, top / script)
    (top / "share" / "applications").mkdir(parents=True)
    shutil.copy2(DESKTOP, top / "share" / "applications" / "qarac-gui.desktop")
    for size in (16, 512):
        icon = top / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "qarac-gui.png"
        icon.parent.mkdir(parents=True)
        shutil.copy2(PNG_DIR / f"qarac-gui-{size}.png", icon)
    return top


def test_install_and_uninstall_leave_user_data_alone(tmp_path):
    top = fake_archive(tmp_path / "unpacked")
    prefix, home = tmp_path / "prefix", tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), PATH="/usr/bin:/bin")
    # What the app writes for the user, under the same prefix as the install: none of it is the installer's.
    data = prefix / "share" / "qarac_gui" / "runs" / "demo" / "log.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("{}\n")

    for _ in range(2):              # a second install replaces the first
        result = subprocess.run(["sh", str(top / "install.sh"), "--prefix", str(prefix)], env=env,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    app = prefix / "opt" / "qarac-gui"
    run = subprocess.run([str(prefix / "bin" / "qarac-train"), "--help"], capture_output=True, text=True)
    assert run.stdout.strip() == "qarac-train --help"
    desktop = read_desktop(prefix / "share" / "applications" / "qarac-gui.desktop")
    assert desktop["Exec"] == f"{prefix}/bin/qarac-gui %f"
    assert (prefix / "share" / "icons" / "hicolor" / "512x512" / "apps" / "qarac-gui.png").is_file()

    subprocess.run([str(app / "uninstall.sh")], env=env, check=True, capture_output=True)
    assert not app.exists()
    assert not (prefix / "bin" / "qarac-gui").exists() and not (prefix / "bin" / "qarac-train").exists()
    assert not (prefix / "share" / "applications" / "qarac-gui.desktop").exists()
    assert not list((prefix / "share" / "icons").rglob("qarac-gui.png"))
    assert data.read_text() == "{}\n"


def test_install_refuses_a_folder_it_did_not_make(tmp_path):
    top = fake_archive(tmp_path / "unpacked")
    prefix = tmp_path / "prefix"
    (prefix / "opt" / "qarac-gui").mkdir(parents=True)
    (prefix / "opt" / "qarac-gui" / "precious.txt").write_text("mine")
    result = subprocess.run(["sh", str(top / "install.sh"), "--prefix", str(prefix)], capture_output=True,
                            text=True, env=dict(os.environ, HOME=str(tmp_path)))
    assert result.returncode != 0
    assert (prefix / "opt" / "qarac-gui" / "precious.txt").read_text() == "mine"


# -- the real bundle: minutes, on request only --

needs_bundle = pytest.mark.skipif(not os.environ.get("QARAC_TEST_BUNDLE"),
                                  reason="builds for minutes: set QARAC_TEST_BUNDLE=1 (build) or =reuse (dist/)")


def built_outputs() -> tuple[Path, Path]:
    """(the .deb, the .tar.gz) in dist/, building them first unless QARAC_TEST_BUNDLE=reuse."""
    if os.environ["QARAC_TEST_BUNDLE"] != "reuse":
        python = os.environ.get("QARAC_BUILD_PYTHON") or str(ROOT / ".build-venv" / "bin" / "python")
        # gzip: the test checks contents, not the release's compression, and xz would add minutes.
        subprocess.run([python, str(PACKAGING / "build.py"), "--deb-compression", "gzip"], cwd=ROOT, check=True)
    version = qarac_gui.__version__
    debs = sorted((ROOT / "dist").glob(f"qarac-gui_{version}_*.deb"))
    tars = sorted((ROOT / "dist").glob(f"qarac-gui-{version}-linux-*.tar.gz"))
    assert debs and tars, "no .deb or .tar.gz in dist/: run packaging/build.py or unset QARAC_TEST_BUNDLE=reuse"
    return debs[-1], tars[-1]


@pytest.fixture(scope="module")
def extracted_deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb")
    deb, tar = built_outputs()
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return deb, tar, root


def deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.slow
@needs_bundle
def test_deb_puts_files_where_they_belong(extracted_deb, packaging_modules):
    deb, _tar, root = extracted_deb
    for tool in ("qarac-gui", "qarac-train"):
        launcher = root / "usr" / "bin" / tool
        assert os.access(launcher, os.X_OK) and f"/opt/qarac-gui/{tool}" in launcher.read_text()
    assert os.access(root / "opt" / "qarac-gui" / "qarac-gui", os.X_OK)
    resources = root / "opt" / "qarac-gui" / "_internal" / "resources"
    assert (resources / "demo" / "project.toml").is_file()
    presets = sorted(p.relative_to(ROOT / "resources") for p in (ROOT / "resources" / "presets").glob("*.toml"))
    assert presets and all((resources / preset).is_file() for preset in presets)     # the index and its presets
    assert (root / "opt" / "qarac-gui" / "_internal" / "docs" / "desktop-app.md").is_file()   # Help > Documentation
    assert read_desktop(root / "usr" / "share" / "applications" / "qarac-gui.desktop")["Icon"] == "qarac-gui"
    icons = root / "usr" / "share" / "icons" / "hicolor"
    for size in SIZES:
        assert png_size(icons / f"{size}x{size}" / "apps" / "qarac-gui.png") == (size, size)
    assert (icons / "scalable" / "apps" / "qarac-gui.svg").is_file()

    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert deb_field(deb, "Version") == packaging_modules[0].debian_version(qarac_gui.__version__)
    assert deb_field(deb, "Architecture") == arch
    depends = deb_field(deb, "Depends")
    assert "libxcb-cursor0" in depends and "libgl1" in depends


@pytest.mark.slow
@needs_bundle
def test_deb_remove_and_purge_leave_user_data(extracted_deb, tmp_path):
    # dpkg --root installs into a scratch tree with its own package database; the maintainer scripts run
    # without chroot and see DPKG_ROOT, so the machine's own menus and icon caches are not touched.
    deb, _tar, _root = extracted_deb
    root = tmp_path / "root"
    (root / "var" / "lib" / "dpkg" / "info").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "updates").mkdir()
    (root / "var" / "lib" / "dpkg" / "status").touch()
    user_files = [root / "home" / "u" / ".local" / "share" / "qarac_gui" / "runs" / "demo" / "log.jsonl",
                  root / "home" / "u" / ".cache" / "qarac_gui" / "tokenised.arrow",
                  root / "home" / "u" / ".cache" / "huggingface" / "hub" / "version.txt"]
    for path in user_files:
        path.parent.mkdir(parents=True)
        path.write_text("mine")
    dpkg = ["dpkg", f"--root={root}", "--log=/dev/null", "--force-script-chrootless", "--force-depends"]
    if os.geteuid() != 0:
        dpkg.append("--force-not-root")

    subprocess.run([*dpkg, "--install", str(deb)], check=True, capture_output=True)
    assert os.access(root / "opt" / "qarac-gui" / "qarac-gui", os.X_OK)
    assert (root / "usr" / "share" / "applications" / "qarac-gui.desktop").is_file()
    subprocess.run([*dpkg, "--remove", "qarac-gui"], check=True, capture_output=True)
    assert not (root / "opt" / "qarac-gui").exists() and not (root / "usr" / "bin" / "qarac-gui").exists()
    subprocess.run([*dpkg, "--purge", "qarac-gui"], check=True, capture_output=True)
    assert [path.read_text() for path in user_files] == ["mine"] * len(user_files)


@pytest.mark.slow
@needs_bundle
def test_tarball_holds_the_bundle_and_the_installer(extracted_deb):
    _deb, tar, _root = extracted_deb
    with tarfile.open(tar) as archive:
        names = set(archive.getnames())
    top = tar.name.removesuffix(".tar.gz")
    for name in ("install.sh", "uninstall.sh", "qarac-gui/qarac-gui", "qarac-gui/qarac-train",
                 "share/applications/qarac-gui.desktop", "share/icons/hicolor/256x256/apps/qarac-gui.png"):
        assert f"{top}/{name}" in names


@pytest.mark.slow
@needs_bundle
def test_bundled_app_passes_its_self_test(extracted_deb, tmp_path):
    _deb, _tar, root = extracted_deb
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QARAC_GUI_DATA=str(tmp_path / "data"),
               QARAC_GUI_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    result = subprocess.run([str(root / "opt" / "qarac-gui" / "qarac-gui"), "--self-test"], env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and "sentiment" in report["exported"]


@pytest.mark.slow
@needs_bundle
def test_bundled_command_line_trains_the_demo(extracted_deb, tmp_path):
    _deb, _tar, root = extracted_deb
    bundle = root / "opt" / "qarac-gui"
    env = dict(os.environ, QARAC_GUI_DATA=str(tmp_path / "data"), QARAC_GUI_CACHE=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1")
    project = bundle / "_internal" / "resources" / "demo" / "project.toml"
    result = subprocess.run([str(bundle / "qarac-train"), str(project), "--set", "train.max_steps=2",
                             "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "run" / "export" / "sentiment" / "config.json").is_file()


def test_the_frozen_entry_point_runs_torchrun_for_a_run_in_several_processes():
    """The window starts torchrun as `<the app's executable> -m torch.distributed.run ...`: launch.py hands that
    to torch's own launcher (here as a script, which is how PyInstaller runs it)."""
    launch = Path(__file__).resolve().parent.parent / "packaging" / "launch.py"
    out = subprocess.run([sys.executable, str(launch), "-m", "torch.distributed.run", "--help"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--nproc-per-node" in out.stdout and "--no-python" in out.stdout
