"""`python -m loupe_models.fit_codebook`: runs :mod:`loupe_models.fitters.codebook`."""
from loupe_models.fitters.codebook import main

if __name__ == "__main__":
    raise SystemExit(main())
