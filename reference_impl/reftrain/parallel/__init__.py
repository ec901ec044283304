"""How one model is spread over ranks: mesh, expert parallelism, FSDP2, pipeline stages."""
