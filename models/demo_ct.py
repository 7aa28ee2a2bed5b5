"""`python -m loupe_models.demo_ct`: runs :mod:`loupe_models.demos.ct`."""
from loupe_models.demos.ct import main

if __name__ == "__main__":
    raise SystemExit(main())
