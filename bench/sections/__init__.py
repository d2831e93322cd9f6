"""The harness's sections, each a ``run(env, setup, ...)`` returning its figures."""
