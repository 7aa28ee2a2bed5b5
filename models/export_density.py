"""`python -m loupe_models.export_density`: runs :mod:`loupe_models.exporters.density`."""
from loupe_models.exporters.density import main

if __name__ == "__main__":
    raise SystemExit(main())
