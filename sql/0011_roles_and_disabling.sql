-- Operators (issue 17): an account's `role` ('user' or 'admin'; the admin
-- API is for admins' sessions), whether an operator disabled it and why,
-- and its last login, which the admin API shows. A disabled account keeps
-- its row but has no sessions (disabling ends them in its transaction) and
-- cannot log in, reset its password or open a new session until enabled.
ALTER TABLE users
    ADD COLUMN role VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'user',
    ADD COLUMN disabled_at BIGINT UNSIGNED NULL,
    ADD COLUMN disabled_reason VARCHAR(500) NULL,
    ADD COLUMN last_login_at BIGINT UNSIGNED NULL,
    ADD COLUMN last_login_ip VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD KEY users_role (role);

-- The one row every change to the admins (a demotion, a disabling, a
-- deletion) reads first and bumps as its first write, conditioned on the
-- version it read: two such changes at once then meet on this row, by its
-- lock and the condition on one server and by certification on a Galera
-- cluster, so the later one is rerun and counts the admins again
-- (src/db/admin.rs). Without it, two admins demoting each other on two
-- nodes could each count two admins and leave none.
CREATE TABLE IF NOT EXISTS admin_guard (
    id TINYINT UNSIGNED NOT NULL,
    version BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;

INSERT IGNORE INTO admin_guard (id, version) VALUES (1, 0);
