"""`python -m loupe_models.demo_codebook`: runs :mod:`loupe_models.demos.codebook`."""
from loupe_models.demos.codebook import main

if __name__ == "__main__":
    raise SystemExit(main())
