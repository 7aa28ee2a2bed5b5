"""`python -m loupe_models.demo_seg`: runs :mod:`loupe_models.demos.seg`."""
from loupe_models.demos.seg import main

if __name__ == "__main__":
    raise SystemExit(main())
