-- The audit log (issue 17): who did what to which account, when, from
-- where. Each row is written in the transaction of the change it records,
-- so a change that rolls back leaves no event. Never a password, token or
-- hash: `detail` holds a small JSON object of non-secret facts (a reason
-- code, a session id, the old and new role). No foreign key: an account's
-- events outlive it. Rows older than AUDIT_RETENTION_DAYS are purged by the
-- housekeeping.
CREATE TABLE IF NOT EXISTS audit_events (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at BIGINT UNSIGNED NOT NULL,
    type VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id BIGINT UNSIGNED NULL,
    actor_id BIGINT UNSIGNED NULL,
    ip VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_agent VARCHAR(255) NOT NULL,
    request_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    detail VARCHAR(2000) NOT NULL,
    PRIMARY KEY (id),
    KEY audit_events_user (user_id, id),
    KEY audit_events_type (type, id),
    KEY audit_events_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
