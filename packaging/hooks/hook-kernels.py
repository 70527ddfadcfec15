"""transformers (5.25 and later) depends on kernels, which reads python_depends.json beside its code when it is
imported; without that file, loading any model fails with "Cannot load dependency data"."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("kernels")
