"""Guard against Qt bindings that break a long session.

PySide6 6.12.0's ``Signal.emit`` drops a reference to ``True`` on every call: after a few thousand
frames the interpreter aborts ("bool_dealloc: deallocating True"). pyproject excludes it; this test
catches a binding with the same fault.
"""

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    number = Signal(int)
    anything = Signal(object)


def test_signal_emit_keeps_reference_counts(qapp):
    e = _Emitter()
    got: list = []
    e.number.connect(got.append)
    e.anything.connect(got.append)
    before = sys.getrefcount(True)
    for i in range(300):
        e.number.emit(i)
        e.anything.emit(i)
    assert len(got) == 600
    assert abs(sys.getrefcount(True) - before) < 50
