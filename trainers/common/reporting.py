"""Progress lines, TensorBoard scalars, metrics.jsonl and summary.json.

Only the chief writes files; every worker may print.
"""

import json
import math

import tensorflow as tf

from trainers.common import files
from trainers.common.progress import format_duration  # noqa: F401 - re-exported


class Throughput:
    """Examples/s over all loops but the first (which includes tracing and compiling)."""

    def __init__(self):
        self.loops = 0
        self.examples = 0
        self.seconds = 0.0

    def add(self, examples, seconds):
        self.loops += 1
        if self.loops == 1:
            return
        self.examples += examples
        self.seconds += seconds

    @property
    def per_second(self):
        return self.examples / self.seconds if self.seconds > 0 else None

    def eta(self, steps_left, global_batch_size):
        rate = self.per_second
        return steps_left * global_batch_size / rate if rate else None


def progress_line(step, total_steps, metrics, learning_rate, rate, eta, example_name):
    parts = [f"step {step}/{total_steps}"]
    parts += [f"{k} {v:.4f}" for k, v in metrics.items()]
    parts.append(f"lr {learning_rate:.3g}")
    parts.append(f"{example_name}/s {rate:.1f}" if rate else f"{example_name}/s (compiling)")
    parts.append(f"ETA {format_duration(eta)}")
    return " | ".join(parts)


class Reporter:
    def __init__(self, model_dir, is_chief=True, example_name="examples"):
        self.model_dir = model_dir
        self.is_chief = is_chief
        self.example_name = example_name
        self._writer = (tf.summary.create_file_writer(files.join(model_dir, "tensorboard"))
                        if is_chief else None)

    def scalars(self, step, values, prefix):
        if not self._writer:
            return
        with self._writer.as_default(step=step):
            for k, v in values.items():
                if v is not None and math.isfinite(v):
                    # float64: a diverging run's perplexity (exp of a large loss) is finite
                    # in Python but out of float32's range, where the default conversion fails.
                    tf.summary.scalar(f"{prefix}/{k}", tf.constant(v, tf.float64))
        self._writer.flush()

    def loop(self, step, total_steps, metrics, learning_rate, rate, eta, extra=None):
        print(progress_line(step, total_steps, metrics, learning_rate, rate, eta,
                            self.example_name), flush=True)
        values = dict(metrics, learning_rate=learning_rate)
        if rate:
            values[f"{self.example_name}_per_second"] = rate
        values.update(extra or {})
        self.scalars(step, values, "train")

    def evaluation(self, record):
        """Append `record` (a dict with "step") to metrics.jsonl and TensorBoard."""
        for prefix, what, tag in (("eval_", "eval", "eval"),
                                  ("fixed_train_", "fixed training examples", "fixed_train")):
            values = {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)}
            if values:
                print(f"{what} at step {record['step']}: "
                      + " | ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)
                self.scalars(record["step"], values, tag)
        if self.is_chief:
            files.append_text(files.join(self.model_dir, "metrics.jsonl"),
                              json.dumps(record) + "\n")

    def summary(self, summary):
        if self.is_chief:
            path = files.join(self.model_dir, "summary.json")
            files.write_text_atomically(path, json.dumps(summary, indent=2, sort_keys=True))
            return path
        return None

    def close(self):
        if self._writer:
            self._writer.close()


def read_metrics(model_dir):
    """The records of `model_dir/metrics.jsonl` (for compare.py and tests)."""
    path = files.join(model_dir, "metrics.jsonl")
    return [json.loads(line) for line in files.read_text(path).splitlines() if line.strip()]
