"""Converge tasks: which model trains on which data, to which held-out target, and why.

A task is keyed by the model name of the sweep's model axis (`mlp:digits`); a model without a
task is `unsupported` in a converge sweep, with the models that have one as the reason. Targets
are set where every optimizer in the quick preset can get within a few hundred steps with a
sensible learning rate, yet clearly above what an untrained or a broken model scores, so that
steps and seconds to the target tell optimizers, batch norm and precisions apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.data import datasets
from bigtrain.data.datasets import IGNORE_INDEX, Split
from bigtrain.common.registry import Registry

DIRECTIONS = ("max", "min")


@dataclass(frozen=True, kw_only=True)
class ConvergeTask:
    """One model's converge task: its data (`load`), the held-out metric and target, and why."""

    model: str
    data: str
    load: Callable[[], Split]
    metric: str
    target_value: float
    direction: str
    why: str
    needs_sklearn: bool = False

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"task {self.model}: metric {self.metric!r} not in {sorted(METRICS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"task {self.model}: direction {self.direction!r} not in {DIRECTIONS}")

    def reached(self, value: float) -> bool:
        """True when a held-out `value` of the metric is at (or past) the target."""
        return value >= self.target_value if self.direction == "max" else value <= self.target_value

    def better(self, value: float, best: float | None) -> bool:
        """True when `value` beats `best` (None: nothing seen yet)."""
        if best is None:
            return True
        return value > best if self.direction == "max" else value < best

    def unavailable_reason(self) -> str | None:
        """Why this task cannot run here (its optional extra is missing), or None."""
        if self.needs_sklearn and not datasets.sklearn_available():
            return (f"{self.model}'s {self.data} data ships with scikit-learn, which is not "
                    f"installed: {datasets.SKLEARN_INSTALL}")
        return None


# -- held-out metrics: (model output, targets) -> a Python float over the whole held-out part ------
def accuracy(output: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(correct predictions, examples) of a classifier's logits."""
    return float((output.argmax(dim=-1) == targets).sum()), float(targets.numel())


def token_accuracy(output: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(correct tokens, scored tokens) of a sequence model, IGNORE_INDEX positions left out."""
    scored = targets != IGNORE_INDEX
    correct = (output.argmax(dim=-1) == targets) & scored
    return float(correct.sum()), float(scored.sum())


def squared_error(output: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(sum of squared errors, values) of a regression; their ratio is the MSE."""
    return float(((output.float() - targets) ** 2).sum()), float(targets.numel())


#: Metric name -> its (numerator, denominator) function; the metric is the sums' ratio.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], tuple[float, float]]] = {
    "accuracy": accuracy, "token_accuracy": token_accuracy, "mse": squared_error,
}


def evaluate(model: nn.Module, loss_fn: Callable, split: Split, metric: str, *,
             device: torch.device, autocast: Callable, batch_size: int = 1024,
             channels_last: bool = False) -> tuple[float, float]:
    """(held-out loss, held-out metric) of `model` in eval mode (batch norm on its running
    statistics), without gradients, in held-out batches of `batch_size`; the model is put back in
    training mode afterwards."""
    score = METRICS[metric]
    model.eval()
    loss_sum = numerator = denominator = 0.0
    examples = 0
    try:
        with torch.no_grad():
            for start in range(0, len(split.eval_inputs), batch_size):
                inputs = split.eval_inputs[start:start + batch_size].to(device)
                targets = split.eval_targets[start:start + batch_size].to(device)
                if channels_last and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast():
                    output = model(inputs)
                    loss = loss_fn(output, targets)
                loss_sum += float(loss.float()) * len(inputs)
                examples += len(inputs)
                part, whole = score(output.float(), targets)
                numerator += part
                denominator += whole
    finally:
        model.train()
    metric_value = numerator / denominator if denominator else math.nan
    return loss_sum / examples, metric_value


TASKS: Registry[ConvergeTask] = Registry("converge task")
for _task in (
    ConvergeTask(
        model="mlp:seed", data="synthetic linear regression (10 features, noise std 0.1)",
        load=datasets.linear_regression, metric="mse", target_value=0.02, direction="min",
        why="y = x.w + N(0, 0.1^2) noise: the noise floor is a held-out MSE of 0.01, and a ReLU "
            "net represents a linear map exactly, so twice the floor is reachable and only a "
            "net that has learned the map gets there (predicting the mean scores about 10)"),
    ConvergeTask(
        model="mlp:digits", data="scikit-learn digits (8x8 images as 64 features, 10 classes)",
        load=lambda: datasets.tabular("digits"), metric="accuracy", target_value=0.95,
        direction="max", needs_sklearn=True,
        why="a small MLP reaches about 97% held-out accuracy on digits; 95% needs a trained net "
            "(chance is 10%) while leaving room for every optimizer to get there"),
    ConvergeTask(
        model="cnn:digits", data="scikit-learn digits (8x8 grey images, 10 classes)",
        load=datasets.digit_images, metric="accuracy", target_value=0.95, direction="max",
        needs_sklearn=True,
        why="the residual conv net sees the 8x8 digits as images; 95% held-out accuracy as for "
            "the MLP, so the two families are compared on the same target"),
    ConvergeTask(
        model="mlp:wine", data="scikit-learn wine (13 features, 3 classes, 178 samples)",
        load=lambda: datasets.tabular("wine"), metric="accuracy", target_value=0.94,
        direction="max", needs_sklearn=True,
        why="standardised wine is almost linearly separable: good models make at most two "
            "errors in its 36 held-out samples (94.4%)"),
    ConvergeTask(
        model="mlp:breast-cancer",
        data="scikit-learn breast cancer (30 features, 2 classes, 569 samples)",
        load=lambda: datasets.tabular("breast-cancer"), metric="accuracy", target_value=0.95,
        direction="max", needs_sklearn=True,
        why="linear models reach about 97% held-out accuracy; 95% (at most 5 errors in 114) is "
            "what a trained net must manage, against 63% for always guessing the larger class"),
    ConvergeTask(
        model="rnn:copy", data="delayed copy: 16 random tokens of 16, echo the token 2 back",
        load=datasets.delayed_copy, metric="token_accuracy", target_value=0.99, direction="max",
        why="the answer at each position is the input two positions back: the known solution is "
            "exact (accuracy 1.0), an untrained model scores 1/16, and the LSTM must learn to "
            "carry two tokens in its state"),
    ConvergeTask(
        model="transformer:copy", data="delayed copy: 16 random tokens of 16, echo the token 2 back",
        load=datasets.delayed_copy, metric="token_accuracy", target_value=0.99, direction="max",
        why="the same known solution as for the LSTM, reached by attending to a fixed relative "
            "position: the causal attention must learn it from its position embeddings"),
):
    TASKS.register(_task.model, _task)


def task_for(model: str) -> ConvergeTask | None:
    """The converge task of `model` (`family:size`), or None when it has none."""
    return TASKS.get(model)


def unsupported_reason(model: str) -> str | None:
    """Why `model` cannot run a converge cell here (no task, or its extra is missing), or None."""
    task = task_for(model)
    if task is None:
        return f"{model} has no converge task; models with one: {', '.join(TASKS.names())}"
    return task.unavailable_reason()
