"""The pieces of the gradient-noise measurement program (trainers.gradient_noise)."""
