-- Forgotten-password resets. Only the SHA-256 of each reset token is kept:
-- a database reader cannot use a row to reset anyone's password. A new
-- request for a user replaces their older rows, and any new password (by
-- reset or change) deletes them all. used_at is set, in the same
-- transaction, by the one reset that may use the token.
CREATE TABLE IF NOT EXISTS password_resets (
    token_hash BINARY(32) NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    expires_at BIGINT UNSIGNED NOT NULL,
    used_at BIGINT UNSIGNED NULL,
    PRIMARY KEY (token_hash),
    KEY password_resets_user (user_id),
    CONSTRAINT password_resets_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The transactional outbox: a reset's message is written in the same
-- transaction as its token, and a separate mailer sends unsent rows and sets
-- sent_at. The server never talks to a mail server, so no reset is lost
-- while mail is down. Times are Unix seconds, like every table here.
CREATE TABLE IF NOT EXISTS mail_outbox (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    recipient VARCHAR(254) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    sent_at BIGINT UNSIGNED NULL,
    PRIMARY KEY (id),
    KEY mail_outbox_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
