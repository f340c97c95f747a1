"""distxfer on Slurm: batch scripts that requeue on preemption, and sweeps as array jobs.

`script.py` writes the batch scripts (the generic ones in `slurm/` and filled-in ones) from one
definition; `command.py` is `distxfer slurm`, which writes a script for a config (or a sweep),
saves it into the run directory and submits it. Which engine the tasks run, and how they find
each other, is `distxfer.engines`' business (`slurm.py`, `tfconfig.py`). No TensorFlow here.
"""
