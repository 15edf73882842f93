-- Sessions that outlive their access tokens (issue 16): a session ends when
-- it has not been refreshed for SESSION_IDLE_SECONDS, or SESSION_MAX_SECONDS
-- after its login, whichever comes first. `expires_at` keeps its meaning,
-- the instant the session ends unless it is refreshed, so every check and
-- the purge stay as they are; a refresh moves it, up to `max_expires_at`.
--
-- A refresh token is a MAC, under the server's token key, over the session
-- id, `refresh_generation` and `refresh_nonce` (src/token/refresh.rs): the
-- nonce is 128 random bits that no access token carries, so the key alone
-- mints no refresh token, and the database alone (without the key) gives
-- none either. Each refresh counts the generation up, which makes the
-- presented token the previous one; `refreshed_at` is when that happened.
--
-- Sessions from before this migration have no nonce: they get no refresh
-- token and end at their old expiry, as their access token does.
ALTER TABLE sessions
    ADD COLUMN max_expires_at BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER expires_at,
    ADD COLUMN refresh_nonce BINARY(16) NULL AFTER max_expires_at,
    ADD COLUMN refresh_generation INT UNSIGNED NOT NULL DEFAULT 0 AFTER refresh_nonce,
    ADD COLUMN refreshed_at BIGINT UNSIGNED NULL AFTER refresh_generation;

UPDATE sessions SET max_expires_at = expires_at WHERE max_expires_at = 0;
