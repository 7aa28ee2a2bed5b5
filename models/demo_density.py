"""`python -m loupe_models.demo_density`: runs :mod:`loupe_models.demos.density`."""
from loupe_models.demos.density import main

if __name__ == "__main__":
    raise SystemExit(main())
