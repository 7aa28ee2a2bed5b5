"""`python -m loupe_models.export`: runs :mod:`loupe_models.exporters.onnx`."""
from loupe_models.exporters.onnx import main

if __name__ == "__main__":
    raise SystemExit(main())
