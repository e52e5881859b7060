"""Memory, in one place: what each actor will hold (`estimates`), the plan of a run's actors
on its devices and the refusal of one that does not fit (`plan`, `--dry-run`), how the
engines are told to size themselves (`vllm_sizing`), and what they took (`meter`)."""
