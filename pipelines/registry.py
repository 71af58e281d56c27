"""The pipelines tunekit ships: CLI name → module, pipeline function and config class."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tunekit.components.common.errors import UserError


@dataclass(frozen=True)
class Method:
    """A tuning method and where its pipeline lives.

    Attributes:
        name: The CLI name (kebab-case, also the pipeline's name).
        module: The module under ``tunekit.pipelines``.
        pipeline: The ``@dsl.pipeline`` function's name.
        config: The config dataclass's name.
    """

    name: str
    module: str
    pipeline: str
    config: str

    @property
    def compiled_name(self) -> str:
        """The file name of the compiled spec under ``compiled/``."""
        return f"{self.module}.yaml"

    def load(self):
        """Returns ``(pipeline_function, config_class)``."""
        module = importlib.import_module(f"tunekit.pipelines.{self.module}")
        return getattr(module, self.pipeline), getattr(module, self.config)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("supervised-tuning", "supervised_tuning", "supervised_tuning_pipeline", "SupervisedTuningConfig"),
        Method(
            "distilling-step-by-step",
            "distilling_step_by_step",
            "distilling_step_by_step_pipeline",
            "DistillingStepByStepConfig",
        ),
        Method("embedding-tuning", "embedding_tuning", "embedding_tuning_pipeline", "EmbeddingTuningConfig"),
        Method("preference-tuning", "preference_tuning", "preference_tuning_pipeline", "PreferenceTuningConfig"),
        Method(
            "reinforcement-tuning",
            "reinforcement_tuning",
            "reinforcement_tuning_pipeline",
            "ReinforcementTuningConfig",
        ),
    )
}


def get_method(name: str) -> Method:
    """Looks up a method by its CLI name (underscores accepted).

    Raises:
        UserError: No such method.
    """
    method = METHODS.get(name.replace("_", "-"))
    if method is None:
        raise UserError(f"unknown method '{name}'; choose one of {', '.join(METHODS)}")
    return method
