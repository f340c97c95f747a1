"""distxfer: fine-tune pretrained Keras image models on your own images, one CPU to many nodes.

The import rule. A run first checks everything it was given (config, run directory, data folders,
image files) and only then starts its engine, which configures devices and threads before
TensorFlow's runtime starts. So that a bad input is reported in well under a second, the modules
in `TENSORFLOW_FREE` import neither TensorFlow nor Keras: they are what the command line loads
and runs before the engine. Each reaches TensorFlow only inside the function that runs once its
input is checked (marked there); every other module imports what it needs at its top.
`tests/test_import_rule.py` guards the list.
"""

__version__ = "0.1.0"

TENSORFLOW_FREE = (
    "distxfer.cli",
    "distxfer.run",
    "distxfer.runlock",
    "distxfer.inference",
    "distxfer.demo",
    "distxfer.doctor",
    "distxfer.bench",
    "distxfer.launchers",
    "distxfer.launchers.cli",
    "distxfer.config",
    "distxfer.data",
    "distxfer.data.commands",
    "distxfer.data.fullscan",
    "distxfer.data.weighting",
    "distxfer.engines",
    "distxfer.models",
    "distxfer.models.kerasfile",
    "distxfer.models.pretrained",
    "distxfer.checkpoint",
    "distxfer.train.state",
    "distxfer.train.stopping",
    "distxfer.slurm",
    "distxfer.slurm.command",
    "distxfer.slurm.script",
    "distxfer.sweeps",
    "distxfer.runs",
    "distxfer.status",
    "distxfer.crossval",
    "distxfer.cvsummary",
)
