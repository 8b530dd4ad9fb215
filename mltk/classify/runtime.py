"""Keras backend, devices, distribution strategy and precision for training and inference.

The Keras backend is fixed when Keras is first imported, so :func:`select_backend` runs before
anything imports it. With ``jax`` nothing here imports TensorFlow: a host with Keras and JAX but
no TensorFlow can train on synthetic data. When the JAX backend is fed by tf.data, TensorFlow is
kept off the GPUs so that JAX owns their memory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from mltk._keras import import_keras, import_tf
from mltk.errors import ConfigError, MltkError

BACKENDS = ("tensorflow", "jax")
STRATEGIES = ("auto", "mirrored", "multi-worker", "single")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def select_backend(name: str) -> None:
    """Make ``name`` the Keras backend of this process (before Keras is imported)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    keras = sys.modules.get("keras")
    if keras is not None:
        actual = keras.backend.backend()
        if actual != name:
            raise MltkError(f"Keras is already loaded with the {actual} backend in this process; "
                            f"run a new process for `backend` {name}")
        return
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise MltkError("`backend` jax needs JAX: pip install 'jax[cuda12]' (GPU) or "
                            "'jax[cpu]'") from None
    os.environ["KERAS_BACKEND"] = name


@dataclass
class Runtime:
    """What the process trains or predicts on."""

    backend: str
    devices: list[str]
    strategy: Any = None          # tf.distribute strategy (TensorFlow backend)
    distribution: Any = None      # keras.distribution (JAX backend)
    workers: int = 1
    is_chief: bool = True
    worker_index: int = 0
    precision: str = "float32"
    accelerator: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        if self.strategy is not None:
            return int(self.strategy.num_replicas_in_sync)
        return max(1, len(self.devices)) if self.distribution is not None else 1

    def scope(self) -> Any:
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "devices": self.devices, "replicas": self.replicas,
                "workers": self.workers, "precision": self.precision,
                "accelerator": self.accelerator}


def tf_config_from_env(environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """TF_CONFIG as a dict: from TF_CONFIG itself, or built from ``MLTK_WORKERS`` (comma-separated
    host:port of every worker) and the worker's index (``MLTK_WORKER_INDEX``, or Kubernetes'
    ``JOB_COMPLETION_INDEX`` in an indexed Job)."""
    env = os.environ if environ is None else environ
    if env.get("TF_CONFIG"):
        try:
            cfg = json.loads(env["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg})") from None
        if not isinstance(cfg, dict) or "cluster" not in cfg or "task" not in cfg:
            raise ConfigError("TF_CONFIG needs 'cluster' and 'task' keys")
        return cfg
    hosts = [h.strip() for h in env.get("MLTK_WORKERS", "").split(",") if h.strip()]
    if not hosts:
        return None
    index = env.get("MLTK_WORKER_INDEX", env.get("JOB_COMPLETION_INDEX"))
    if index is None or not index.isdigit() or int(index) >= len(hosts):
        raise ConfigError(f"MLTK_WORKERS lists {len(hosts)} workers; set MLTK_WORKER_INDEX (or "
                          f"JOB_COMPLETION_INDEX) to this worker's index, 0..{len(hosts) - 1}")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(index)}}


