"""reftrain: a compact reference trainer for Mixture-of-Experts language models (pp x dp x ep)."""
