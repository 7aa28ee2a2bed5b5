"""`python -m loupe_models.fit_hnerv`: runs :mod:`loupe_models.fitters.hnerv`."""
from loupe_models.fitters.hnerv import main

if __name__ == "__main__":
    raise SystemExit(main())
