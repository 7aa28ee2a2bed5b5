"""`python -m loupe_models.demo_hnerv`: runs :mod:`loupe_models.demos.hnerv`."""
from loupe_models.demos.hnerv import main

if __name__ == "__main__":
    raise SystemExit(main())
