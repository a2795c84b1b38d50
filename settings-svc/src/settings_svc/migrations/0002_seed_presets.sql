-- The providers of DESIGN.md. Operators may edit these rows (then SIGHUP or wait for the reload).
-- Image presets do not offer member mode yet ("disabled for now"); enabling it takes both
-- `UPDATE settings.provider_presets SET member_allowed = true WHERE backend_type = 'image' ...`
-- and image-svc's member-mode switch.

INSERT INTO provider_presets (
    provider, backend_type, display_name, api_style, models, default_model,
    temperature_min, temperature_max, temperature_default,
    member_allowed, user_base_url_allowed, default_base_url, sort_order
) VALUES
    -- text
    ('openai', 'text', 'OpenAI', 'openai',
     ARRAY['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano'], 'gpt-4o-mini',
     0, 2, 0.7, true, false, '', 10),
    ('anthropic', 'text', 'Anthropic', 'anthropic',
     ARRAY['claude-3-5-haiku-latest', 'claude-3-5-sonnet-latest', 'claude-3-7-sonnet-latest',
           'claude-sonnet-4-20250514', 'claude-opus-4-20250514'], 'claude-3-5-haiku-latest',
     0, 1, 0.7, true, false, '', 20),
    ('ollama', 'text', 'Ollama (local)', 'ollama',
     ARRAY['llama3.1', 'llama3.2', 'mistral', 'qwen2.5'], 'llama3.1',
     0, 2, 0.7, false, true, 'http://localhost:11434', 30),
    ('lmstudio', 'text', 'LM Studio (local)', 'openai_compatible',
     ARRAY['llama-3.2-3b-instruct'], 'llama-3.2-3b-instruct',
     0, 2, 0.7, false, true, 'http://localhost:1234/v1', 40),
    ('vllm', 'text', 'vLLM', 'openai_compatible',
     ARRAY['meta-llama/Llama-3.1-8B-Instruct'], 'meta-llama/Llama-3.1-8B-Instruct',
     0, 2, 0.7, false, true, 'http://localhost:8000/v1', 50),
    -- multimodal
    ('openai', 'multimodal', 'OpenAI vision', 'openai',
     ARRAY['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini'], 'gpt-4o',
     0, 2, 0.7, true, false, '', 10),
    ('anthropic', 'multimodal', 'Anthropic', 'anthropic',
     ARRAY['claude-3-5-sonnet-latest', 'claude-sonnet-4-20250514'], 'claude-3-5-sonnet-latest',
     0, 1, 0.7, true, false, '', 20),
    ('ollama', 'multimodal', 'Ollama vision (local)', 'ollama',
     ARRAY['llava', 'llama3.2-vision'], 'llava',
     0, 2, 0.7, false, true, 'http://localhost:11434', 30),
    ('lmstudio', 'multimodal', 'LM Studio vision (local)', 'openai_compatible',
     ARRAY['qwen2-vl-7b-instruct'], 'qwen2-vl-7b-instruct',
     0, 2, 0.7, false, true, 'http://localhost:1234/v1', 40),
    -- image (no temperature)
    ('openai', 'image', 'OpenAI images', 'dalle',
     ARRAY['dall-e-3', 'dall-e-2', 'gpt-image-1'], 'dall-e-3',
     NULL, NULL, NULL, false, false, '', 10),
    ('stability', 'image', 'Stability AI', 'stability',
     ARRAY['sd3.5-large', 'core', 'ultra'], 'sd3.5-large',
     NULL, NULL, NULL, false, false, '', 20),
    ('automatic1111', 'image', 'Automatic1111 (local Stable Diffusion)', 'automatic1111',
     ARRAY['v1-5-pruned-emaonly'], 'v1-5-pruned-emaonly',
     NULL, NULL, NULL, false, true, 'http://localhost:7860', 30),
    ('comfyui', 'image', 'ComfyUI (local)', 'comfyui',
     ARRAY['sd_xl_base_1.0.safetensors'], 'sd_xl_base_1.0.safetensors',
     NULL, NULL, NULL, false, true, 'http://localhost:8188', 40);
