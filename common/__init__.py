"""What every entry point shares (training, evaluation, control): atomic files, checkpoints on disk, seeding
and RNG state, device and precision, the optimisation step, run logging and media. It builds on `worldmodel`
(the model and its checkpoint format) and knows no dataset or environment."""
