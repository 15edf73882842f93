-- Delivery state for the SMTP courier (src/mail/courier.rs).
--
-- A message is claimed by a conditional UPDATE that sets who holds it and
-- until when (claimed_by, claimed_until): a write, so it excludes other
-- couriers on any node of a Galera cluster, where row locks do not. A claim
-- whose holder died expires and the message is tried again. attempts counts
-- the tries; next_attempt_at is when the next may start (exponential
-- backoff); last_error says why the last one failed (never a secret);
-- failed_at marks a message given up on. Once a message is sent or given
-- up on, body and html are blanked: they held a live link.
ALTER TABLE mail_outbox
    ADD COLUMN html TEXT NULL AFTER body,
    ADD COLUMN attempts INT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN claimed_by VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    ADD COLUMN claimed_until BIGINT UNSIGNED NULL,
    ADD COLUMN last_error VARCHAR(255) NULL,
    ADD COLUMN failed_at BIGINT UNSIGNED NULL,
    ADD KEY mail_outbox_due (sent_at, failed_at, next_attempt_at),
    ADD KEY mail_outbox_recipient (recipient, sent_at),
    ADD KEY mail_outbox_created (created_at);
