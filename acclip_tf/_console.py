"""The `acclip-<program>` console scripts (setup.cfg `console_scripts`).

Each script runs ``python -m trainers.<program>`` exactly: the module is run
as ``__main__`` (`runpy`), so whatever its ``if __name__ == "__main__":``
block does (defining flags, `absl.app.run`, one-line errors) happens the same
way. A light install (`pip install acclip-tf`, without the ``[trainers]``
extra) ships the scripts but not the trainers' libraries: then the script
says so in one line and exits with status 1 instead of a traceback.
"""

import runpy
import sys

# The libraries of the [trainers] extra (import name -> distribution).
TRAINER_LIBRARIES = {
    "absl": "absl-py",
    "keras_hub": "keras-hub",
    "tensorflow_text": "tensorflow-text",
    "tensorflow_datasets": "tensorflow-datasets",
    "tensorboard": "tensorboard",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "optuna": "optuna",
}

PROGRAMS = (
    "bert_pretrain",
    "causal_lm",
    "squad_finetune",
    "resnet_imagenet",
    "gradient_noise",
    "heavy_tail_rates",
    "sweep",
    "prepare_pretraining_data",
)


def run_program(program):
    """Run ``trainers.<program>`` as ``python -m trainers.<program>`` would."""
    module = f"trainers.{program}"
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in TRAINER_LIBRARIES:
            raise
        script = "acclip-" + program.replace("_", "-")
        sys.stderr.write(
            f"error: {script} needs {TRAINER_LIBRARIES[top]} (module {e.name!r}), "
            "which only the trainers' extra installs: "
            "pip install 'acclip-tf[trainers]'\n"
        )
        sys.exit(1)


def _script(program):
    def main():
        run_program(program)

    main.__name__ = program
    main.__doc__ = f"The acclip-{program.replace('_', '-')} script: python -m trainers.{program}."
    return main


bert_pretrain = _script("bert_pretrain")
causal_lm = _script("causal_lm")
squad_finetune = _script("squad_finetune")
resnet_imagenet = _script("resnet_imagenet")
gradient_noise = _script("gradient_noise")
heavy_tail_rates = _script("heavy_tail_rates")
prepare_pretraining_data = _script("prepare_pretraining_data")
sweep = _script("sweep")
