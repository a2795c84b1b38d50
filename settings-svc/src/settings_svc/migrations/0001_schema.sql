-- settings-svc's own schema (search_path is "settings" while this runs).

CREATE TABLE provider_presets (
    provider              text    NOT NULL,
    backend_type          text    NOT NULL CHECK (backend_type IN ('text', 'multimodal', 'image')),
    display_name          text    NOT NULL,
    api_style             text    NOT NULL CHECK (api_style IN (
        'openai', 'anthropic', 'ollama', 'openai_compatible',
        'dalle', 'stability', 'automatic1111', 'comfyui')),
    -- For hosted providers: the models a user may choose. For local servers: suggestions only.
    models                text[]  NOT NULL DEFAULT '{}',
    default_model         text    NOT NULL,
    -- NULL for backend types without a temperature (image).
    temperature_min       numeric(4, 2),
    temperature_max       numeric(4, 2),
    temperature_default   numeric(4, 2),
    member_allowed        boolean NOT NULL DEFAULT false,
    user_base_url_allowed boolean NOT NULL DEFAULT false,
    default_base_url      text    NOT NULL DEFAULT '',
    -- Lowest first in listings; the lowest of a backend type is the default for unsaved configs.
    sort_order            integer NOT NULL DEFAULT 100,
    PRIMARY KEY (provider, backend_type),
    CHECK (temperature_min <= temperature_default AND temperature_default <= temperature_max),
    CHECK ((temperature_min IS NULL) = (temperature_max IS NULL)
           AND (temperature_min IS NULL) = (temperature_default IS NULL))
);

-- Versions come from one sequence, so a version is never reused (not even after DeleteConfig):
-- a client holding an old version can never overwrite a newer config by accident.
CREATE SEQUENCE config_version_seq;

CREATE TABLE backend_configs (
    user_id       text        NOT NULL,
    backend_type  text        NOT NULL CHECK (backend_type IN ('text', 'multimodal', 'image')),
    provider      text        NOT NULL,
    model         text        NOT NULL,
    temperature   double precision,
    mode          text        NOT NULL CHECK (mode IN ('member', 'byok')),
    options       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    base_url      text        NOT NULL DEFAULT '',
    version       bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, backend_type),
    FOREIGN KEY (provider, backend_type) REFERENCES provider_presets (provider, backend_type)
        ON UPDATE CASCADE
);

-- One BYOK key per user and backend type, AES-256-GCM; associated data binds it to
-- (user_id, backend_type, provider). key_id names the master key that encrypted it.
CREATE TABLE api_keys (
    user_id       text        NOT NULL,
    backend_type  text        NOT NULL CHECK (backend_type IN ('text', 'multimodal', 'image')),
    provider      text        NOT NULL,
    key_id        text        NOT NULL,
    nonce         bytea       NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext    bytea       NOT NULL,
    hint          text        NOT NULL,
    fingerprint   text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, backend_type),
    FOREIGN KEY (provider, backend_type) REFERENCES provider_presets (provider, backend_type)
        ON UPDATE CASCADE
);

-- rotate-keys looks for rows not under the newest master key.
CREATE INDEX api_keys_key_id_idx ON api_keys (key_id);
