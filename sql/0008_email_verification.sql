-- Proven addresses and the links that prove them (issue 15).
--
-- email_verified_at is set when a link mailed to the account's address is
-- used; accounts from before this migration start unverified.
ALTER TABLE users
    ADD COLUMN email_verified_at BIGINT UNSIGNED NULL AFTER email_key;

-- Single-use tokens of links mailed for an address: `verify` proves the
-- account's own address; `change` proves a new one (new_email, with its
-- mailbox key) before the account moves to it. Only the SHA-256 of each
-- token is kept. A newer link of one purpose replaces the older ones of the
-- account, and any change of address or deletion ends them all.
CREATE TABLE IF NOT EXISTS email_tokens (
    token_hash BINARY(32) NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    purpose VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    new_email VARCHAR(254) NULL,
    new_email_key BINARY(32) NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    expires_at BIGINT UNSIGNED NOT NULL,
    used_at BIGINT UNSIGNED NULL,
    PRIMARY KEY (token_hash),
    KEY email_tokens_user (user_id, purpose),
    KEY email_tokens_expiry (expires_at),
    CONSTRAINT email_tokens_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
