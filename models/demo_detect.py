"""`python -m loupe_models.demo_detect`: runs :mod:`loupe_models.demos.detect`."""
from loupe_models.demos.detect import main

if __name__ == "__main__":
    raise SystemExit(main())
