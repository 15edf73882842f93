-- Two-factor login with authenticator apps (issue 18).
--
-- `mfa_totp` holds an account's TOTP secret, sealed with AES-256-GCM under
-- DATA_ENCRYPTION_KEY (src/mfa/seal.rs: key id, nonce, ciphertext and tag;
-- the account id is its associated data), so the database alone does not
-- give it away. `confirmed_at` is NULL while an enrolment waits for its
-- first code. `last_step` is the last time step accepted for the account:
-- it and every older step are refused from then on (RFC 6238 section 5.2),
-- by a write conditioned on it.
CREATE TABLE IF NOT EXISTS mfa_totp (
    user_id BIGINT UNSIGNED NOT NULL,
    secret VARBINARY(128) NOT NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    confirmed_at BIGINT UNSIGNED NULL,
    last_step BIGINT UNSIGNED NULL,
    PRIMARY KEY (user_id),
    CONSTRAINT mfa_totp_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Recovery codes, each usable once: only an HMAC-SHA256 of each is kept,
-- keyed by DATA_ENCRYPTION_KEY and the account id, so a database reader
-- cannot test guesses offline.
CREATE TABLE IF NOT EXISTS mfa_recovery_codes (
    code_hash BINARY(32) NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    used_at BIGINT UNSIGNED NULL,
    PRIMARY KEY (code_hash),
    KEY mfa_recovery_codes_user (user_id),
    CONSTRAINT mfa_recovery_codes_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The first step of a two-step login: an `mfa_token` (only its SHA-256
-- kept), for one account and the password hash it was issued for (as a
-- SHA-256 of it: a new password voids the token), dying after its expiry,
-- its use, or 5 wrong codes.
CREATE TABLE IF NOT EXISTS mfa_challenges (
    token_hash BINARY(32) NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    password_hash_sha BINARY(32) NOT NULL,
    failures INT UNSIGNED NOT NULL DEFAULT 0,
    created_at BIGINT UNSIGNED NOT NULL,
    expires_at BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (token_hash),
    KEY mfa_challenges_user (user_id),
    KEY mfa_challenges_expiry (expires_at),
    CONSTRAINT mfa_challenges_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Whether the account has a confirmed second factor (shown as
-- `mfa_enabled`), kept on the account so reading one stays one row.
ALTER TABLE users
    ADD COLUMN mfa_enabled_at BIGINT UNSIGNED NULL;

-- Whether a session's login passed a second factor (shown as `mfa`).
ALTER TABLE sessions
    ADD COLUMN mfa TINYINT(1) NOT NULL DEFAULT 0;