def setup(backend: str, gpus: int | None = None, strategy: str = "auto", cpu_replicas: int = 1,
          precision: str = "auto", need_tf: bool = True) -> Runtime:
    """Configure devices, distribution and precision; call once, before building a model.

    ``need_tf``: the input pipeline uses TensorFlow (tf.data) even on the JAX backend.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (choose from "
                          f"{', '.join(PRECISIONS)})")
    if gpus is not None and gpus < 0:
        raise ConfigError("`gpus` must be 0 (CPU) or more")
    if cpu_replicas < 1:
        raise ConfigError("cpu_replicas must be at least 1")
    select_backend(backend)
    if backend == "tensorflow":
        rt = _setup_tf(gpus, strategy, cpu_replicas)
    else:
        if strategy == "multi-worker":
            raise ConfigError("`strategy` multi-worker needs the tensorflow backend "
                              "(MultiWorkerMirroredStrategy)")
        rt = _setup_jax(gpus, strategy, cpu_replicas, need_tf)
    rt.precision = _apply_precision(precision, rt)
    return rt


def _setup_tf(gpus: int | None, strategy: str, cpu_replicas: int) -> Runtime:
    """TensorFlow: the cluster (multi-worker), the visible devices, then the strategy."""
    tf = import_tf()
    tf_config = _cluster(strategy)
    n = _tf_visible_devices(tf, gpus, cpu_replicas)
    # Collective ops are configured when the strategy is made, before TensorFlow starts.
    multi = _multi_worker_strategy(tf, n) if tf_config is not None else None
    if n:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")][:n]
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
    rt = Runtime("tensorflow", devices, accelerator="gpu" if n else "cpu")
    if multi is not None:
        _join_cluster(rt, multi, tf_config)
    elif strategy == "mirrored" or (strategy == "auto" and len(devices) > 1):
        rt.strategy = tf.distribute.MirroredStrategy(
            devices=devices,
            cross_device_ops=None if n else tf.distribute.ReductionToOneDevice())
    return rt


def _cluster(strategy: str) -> dict[str, Any] | None:
    """TF_CONFIG of a multi-worker run (exported for TensorFlow when built from MLTK_WORKERS);
    None for the other strategies."""
    if strategy != "multi-worker":
        return None
    tf_config = tf_config_from_env()
    if tf_config is None:
        raise ConfigError("`strategy` multi-worker needs TF_CONFIG, or MLTK_WORKERS with "
                          "MLTK_WORKER_INDEX (see configs/k8s/)")
    if not os.environ.get("TF_CONFIG"):
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
    return tf_config


def _tf_visible_devices(tf: Any, gpus: int | None, cpu_replicas: int) -> int:
    """Make the first ``gpus`` GPUs visible (memory growth on), or split the CPU into
    ``cpu_replicas`` logical devices; returns the GPU count."""
    physical = tf.config.list_physical_devices("GPU")
    n = len(physical) if gpus is None else gpus
    if n > len(physical):
        raise MltkError(f"`gpus` {n}: only {len(physical)} GPU(s) visible to TensorFlow")
    try:
        tf.config.set_visible_devices(physical[:n], "GPU")
        for gpu in physical[:n]:
            tf.config.experimental.set_memory_growth(gpu, True)
        if n == 0 and cpu_replicas > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    except RuntimeError:
        pass  # already initialised in this process (a second run in one Python session)
    return n


def _multi_worker_strategy(tf: Any, gpus: int) -> Any:
    comm = tf.distribute.experimental.CommunicationImplementation
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=comm.NCCL if gpus else comm.RING))


def _join_cluster(rt: Runtime, strategy: Any, tf_config: dict[str, Any]) -> None:
    """This worker's place in the cluster: the worker count, its index, whether it is chief."""
    cluster, task = tf_config["cluster"], tf_config["task"]
    rt.strategy = strategy
    rt.workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    rt.worker_index = int(task.get("index", 0))
    rt.is_chief = task.get("type") == "chief" or (
        task.get("type") == "worker" and rt.worker_index == 0 and "chief" not in cluster)


def _setup_jax(gpus: int | None, strategy: str, cpu_replicas: int, need_tf: bool) -> Runtime:
    if need_tf:
        # tf.data feeds the model; TensorFlow must not take the GPUs' memory from JAX.
        tf = import_tf()
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass
    if cpu_replicas > 1 and "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count="
                                   f"{cpu_replicas}").strip()
    import jax

    accel = [d for d in jax.devices() if d.platform != "cpu"]
    n = len(accel) if gpus is None else gpus
    if n > len(accel):
        raise MltkError(f"`gpus` {n}: only {len(accel)} GPU(s) visible to JAX")
    chosen = accel[:n] if n else jax.devices("cpu")[:cpu_replicas]
    rt = Runtime("jax", [str(d) for d in chosen], accelerator="gpu" if n else "cpu")
    keras = import_keras()
    if len(chosen) > 1 and strategy != "single":
        rt.distribution = keras.distribution.DataParallel(devices=chosen)
        keras.distribution.set_distribution(rt.distribution)
    return rt


def _bf16_capable(rt: Runtime) -> bool:
    """Compute capability 8.0 or newer (Ampere, Hopper) on every chosen GPU."""
    if rt.accelerator != "gpu":
        return False
    if rt.backend == "tensorflow":
        tf = import_tf()
        for gpu in tf.config.get_visible_devices("GPU"):
            cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            if not cc or cc[0] < 8:
                return False
        return True
    import jax

    for d in jax.devices():
        cc = getattr(d, "compute_capability", None)
        if d.platform != "cpu" and cc is not None and float(cc) < 8.0:
            return False
    return True


def _apply_precision(precision: str, rt: Runtime) -> str:
    if precision == "auto":
        precision = "mixed_bfloat16" if _bf16_capable(rt) else "float32"
    keras = import_keras()
    keras.mixed_precision.set_global_policy(precision)
    return precision
