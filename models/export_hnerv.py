"""`python -m loupe_models.export_hnerv`: runs :mod:`loupe_models.exporters.hnerv`."""
from loupe_models.exporters.hnerv import main

if __name__ == "__main__":
    raise SystemExit(main())
