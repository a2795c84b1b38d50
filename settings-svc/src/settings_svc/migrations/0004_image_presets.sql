-- Image presets for image-svc (issue 11). OpenAI retired DALL-E 2/3 and gpt-image-1: its preset
-- offers gpt-image-2; the DALL-E shapes live on under "OpenAI-compatible image server". Member mode
-- is offered by the presets and gated by image-svc's own switch (IMAGE_SVC_MEMBER_MODE, off by
-- default: members then get 403 "image generation needs your own API key"). The api style stays
-- 'dalle' (the schema's name for the OpenAI images wire protocol).
UPDATE provider_presets
   SET models = ARRAY['gpt-image-2', 'gpt-image-2-2026-04-21'],
       default_model = 'gpt-image-2',
       member_allowed = true
 WHERE provider = 'openai' AND backend_type = 'image';
UPDATE provider_presets
   SET models = ARRAY['ultra', 'core', 'sd3.5-large', 'sd3.5-large-turbo', 'sd3.5-medium', 'sd3.5-flash'],
       default_model = 'core',
       member_allowed = true
 WHERE provider = 'stability' AND backend_type = 'image';
UPDATE provider_presets SET member_allowed = true
 WHERE provider IN ('automatic1111', 'comfyui') AND backend_type = 'image';
INSERT INTO provider_presets (
    provider, backend_type, display_name, api_style, models, default_model,
    temperature_min, temperature_max, temperature_default,
    member_allowed, user_base_url_allowed, default_base_url, sort_order
) VALUES
    ('openai_compatible', 'image', 'OpenAI-compatible image server (DALL-E shapes)', 'dalle',
     ARRAY['dall-e-3', 'dall-e-2'], 'dall-e-3', NULL, NULL, NULL, false, true, '', 50)
ON CONFLICT DO NOTHING;
