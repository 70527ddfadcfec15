"""The export dialog's ONNX box, used as a person would: the copies of the chosen tasks gain onnx/model.onnx, and
the tasks ONNX does not cover are named with the reason."""

from __future__ import annotations

import shutil

import pytest
from gui import LONG, click, type_into

from qarac_gui.core.results.onnx_export import missing_libraries
from tests.core.test_onnx_export import _folder
from tests.core.test_push import write_run

pytestmark = [pytest.mark.skipif(bool(missing_libraries()), reason="needs the onnx extra"), pytest.mark.slow]


def test_the_onnx_box_writes_each_copied_task_as_onnx_and_names_what_it_skips(qtbot, tmp_path, no_dialogs,
                                                                              torch_threads):
    from qarac_gui.ui.dialogs.export_dialog import ExportDialog
    run = write_run(tmp_path / "a-run")
    shutil.rmtree(run / "export" / "classification")        # a real model this time: ONNX loads and runs it
    _folder(run / "export" / "classification", "classification")
    dialog = ExportDialog(tmp_path / "runs", run)
    qtbot.addWidget(dialog)
    dialog.show()
    for name, box in dialog.checks.items():
        box.setChecked(name in ("classification", "full"))
    assert dialog.onnx_box.isEnabled()
    dialog.onnx_box.setChecked(True)
    dest = tmp_path / "copies"
    type_into(qtbot, dialog.destination, str(dest))
    with qtbot.waitSignal(dialog.jobs.finished, timeout=LONG):
        click(qtbot, dialog.export_button)
    dialog.jobs.wait()
    assert (dest / "classification" / "onnx" / "model.onnx").is_file()
    assert not (dest / "full" / "onnx").exists()
    said = dialog.summary.text()
    assert "Written as ONNX: classification" in said and "full" in said and "not exported to ONNX" in said, said
