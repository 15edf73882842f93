-- With HIDE_ACCOUNT_EXISTENCE, a login for an address without an account
-- must do the same work as a wrong password for a real one, including the
-- durable reservation of the attempt (src/db/lockout.rs). It reserves here,
-- keyed by the address's mailbox key, so unknown addresses also lock after
-- LOCKOUT_THRESHOLD tries in a window, exactly as real accounts do. Rows
-- whose window has passed are purged by the housekeeping.
CREATE TABLE IF NOT EXISTS login_decoys (
    email_key BINARY(32) NOT NULL,
    failures INT UNSIGNED NOT NULL,
    window_start BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (email_key),
    KEY login_decoys_window (window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
