"""`python -m loupe_models.fit_anomaly`: runs :mod:`loupe_models.fitters.anomaly`."""
from loupe_models.fitters.anomaly import main

if __name__ == "__main__":
    raise SystemExit(main())
