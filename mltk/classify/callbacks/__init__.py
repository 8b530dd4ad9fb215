"""The Keras callbacks a training run is made of, one concern each (as Keras' own are).

Keras is imported by these modules when they load: import them once the backend is chosen
(:meth:`mltk.classify.Trainer.prepare` does). :class:`~mltk.classify.Trainer` puts them in this
order, which is the order Keras calls them in:

- ``steps``: :class:`StepCounter`, the run's step count, kept without waiting for the device
  (and :class:`DispatchedSteps`, the base that turns Keras' batch hooks into steps);
- ``throughput``: :class:`Throughput`, training images per second, compilation left out;
- ``history``: :class:`History`, one row per epoch, written as history.csv and curves.png;
- ``best``: :class:`BestModel` (best.keras at each better epoch) and :class:`EarlyStopping`;
- ``checkpoint``: :class:`Checkpointer`, the checkpoint every N steps and at each epoch's end
  (with last.keras), and the resume from it;
- ``progress``: :class:`Progress` (a function called at each step) and :class:`SafePoint`
  (where a SIGINT or SIGTERM received during a step stops the run).

Each is tested with fake logs and no training (tests/test_train_callbacks.py).
"""
