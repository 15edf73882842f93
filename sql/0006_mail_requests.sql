-- Requests for mail that depends on an account (a password reset), written
-- by the request and resolved by the mail worker (src/mail/): the request
-- does the same database work whether or not the address has an account,
-- so neither its answer nor its timing tells them apart. The worker, in one
-- transaction that locks the account's row, deletes the request and, if an
-- account has the address and its cooldown allows, creates the token and
-- queues the message.
CREATE TABLE IF NOT EXISTS mail_requests (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    kind VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    email_key BINARY(32) NOT NULL,
    requested_at BIGINT UNSIGNED NOT NULL,
    ip VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (id),
    KEY mail_requests_email (email_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Which account and what kind of message each outbox row is, so the
-- per-account cooldown on reset mail is one indexed lookup.
ALTER TABLE mail_outbox
    ADD COLUMN user_id BIGINT UNSIGNED NULL AFTER id,
    ADD COLUMN kind VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '' AFTER user_id,
    ADD KEY mail_outbox_user_kind (user_id, kind, created_at);
