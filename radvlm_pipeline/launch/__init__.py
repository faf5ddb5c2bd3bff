"""Starting training jobs: local command lines, Slurm batch scripts and job following (no Dagster here)."""
