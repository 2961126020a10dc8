"""Training the U-Net: stem banks, dynamic mixing, the resumable training loop, evaluation."""
