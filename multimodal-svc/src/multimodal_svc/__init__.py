"""multimodal-svc: chat completions about images (see README.md)."""
