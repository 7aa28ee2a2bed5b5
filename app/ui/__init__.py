"""Qt user interface: main window, worker thread, viewer and one file per panel."""
