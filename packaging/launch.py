"""Frozen entry point of both programs: PyInstaller runs this file as __main__ of the bundle's executable.

The bundle has one executable, qarac-gui; qarac-train is a symlink to it (on Windows, a second copy), and the
name it was started by picks the program. Two real executables would each carry their own copy of every
Python module (about 75 MB), since PyInstaller appends the module archive to the executable file.
"""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    # A windowed executable on Windows (and a .app started from the Finder) may have no stdout/stderr at all;
    # libraries that print progress or warnings would then fail on None.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    # A frozen program has no python to re-run for spawned children; this lets the executable play that part,
    # before either program reads the command line.
    multiprocessing.freeze_support()
    if sys.argv[1:3] == ["-m", "torch.distributed.run"]:
        # A run in several processes from the window: torchrun itself, in this executable (there is no python to
        # start it with); it starts qarac-train once per process (--no-python).
        import runpy
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
        sys.exit(0)
    if os.path.basename(sys.argv[0]).lower().startswith("qarac-train"):
        from qarac_gui.cli import main
    else:
        from qarac_gui.app import main
    sys.exit(main())
