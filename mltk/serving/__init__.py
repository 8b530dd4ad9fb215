"""``mltk serve``: the HTTP server over :mod:`mltk.predictors`.

- :mod:`mltk.serving.codecs` and :mod:`mltk.serving.v2codec`: wire formats, no HTTP.
- :mod:`mltk.serving.dataplane`: loading, readiness, queues, batching, timeouts, metrics.
- :mod:`mltk.serving.app`: the SageMaker and V2 routes (FastAPI), token and body limits.
- :mod:`mltk.serving.repository`: models loaded and unloaded live (SageMaker multi-model API,
  V2 repository extension), the same set in every worker.
- :mod:`mltk.serving.server`: uvicorn, worker processes, SIGTERM.
"""
