-- Login sessions. A session token names its row; the row existing (and not
-- expired) is what makes the token live, so logout deletes the row.
-- Deleting a user deletes their sessions (the foreign key cascades).
CREATE TABLE IF NOT EXISTS sessions (
    id BINARY(16) NOT NULL,
    user_id BIGINT UNSIGNED NOT NULL,
    created_at BIGINT UNSIGNED NOT NULL,
    expires_at BIGINT UNSIGNED NOT NULL,
    ip VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_agent VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    KEY sessions_user (user_id, created_at),
    KEY sessions_expiry (expires_at),
    CONSTRAINT sessions_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
