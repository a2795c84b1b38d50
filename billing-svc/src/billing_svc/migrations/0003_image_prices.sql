-- Image generation prices (issue 11). GPT-image models are priced by tokens from the provider's
-- usage (text input, image output per 1M tokens; PROTOCOLS.md b); their per-image rows are 0 so a
-- usage event can count images without pricing them twice. Stability: per image per model, as
-- image-svc names them (ultra, core, sd3.5-*). Automatic1111 and ComfyUI run on the operator's
-- hardware: a price per image by checkpoint, size ('' = any) and steps (image_quality
-- '<N> steps', '' = any), set by the operator; the rows below price the demo checkpoints.
-- Nothing is removed: older rows still price calls already made.
INSERT INTO prices (provider, model, unit, image_size, image_quality, price_micros, per_units) VALUES
    ('openai', 'gpt-image-2', 'input_token', '', '', 5000000, 1000000),
    ('openai', 'gpt-image-2', 'output_token', '', '', 40000000, 1000000),
    ('openai', 'gpt-image-2', 'image', '', '', 0, 1),
    ('openai', 'gpt-image-2-2026-04-21', 'input_token', '', '', 5000000, 1000000),
    ('openai', 'gpt-image-2-2026-04-21', 'output_token', '', '', 40000000, 1000000),
    ('openai', 'gpt-image-2-2026-04-21', 'image', '', '', 0, 1),
    ('stability', 'ultra', 'image', '', '', 80000, 1),
    ('stability', 'core', 'image', '', '', 30000, 1),
    ('stability', 'sd3.5-flash', 'image', '', '', 25000, 1),
    ('automatic1111', 'v1-5-pruned-emaonly', 'image', '', '', 2000, 1),
    ('automatic1111', 'sd_xl_base_1.0', 'image', '', '', 4000, 1),
    ('comfyui', 'v1-5-pruned-emaonly.safetensors', 'image', '', '', 2000, 1),
    ('comfyui', 'sd_xl_base_1.0.safetensors', 'image', '', '', 4000, 1)
ON CONFLICT DO NOTHING;
