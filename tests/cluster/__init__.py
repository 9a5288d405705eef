"""Tests of the deployment files: the SLURM scripts in example/slurm and the container definition."""
