-- Brute-force lockout: wrong passwords per account in the current window.
-- In the database (not in memory) so the count holds across restarts and
-- across every instance sharing the database. A row exists only while an
-- account has recent failures; a successful login deletes it.
CREATE TABLE IF NOT EXISTS login_failures (
    user_id BIGINT UNSIGNED NOT NULL,
    failures INT UNSIGNED NOT NULL,
    window_start BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (user_id),
    CONSTRAINT login_failures_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
