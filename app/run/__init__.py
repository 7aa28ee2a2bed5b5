"""Running models over inputs (Qt-free, above the tasks): the per-frame runner and pipeline, analyze, the player, resume, Ray, codecs and the compression report."""
