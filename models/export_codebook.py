"""`python -m loupe_models.export_codebook`: runs :mod:`loupe_models.exporters.codebook`."""
from loupe_models.exporters.codebook import main

if __name__ == "__main__":
    raise SystemExit(main())
