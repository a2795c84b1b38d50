"""image-svc: image generation (OpenAI GPT-image, OpenAI-compatible DALL-E servers, Stability AI,
Automatic1111, ComfyUI) with live progress, previews and cancel."""
